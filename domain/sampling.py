"""Random samples anyone can reproduce: follow-up checks (Guangxi Art. 9) and bureau spot checks.

The draw is specified so that it can be redone by hand or in any language from what the sample records:
every candidate gets the rank `sha256(seed + "|" + candidate)` (hex digest of the UTF-8 text), candidates are
ordered by (rank, candidate) and the first `n` are drawn. Nothing depends on a random-number generator's
implementation, on the order the candidates arrive in, or on duplicates among them.

Sample sizes:
- follow-up checks: per level, `n = ceil(rate × N)` where N is the number of identified cases of that level and
  `rate` the profile's `follow_up_rates` share ("at least 10%": rounded up, so a share is never missed);
- spot checks: `n = min(N, max(minimum, min(maximum, ceil(rate × N))))`: the profile's share of the population,
  at least `minimum` (a small region is still checked), at most `maximum` (an inspector's capacity), never more
  than there are.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

SEPARATOR = "|"


def rank(seed: str, candidate: str) -> str:
    """The candidate's place in the draw for this seed (smaller is drawn first)."""
    return hashlib.sha256(f"{seed}{SEPARATOR}{candidate}".encode()).hexdigest()


def draw(candidates: Iterable[str], n: int, seed: str) -> list[str]:
    """The first `n` candidates in seed order: the same seed and population always give the same sample."""
    if n < 0:
        raise ValueError("a sample size cannot be negative")
    population = sorted(set(candidates))
    return sorted(population, key=lambda c: (rank(seed, c), c))[:n]


def share_size(rate: Decimal, population: int) -> int:
    """At least the share `rate` of `population`, rounded up (10% of 11 is 2)."""
    if not Decimal(0) <= rate <= Decimal(1):
        raise ValueError("a share lies between 0 and 1")
    return min(population, math.ceil(rate * population))


def bounded_size(rate: Decimal, population: int, minimum: int, maximum: int) -> int:
    """The spot-check formula: the share, raised to `minimum`, capped at `maximum`, never above the population."""
    if minimum < 0 or maximum < minimum:
        raise ValueError("bounds must satisfy 0 <= minimum <= maximum")
    return min(population, max(minimum, min(maximum, share_size(rate, population))))


@dataclass(frozen=True)
class Stratum:
    """One level's part of a stratified sample."""

    name: str
    rate: Decimal
    population: tuple[str, ...]
    required: int
    drawn: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "rate": str(self.rate), "population": list(self.population),
                "required": self.required, "drawn": list(self.drawn)}


def stratified(strata: Mapping[str, Sequence[str]], rates: Mapping[str, Decimal], seed: str) -> list[Stratum]:
    """Draws each stratum's share independently with the same seed; strata without a rate draw nothing."""
    result = []
    for name in sorted(strata):
        population = tuple(sorted(set(strata[name])))
        rate = rates.get(name, Decimal(0))
        required = share_size(rate, len(population))
        result.append(Stratum(name, rate, population, required, tuple(draw(population, required, seed))))
    return result
