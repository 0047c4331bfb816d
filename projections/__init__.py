"""Read models: one module per view, each rebuilt from the event log by the one runner in projections.runner."""

from __future__ import annotations

from adapters.person_keys import PersonKeys
from adapters.registries import SubjectKeys
from projections.case_index import CaseIndex
from projections.case_keys import CaseKeys
from projections.case_versions import CaseVersions
from projections.followups import FollowUps
from projections.home_visits import HomeVisits
from projections.integrity import IntegrityRegister
from projections.ledger import Ledger
from projections.model_review import AssessmentOutcomes
from projections.notices import Notices
from projections.notifications import Notifications
from projections.rounds import Rounds
from projections.runner import View
from projections.spot_checks import SpotChecks


def all_views(secret: str | None = None) -> list[View]:
    """Every view the service keeps. A new read model is added here and nowhere else.

    `secret` (ZIZHU_SECRET) keys the views that hold keyed hashes of people; without it they are left out, since a
    runner without the secret could only build them wrong."""
    views: list[View] = [CaseIndex(), CaseVersions(), Notices(), Ledger(), FollowUps(), SpotChecks()]
    views += [Rounds(), Notifications(), AssessmentOutcomes()]
    if secret is not None:
        keys = PersonKeys(secret)
        views += [HomeVisits(keys), IntegrityRegister(keys)]
        views.append(CaseKeys(SubjectKeys(secret)))
    return views
