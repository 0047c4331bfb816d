"""Read models: one module per view, each rebuilt from the event log by the one runner in projections.runner."""

from __future__ import annotations

from projections.case_index import CaseIndex
from projections.case_versions import CaseVersions
from projections.notices import Notices
from projections.runner import View


def all_views() -> list[View]:
    """Every view the service keeps. A new read model is added here and nowhere else."""
    return [CaseIndex(), CaseVersions(), Notices()]
