"""Notification fan-out per event with its recipient scopes (projections/notifications.py): real domain events in,
inbox rows out, and what no message may carry (ID numbers, names, objectors, grounds, special-group categories)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from domain.round import IDENTIFICATION, IdentificationRound, Window
from domain.values import VerificationMethod
from projections.notifications import TITLES, Notifications, message_data, message_key
from tests.support import EVALUATOR, GUARDIAN, STAFF, T0
from tests.unit.case_steps import Steps
from tests.unit.projection_harness import harness


def inbox(events: list[Any]) -> list[tuple[str, str, str]]:
    """(event kind of the message, recipient kind, recipient key) in log order."""
    with harness(Notifications()) as h:
        h.feed(events)
        rows = h.rows("messages")
    return [(r["kind"], r["recipient_kind"], r["recipient_key"]) for r in rows]


def messages(events: list[Any]) -> list[dict[str, Any]]:
    with harness(Notifications()) as h:
        h.feed(events, batch_size=3)  # batches cut between an event and the ones that need its context
        rows = [{**r, "data": message_data(r["data"])} for r in h.rows("messages")]
    for row in rows:  # every message the fan-out makes has its title
        assert (row["recipient_kind"], row["kind"]) in TITLES
    return rows


def test_the_identification_path_tells_the_applicant_the_school_and_the_class_their_part() -> None:
    steps = Steps.apply(1).verify("minimum_living_allowance").assess().evaluate().rate().publicize().confirm()
    case = str(steps.case.id)
    school, klass = ("school", "S4501030001"), ("class", "S4501030001/G10-3")
    applicant = ("case", case)
    assert inbox(steps.events) == [
        ("case.applied", *applicant), ("case.applied", *school),
        ("case.verified", *applicant),
        ("case.awaiting_evaluation", *klass),
        ("case.awaiting_rating", *school),
        ("case.rated", *applicant),
        ("case.publicized", *applicant), ("deadline.notice_window", *school),
        ("case.confirmed", *applicant), ("case.confirmed", *school),
    ]


def test_a_data_matched_case_does_not_wait_for_the_class() -> None:
    steps = Steps.apply(2).verify("minimum_living_allowance", method=VerificationMethod.DATA_MATCH).assess()
    assert [k for k, _, _ in inbox(steps.events)] == ["case.applied", "case.applied", "case.verified"]


def test_an_objection_reaches_applicant_and_school_without_objector_or_grounds() -> None:
    steps = Steps.apply(3).rated().publicize()
    steps.case.raise_objection(objection_id="O1", grounds="其父在外务工收入较高", objector="hash-of-objector",
                               today=date(2025, 9, 29), actor=EVALUATOR, now=steps.now())
    steps.collect()
    steps.case.resolve_objection(objection_id="O1", outcome="dismissed", reason="已核实", new_level=None,
                                 levels=(), actor=STAFF, now=steps.now())
    steps.collect()
    rows = [r for r in messages(steps.events) if r["kind"].startswith("case.objection")]
    assert [(r["kind"], r["recipient_kind"]) for r in rows] == [
        ("case.objection_raised", "case"), ("case.objection_raised", "school"), ("case.objection_resolved", "case")]
    text = json.dumps(rows, ensure_ascii=False, default=str)
    assert "hash-of-objector" not in text and "其父" not in text and EVALUATOR.sub not in text
    assert rows[1]["data"]["objection_id"] == "O1"


def test_follow_up_deadline_to_staff_and_the_recovery_order_to_both() -> None:
    steps = Steps.apply(4).confirmed()
    steps.case.select_for_follow_up(sample_id="F1", deadline=date(2026, 1, 31), actor=STAFF, now=steps.now())
    steps.collect()
    steps.case.record_follow_up(method="phone", checked_on=date(2025, 9, 15), finding="inconsistent", notes="",
                                attachments=[], actor=STAFF, now=steps.now())
    steps.collect()
    steps.grant("2000.00").disburse("1500.00").revoke(dishonest=True)
    steps.case.order_recovery(amount="1500.00", actor=STAFF, now=steps.now())
    steps.collect()
    rows = messages(steps.events)
    tail = [(r["kind"], r["recipient_kind"], r["data"]) for r in rows if r["kind"] not in {
        "case.applied", "case.verified", "case.awaiting_evaluation", "case.awaiting_rating", "case.rated",
        "case.publicized", "deadline.notice_window", "case.confirmed"}]
    case = str(steps.case.id)
    assert tail == [
        ("deadline.follow_up", "school", {"case_id": case, "class_id": "G10-3", "deadline": "2026-01-31"}),
        ("case.follow_up_recorded", "case", {"case_id": case, "finding": "inconsistent"}),
        ("aid.granted", "case", {"case_id": case, "programme": "national_grant", "amount": "2000.00"}),
        ("aid.disbursed", "case", {"case_id": case, "amount": "1500.00"}),
        ("case.revoked", "case", {"case_id": case}),
        ("case.revoked", "school", {"case_id": case, "class_id": "G10-3"}),
        ("case.revoked", "region", {"case_id": case, "school_id": "S4501030001"}),
        ("recovery.ordered", "case", {"case_id": case, "amount": "1500.00"}),
        ("recovery.ordered", "school", {"case_id": case, "class_id": "G10-3", "amount": "1500.00"}),
    ]


def test_an_amended_class_moves_the_class_messages() -> None:
    steps = Steps.apply(5)
    form = dict(steps.case.form)
    form["student"] = {**form["student"], "class_id": "G11-1"}
    steps.case.amend(form=form, actor=GUARDIAN, now=steps.now())
    steps.collect()
    steps.verify().assess()
    assert ("case.awaiting_evaluation", "class", "S4501030001/G11-1") in inbox(steps.events)


def test_round_openings_go_to_the_schools_staff() -> None:
    opened = IdentificationRound.open(
        school_id="S4501030001", school_region="450103", academic_year="2025-2026", kind=IDENTIFICATION,
        opens_on=date(2025, 9, 20), closes_on=date(2025, 11, 30), window=Window(date(2025, 8, 2), date(2025, 11, 30)),
        today=date(2025, 9, 15), announcement={}, profile_version="gx@1", actor=STAFF, now=T0)
    rows = messages(list(opened.collect_events()))
    assert [(r["kind"], r["recipient_kind"], r["recipient_key"]) for r in rows] == [
        ("round.opened", "school", "S4501030001")]
    assert rows[0]["data"]["closes_on"] == "2025-11-30"


def test_no_message_carries_an_id_number_a_name_or_a_special_group_category() -> None:
    steps = Steps.apply(6, claimed=["minimum_living_allowance", "disabled"]).verify("disabled").assess().evaluate()
    steps.rate().publicize().confirm().grant("1000.00")
    text = json.dumps(messages(steps.events), ensure_ascii=False, default=str)
    for forbidden in (steps.case.applicant_id_number, steps.case.form["student"]["name"], "disabled",
                      "minimum_living_allowance", "household"):
        assert forbidden not in text


def test_a_message_id_is_its_events_position_and_its_place_among_that_events_messages() -> None:
    steps = Steps.apply(7).rated().publicize()
    rows = messages(steps.events)
    keys = [message_key(r["id"]) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    publicized = [message_key(r["id"]) for r in rows if r["kind"] in {"case.publicized", "deadline.notice_window"}]
    assert publicized == [(publicized[0][0], 0), (publicized[0][0], 1)]
    assert message_key(rows[0]["id"]) == (1, 0) and message_key(rows[1]["id"]) == (1, 1)  # Applied: applicant, staff
