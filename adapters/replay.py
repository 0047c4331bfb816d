"""Replay for auditors: a case's history event by event with the state after each, and what changed between two
versions.

The state after each event is rebuilt in one pass (each stored event mutates the aggregate once), so a dossier
costs time proportional to the case's history, not its square.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from adapters.cases import INTERNAL_FIELDS, CaseService, EventView
from domain.case import StudentCase
from domain.errors import CaseNotFound, ValidationFailed


@dataclass(frozen=True)
class Step:
    """One event and the case's state right after it (serialised by `render` at that moment)."""

    event: EventView
    state: Mapping[str, Any]


def history(cases: CaseService, case_id: UUID, render: Callable[[StudentCase], Mapping[str, Any]]) -> Iterator[Step]:
    """Every event of the case, oldest first, with `render(case)` applied to the state after it. The caller has
    checked the case is in scope (`CaseService.get`)."""
    aggregate: Any = None
    for domain_event in cases.store.events.get(case_id):
        aggregate = domain_event.mutate(aggregate)  # type: ignore[attr-defined]
        if not isinstance(aggregate, StudentCase):
            raise CaseNotFound("no such case")
        fields = dict(vars(domain_event))
        view = EventView(version=fields["originator_version"], type=type(domain_event).__name__,
                         occurred_at=fields["timestamp"], actor=fields.get("actor", {}),
                         data={k: v for k, v in fields.items() if k not in INTERNAL_FIELDS})
        yield Step(view, render(aggregate))


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": [1]}} → {"a.b[0]": 1}; empty containers are kept as leaves so their appearance is a change."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The paths whose values differ, in path order: `change` is added, removed or changed."""
    old, new = flatten(before), flatten(after)
    changes = []
    for path in sorted(old.keys() | new.keys()):
        if path in old and path in new:
            if old[path] != new[path]:
                changes.append({"path": path, "change": "changed", "before": old[path], "after": new[path]})
        elif path in new:
            changes.append({"path": path, "change": "added", "before": None, "after": new[path]})
        else:
            changes.append({"path": path, "change": "removed", "before": old[path], "after": None})
    return changes


def check_range(start: int, end: int, current: int) -> None:
    if start < 1 or end < 1:
        raise ValidationFailed("versions start at 1", field="from")
    if start > end:
        raise ValidationFailed("from must not be after to", field="from")
    if end > current:
        raise ValidationFailed(f"the case has {current} versions", field="to")
