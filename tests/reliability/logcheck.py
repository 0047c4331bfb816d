"""Checks on a case's event log shared by the reliability tests: a valid path through the status machine, and each
request's event present exactly once (requests are told apart by a unique `sub` per request)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from domain.case import ALLOWED
from domain.values import Status

# Which command each event records and the status it leaves (Rated depends on the level).
COMMAND_OF = {"Amended": "amend", "Withdrawn": "withdraw", "Verified": "verify", "Assessed": "assess",
              "ClassEvaluated": "evaluate", "Rated": "rate"}
STATUS_AFTER = {"Applied": Status.APPLIED, "Amended": Status.APPLIED, "Withdrawn": Status.WITHDRAWN,
                "Verified": Status.VERIFIED, "Assessed": Status.ASSESSED, "ClassEvaluated": Status.EVALUATED}


@dataclass
class Sent:
    """One command request and what the client learnt of it."""

    sub: str
    case_id: str
    command: str
    status: int | None = None  # None: no answer (connection lost)
    version: int | None = None  # the ETag of a 2xx


def path_errors(events: Sequence[Mapping[str, Any]]) -> list[str]:
    """Replays the event types through domain.case.ALLOWED; returns what is wrong (empty: a valid path)."""
    errors: list[str] = []
    if not events or events[0]["type"] != "Applied":
        return ["the log does not start with Applied"]
    status = Status.APPLIED
    for expected, event in enumerate(events, start=1):
        if event["version"] != expected:
            errors.append(f"version {event['version']} where {expected} was due")
        kind = event["type"]
        if expected == 1:
            continue
        command = COMMAND_OF.get(kind)
        if command is None:
            errors.append(f"v{expected}: unexpected {kind}")
            continue
        if status not in ALLOWED[command]:
            errors.append(f"v{expected}: {kind} recorded on a {status.value} case")
        if kind == "Rated":
            status = Status.RATED if event["data"].get("level") else Status.NOT_IDENTIFIED
        else:
            status = STATUS_AFTER[kind]
    return errors


def presence_errors(sent: Iterable[Sent], logs: Mapping[str, Sequence[Mapping[str, Any]]],
                    setup_subs: frozenset[str]) -> list[str]:
    """Every acknowledged request is in its case's log exactly once, at the version it was told; no refused one is;
    no event comes from anyone else."""
    errors: list[str] = []
    where: dict[str, list[tuple[str, int]]] = {}
    for case_id, events in logs.items():
        for event in events:
            where.setdefault(event["actor"]["sub"], []).append((case_id, event["version"]))
    requests = list(sent)
    subs = Counter(r.sub for r in requests)
    errors += [f"sub {s} used by {n} requests" for s, n in subs.items() if n > 1]
    for r in requests:
        found = where.get(r.sub, [])
        if r.status is not None and 200 <= r.status < 300:
            if found != [(r.case_id, r.version)]:
                errors.append(f"{r.command} by {r.sub} acknowledged as v{r.version} of {r.case_id}, log has {found}")
        elif r.status is not None and found:
            errors.append(f"{r.command} by {r.sub} refused with {r.status} but recorded at {found}")
        elif r.status is None and len(found) > 1:
            errors.append(f"{r.command} by {r.sub} recorded {len(found)} times")
    known = {r.sub for r in requests} | setup_subs
    errors += [f"event by unknown {s} at {w}" for s, w in where.items() if s not in known]
    return errors
