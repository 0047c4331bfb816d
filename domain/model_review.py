"""Model review (Jiangsu pilot 二(一)1): how the scoring model's suggestions compared with the schools' final ratings.

Pure functions over one observation per rated case: the assessment (score, breakdown, suggested level), the final
rating (after any upheld objection) with its reason, and what follow-up checks and revocations later showed.

The cut-off search: the cut-offs only decide the *score* candidate of a suggestion; direct identification and
rules add their own candidates (recorded in the breakdown), and the suggestion is the most difficult candidate. So
for cut-offs c(easiest) < … < c(hardest), sorting the cases by score splits them into segments, one per level plus
"below every cut-off", and a case agrees or not depending only on its segment. Each cut-off is tried at every
distinct score and just above the one before (`candidate_cutoffs`), at its current value, and below or above
every score; a dynamic programme over the boundaries finds the cut-offs with the most agreements in
O(levels × candidates).
Among equally good cut-offs it takes those closest to the current ones (sum of absolute differences), then the
lowest, so the answer is deterministic and moves the model no more than the evidence asks.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from domain.values import Level

NOT_IDENTIFIED = "not_identified"
LEVEL_ENTRIES = frozenset({"direct_identification", "rule"})
SHARE = Decimal("0.0001")
STEP = Decimal("0.0001")  # the finest spacing of candidate cut-offs between two neighbouring scores


def rank(level: str) -> int:
    """0 is the most difficult level; not identified ranks after every level."""
    return len(Level) if level == NOT_IDENTIFIED else Level(level).rank


@dataclass(frozen=True)
class Observation:
    case_id: str
    school_id: str
    score: Decimal
    breakdown: tuple[Mapping[str, str], ...]
    suggested: str  # a level, or not_identified
    final: str  # a level, or not_identified
    reason: str
    profile_version: str
    follow_up: str | None = None  # consistent | inconsistent | None (not checked)
    revoked: bool = False
    dishonest: bool = False

    @property
    def level_candidates(self) -> tuple[str, ...]:
        """Levels suggested by direct identification and rules, whatever the cut-offs."""
        return tuple(str(e["detail"]) for e in self.breakdown if e.get("kind") in LEVEL_ENTRIES)

    @property
    def disproved(self) -> bool:
        """A later check showed the application was not what it claimed."""
        return self.follow_up == "inconsistent" or (self.revoked and self.dishonest)

    @property
    def outcome(self) -> str:
        if self.disproved:
            return "disproved"
        if rank(self.suggested) < rank(self.final):
            return "over"  # the model suggested more need than the school found
        if rank(self.suggested) > rank(self.final):
            return "under"
        return "agree"


def suggestion_with(cutoffs: Mapping[Level, Decimal], observation: Observation) -> str:
    """The suggestion the model would have made with these cut-offs (the same rule as domain.policy.assess)."""
    candidates = list(observation.level_candidates)
    for level, cutoff in sorted(cutoffs.items(), key=lambda kv: kv[0].rank):
        if observation.score >= cutoff:
            candidates.append(level.value)
            break
    return min(candidates, key=rank) if candidates else NOT_IDENTIFIED


def agreement(cutoffs: Mapping[Level, Decimal], observations: Sequence[Observation]) -> int:
    return sum(1 for o in observations if suggestion_with(cutoffs, o) == o.final)


@dataclass(frozen=True)
class CutoffSearch:
    current: Mapping[Level, Decimal]
    current_agreement: int
    best: Mapping[Level, Decimal]
    best_agreement: int
    cases: int

    def as_dict(self) -> dict[str, Any]:
        def plain(cutoffs: Mapping[Level, Decimal]) -> dict[str, str]:
            return {lv.value: str(v) for lv, v in sorted(cutoffs.items(), key=lambda kv: kv[0].rank)}

        return {"current": plain(self.current), "current_agreement": self.current_agreement,
                "best": plain(self.best), "best_agreement": self.best_agreement,
                "gain": self.best_agreement - self.current_agreement, "cases": self.cases}


def candidate_cutoffs(scores: Sequence[Decimal], current: Iterable[Decimal], k: int) -> list[Decimal]:
    """Where a cut-off may sit: at each distinct score (that score's cases reach it); just above the score
    before it, up to k-1 points (so several cut-offs fit between two neighbouring scores, and a cut-off can move
    no further than needed to leave the lower score out); at its current value (so the current cut-offs win any
    tie); and below or above every score (everybody or nobody reaches it)."""
    values = set(current) | {scores[0] - i for i in range(1, k + 1)} | {scores[-1] + i for i in range(1, k + 1)}
    values |= set(scores)
    for lower, higher in itertools.pairwise(scores):
        step = min(Decimal(1), ((higher - lower) / k).quantize(STEP, rounding=ROUND_DOWN))
        if step > 0:
            values |= {lower + j * step for j in range(1, k)}
    return sorted(values)


Score = tuple[int, Decimal]  # (agreements, minus the distance from the current cut-offs): larger is better


def _add(a: Score, b: Score) -> Score:
    return a[0] + b[0], a[1] + b[1]


def best_cutoffs(observations: Sequence[Observation], current: Mapping[Level, Decimal]) -> CutoffSearch:
    levels = sorted(current, key=lambda lv: lv.rank, reverse=True)  # easiest first: the lowest cut-off first
    k = len(levels)
    scores = sorted({o.score for o in observations})
    if not scores or k == 0:
        return CutoffSearch(current, agreement(current, observations), dict(current),
                            agreement(current, observations), len(observations))
    values = candidate_cutoffs(scores, current.values(), k)
    positions = len(values)
    group = {s: i for i, s in enumerate(values)}
    # hits[j][g]: cases in score group g that agree when their score reaches segment j (0: no cut-off level,
    # j ≥ 1: levels[j-1]); prefix[j][p]: the same summed over the groups below position p.
    hits = [[0] * positions for _ in range(k + 1)]
    for o in observations:
        others = o.level_candidates
        for j in range(k + 1):
            candidates = list(others) + ([levels[j - 1].value] if j else [])
            suggested = min(candidates, key=rank) if candidates else NOT_IDENTIFIED
            if suggested == o.final:
                hits[j][group[o.score]] += 1
    prefix = [[0] * (positions + 1) for _ in range(k + 1)]
    for j in range(k + 1):
        for p in range(positions):
            prefix[j][p + 1] = prefix[j][p] + hits[j][p]

    def gain(j: int, p: int) -> Score:
        # Placing boundary j at p moves the groups below p from segment j to segment j-1.
        return (prefix[j - 1][p] - prefix[j][p], -abs(values[p] - current[levels[j - 1]]))

    best: list[list[Score]] = [[(0, Decimal(0))] * positions for _ in range(k + 1)]
    choice: list[list[int]] = [[-1] * positions for _ in range(k + 1)]
    for p in range(positions):
        best[1][p] = gain(1, p)
    for j in range(2, k + 1):
        running: Score | None = None
        running_at = -1
        for p in range(positions):
            if running is not None:
                best[j][p] = _add(gain(j, p), running)
                choice[j][p] = running_at
            feasible = j - 1 == 1 or choice[j - 1][p] >= 0  # j-1 boundaries fit at or below p
            if feasible and (running is None or best[j - 1][p] > running):
                running, running_at = best[j - 1][p], p
    last = max((p for p in range(positions) if k == 1 or choice[k][p] >= 0), key=lambda p: (best[k][p], -p))
    bounds = [last]
    for j in range(k, 1, -1):
        bounds.append(choice[j][bounds[-1]])
    bounds.reverse()
    chosen = {levels[j]: values[bounds[j]] for j in range(k)}
    return CutoffSearch(current=dict(current), current_agreement=agreement(current, observations), best=chosen,
                        best_agreement=agreement(chosen, observations), cases=len(observations))


def _share(part: int, whole: int) -> Decimal:
    return (Decimal(part) / Decimal(whole)).quantize(SHARE) if whole else Decimal(0).quantize(SHARE)


def item_findings(observations: Sequence[Observation]) -> list[dict[str, Any]]:
    """Per scoring item (and per direct-identification or rule entry): how often it contributed to a wrong
    suggestion (too high a level, or one a later check disproved) against how often to a right one."""
    wrong = [o for o in observations if o.outcome in {"over", "disproved"}]
    right = [o for o in observations if o.outcome == "agree"]
    stats: dict[str, dict[str, Any]] = {}
    for name, cohort in (("wrong", wrong), ("right", right)):
        for o in cohort:
            for entry in o.breakdown:
                points = Decimal(str(entry.get("points", "0")))
                if entry.get("kind") not in LEVEL_ENTRIES and points <= 0:
                    continue
                row = stats.setdefault(str(entry["item"]), {
                    "item": str(entry["item"]), "kind": str(entry.get("kind", "")),
                    "label": str(entry.get("label", "")), "wrong_cases": 0, "wrong_points": Decimal(0),
                    "right_cases": 0, "right_points": Decimal(0)})
                row[f"{name}_cases"] += 1
                row[f"{name}_points"] += points
    findings = []
    for row in stats.values():
        wrong_share, right_share = _share(row["wrong_cases"], len(wrong)), _share(row["right_cases"], len(right))
        findings.append({**row, "wrong_share": wrong_share, "right_share": right_share,
                         "lift": wrong_share - right_share})
    findings.sort(key=lambda r: (-r["lift"], -r["wrong_cases"], r["item"]))
    return findings


def review(observations: Sequence[Observation], current: Mapping[Level, Decimal]) -> dict[str, Any]:
    """The whole report: agreement, departures with reasons, follow-up findings, items and the best cut-offs."""
    agreed = sum(1 for o in observations if o.suggested == o.final)
    confusion = Counter((o.suggested, o.final) for o in observations)
    departures = [
        {"case_id": o.case_id, "school_id": o.school_id, "suggested": o.suggested, "final": o.final,
         "direction": "less_need" if rank(o.final) > rank(o.suggested) else "more_need", "reason": o.reason}
        for o in observations if o.suggested != o.final
    ]
    disproved = [o for o in observations if o.disproved]
    return {
        "cases": len(observations),
        "agreement": {"agreed": agreed, "rate": _share(agreed, len(observations))},
        "by_profile_version": dict(sorted(Counter(o.profile_version for o in observations).items())),
        "confusion": [{"suggested": s, "final": f, "count": n}
                      for (s, f), n in sorted(confusion.items(), key=lambda kv: (rank(kv[0][0]), rank(kv[0][1])))],
        "departures": departures,
        "follow_up": {
            "checked": sum(1 for o in observations if o.follow_up is not None),
            "inconsistent": sum(1 for o in observations if o.follow_up == "inconsistent"),
            "revoked": sum(1 for o in observations if o.revoked),
            "disproved": [{"case_id": o.case_id, "school_id": o.school_id, "suggested": o.suggested,
                           "final": o.final, "follow_up": o.follow_up, "revoked": o.revoked} for o in disproved],
        },
        "items": item_findings(observations),
        "cutoffs": best_cutoffs(observations, current).as_dict(),
    }
