"""Named rule violations. Every refusal the domain makes is one of these; the API maps them once."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every rule violation. `code` is the stable machine name clients see."""

    code = "rule_violated"

    def __init__(self, detail: str, **context: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.context = context


class InvalidTransition(DomainError):
    """The case's status forbids the command."""

    code = "invalid_transition"


class ValidationFailed(DomainError):
    """A value is malformed or out of range (maps to 422)."""

    code = "validation_failed"

    def __init__(self, detail: str, field: str = "", **context: object) -> None:
        super().__init__(detail, field=field, **context)
        self.field = field


class InvalidResidentId(ValidationFailed):
    code = "invalid_resident_id"


class RuleViolated(DomainError):
    """A policy rule forbids the command in the case's current situation (maps to 409)."""

    code = "rule_violated"


class ReasonRequired(RuleViolated):
    """A decision that departs from the model's suggestion must say why (定性评价修正定量结果)."""

    code = "reason_required"


class LevelNotInProfile(ValidationFailed):
    code = "level_not_in_profile"


class ObjectionStillOpen(RuleViolated):
    code = "objection_still_open"


class NoticeWindowNotOver(RuleViolated):
    code = "notice_window_not_over"


class NoticeWindowClosed(RuleViolated):
    code = "notice_window_closed"


class UnknownObjection(DomainError):
    code = "not_found"


class ObjectionAlreadyResolved(RuleViolated):
    code = "objection_already_resolved"


class ExemptionNotAllowed(RuleViolated):
    code = "exemption_not_allowed"


class AmountExceedsOwed(RuleViolated):
    code = "amount_exceeds_owed"


class OverAid(RuleViolated):
    code = "over_aid"


class NotSelectedForFollowUp(RuleViolated):
    code = "not_selected_for_follow_up"


class OutsideReadjustmentWindow(RuleViolated):
    code = "outside_readjustment_window"


class AlreadyVoted(RuleViolated):
    """A member of the class evaluation group votes once on a case."""

    code = "already_voted"


class ConflictOfInterest(RuleViolated):
    """A member of the class evaluation group never votes on their own case."""

    code = "conflict_of_interest"


class CaseNotFound(DomainError):
    """Unknown case, or one outside the caller's scope (existence must not leak)."""

    code = "not_found"


class Forbidden(DomainError):
    """The caller's role may not do this at all (their scope covers the case)."""

    code = "forbidden"


class Conflict(DomainError):
    """A concurrent change won, or the thing already exists."""

    code = "conflict"


class VersionMismatch(DomainError):
    """`If-Match` named a version that is no longer current."""

    code = "precondition_failed"
