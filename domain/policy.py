"""Policy profiles and the scoring model (定量评价).

Everything that differs by province or school is data: a versioned profile, parsed and checked here from a plain
dict (the adapter reads the file). The scoring engine expresses both styles seen in practice: points that add up
(with caps and subtractions, region look-ups, bands) and rule-based levels (direct identification for a confirmed
special group, income against the local minimum-living line, other named conditions), and combines them by taking
the most difficult level any of them suggests.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.values import Category, Level

ITEM_KINDS = frozenset(
    {"categories", "region", "sudden_events", "member_health", "member_occupation", "per_unit", "bands",
     "income_ratio_bands", "choice"}
)
# Numeric facts an item or rule may name; each is derived from the application form (附表1).
NUMERIC_FIELDS = frozenset(
    {"annual_income", "debts", "household_size", "per_capita_income", "siblings_in_school", "medical_costs",
     "sudden_event_losses", "children_in_noncompulsory_schooling", "members_unable_to_work"}
)
CONDITION_KINDS = frozenset(
    {"categories_any", "income_above_line_pct", "per_capita_income_below_county_average", "field_at_least",
     "members_with_occupation_at_least"}
)
EXEMPTION_GROUNDS = frozenset({"sufficient_basis", "low_amount", "urgent"})


class ProfileError(ValueError):
    """A profile file is malformed or inconsistent; names the field so an administrator can fix it."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field_path = field_path
        self.message = message


@dataclass(frozen=True)
class RegionalStandard:
    """Local standards for a household's region (行政区划 code prefix): annual amounts per person in CNY."""

    minimum_living_line: Decimal
    county_average_income: Decimal | None = None


@dataclass(frozen=True)
class ScoringItem:
    id: str
    kind: str
    label: str
    params: Mapping[str, Any]
    cap: Decimal | None = None


@dataclass(frozen=True)
class LevelRule:
    level: Level
    label: str
    any_of: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class ScoringModel:
    model_version: str
    direct: Mapping[Category, Level]
    items: tuple[ScoringItem, ...]
    rules: tuple[LevelRule, ...]
    cutoffs: Mapping[Level, Decimal]


@dataclass(frozen=True)
class RoundRules:
    """When a year's rounds may run (dates are `MM-DD` anchors in the academic year's calendar years)."""

    autumn_term_start: str
    identification_days: int  # the identification round closes at most this many days after the autumn term starts
    announce_days: int  # a round may open (宣传告知) at most this many days before its term starts
    step_overdue_days: int  # a case waiting longer than this at one step is overdue on the round dashboard
    emergency_days: int  # a sudden event at most this many days old lets an application in outside a round
    announcement: Mapping[str, str]  # who_may_apply, how_to_apply, where_to_object


@dataclass(frozen=True)
class PlanRules:
    """The aid list (programme → amount) per level, summing to the level's annual target, and when the year-end
    review of a support plan opens (`MM-DD` in the academic year's second calendar year)."""

    aid_lists: Mapping[Level, tuple[tuple[str, Decimal], ...]]
    review_opens: str


@dataclass(frozen=True)
class PolicyProfile:
    profile_id: str
    version: str
    name: str
    province_code: str
    levels: tuple[Level, ...]
    notice_working_days: int
    exemption_allowed: bool
    exemption_grounds: frozenset[str]
    skip_class_evaluation_for_data_matched: bool
    class_evaluation_min_student_share: Decimal
    follow_up_rates: Mapping[Level, Decimal]
    readjustment_window_months: int
    spring_term_start: str
    home_visit_required: bool
    aid_targets: Mapping[Level, Decimal]
    programmes: tuple[str, ...]
    regional_standards: Mapping[str, RegionalStandard]
    scoring: ScoringModel
    consumption: Mapping[str, Decimal] = field(default_factory=dict)
    # When each semester ends ("1" autumn, "2" spring → "MM-DD"): the follow-up checks' deadline.
    semester_ends: Mapping[str, str] = field(default_factory=dict)
    # The bureau spot-check formula's parameters (domain.sampling.bounded_size); empty: none configured.
    spot_check: Mapping[str, Decimal] = field(default_factory=dict)
    # Identification rounds (Guangxi Art. 8): term anchors, time limits and the announcement's fixed texts.
    # None: the profile sets no round rules, so no round can be opened in its province.
    rounds: RoundRules | None = None
    # One-student-one-plan (Jiangsu pilot 二(二)2–3): the aid list each level's annual target implies.
    support_plan: PlanRules | None = None

    @property
    def tag(self) -> str:
        """What a decision event records: which profile, which version."""
        return f"{self.profile_id}@{self.version}"

    def regional_standard(self, region_code: str) -> RegionalStandard | None:
        """The standard of the longest region-code prefix that has one (county, then city, then province)."""
        for length in range(len(region_code), 0, -1):
            standard = self.regional_standards.get(region_code[:length])
            if standard is not None:
                return standard
        return None


# ---------------------------------------------------------------------------------------------- parsing


def _dec(value: Any, path: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ProfileError(path, "must be a number")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise ProfileError(path, f"must be a number, got {value!r}") from None
    if not result.is_finite():
        raise ProfileError(path, "must be finite")
    return result


def _req(data: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in data:
        raise ProfileError(f"{path}.{key}" if path else key, "is required")
    return data[key]


def _level(value: Any, path: str) -> Level:
    try:
        return Level(value)
    except ValueError:
        raise ProfileError(path, f"unknown level {value!r}") from None


def _category(value: Any, path: str) -> Category:
    try:
        return Category(value)
    except ValueError:
        raise ProfileError(path, f"unknown category {value!r}") from None


def _map(data: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ProfileError(path, "must be an object")
    return data


def _parse_item(raw: Any, path: str) -> ScoringItem:
    data = _map(raw, path)
    kind = _req(data, "kind", path)
    if kind not in ITEM_KINDS:
        raise ProfileError(f"{path}.kind", f"unknown item kind {kind!r}; known: {sorted(ITEM_KINDS)}")
    params = {k: v for k, v in data.items() if k not in {"id", "kind", "label", "cap"}}
    if kind == "categories":
        for cat, pts in _map(_req(data, "points", path), f"{path}.points").items():
            _category(cat, f"{path}.points.{cat}")
            _dec(pts, f"{path}.points.{cat}")
        if data.get("combine", "max") not in {"max", "sum"}:
            raise ProfileError(f"{path}.combine", "must be 'max' or 'sum'")
    elif kind == "region":
        for prefix, pts in _map(_req(data, "table", path), f"{path}.table").items():
            if not (prefix.isdigit() and 1 <= len(prefix) <= 6):
                raise ProfileError(f"{path}.table.{prefix}", "must be a region-code prefix of 1 to 6 digits")
            _dec(pts, f"{path}.table.{prefix}")
        _dec(data.get("default", 0), f"{path}.default")
    elif kind in {"sudden_events", "member_health", "member_occupation"}:
        for key, pts in _map(_req(data, "points", path), f"{path}.points").items():
            _dec(pts, f"{path}.points.{key}")
    elif kind == "choice":
        if not str(_req(data, "field", path)).isidentifier():
            raise ProfileError(f"{path}.field", "must name a field of the form's 'other' section")
        for key, pts in _map(_req(data, "points", path), f"{path}.points").items():
            _dec(pts, f"{path}.points.{key}")
    elif kind == "per_unit":
        if _req(data, "field", path) not in NUMERIC_FIELDS:
            raise ProfileError(f"{path}.field", f"unknown field {data['field']!r}")
        _dec(_req(data, "points_per_unit", path), f"{path}.points_per_unit")
    elif kind in {"bands", "income_ratio_bands"}:
        if kind == "bands" and _req(data, "field", path) not in NUMERIC_FIELDS:
            raise ProfileError(f"{path}.field", f"unknown field {data['field']!r}")
        bands = _req(data, "bands", path)
        if not isinstance(bands, list) or not bands:
            raise ProfileError(f"{path}.bands", "must be a non-empty list")
        bound_key = "from" if kind == "bands" else "max_ratio"
        previous: Decimal | None = None
        for i, band in enumerate(bands):
            bpath = f"{path}.bands[{i}]"
            bound = _dec(_req(_map(band, bpath), bound_key, bpath), f"{bpath}.{bound_key}")
            _dec(_req(band, "points", bpath), f"{bpath}.points")
            if previous is not None and bound <= previous:
                raise ProfileError(f"{bpath}.{bound_key}", "bands must be in strictly increasing order")
            previous = bound
    cap = _dec(data["cap"], f"{path}.cap") if "cap" in data else None
    return ScoringItem(id=str(_req(data, "id", path)), kind=kind, label=str(data.get("label", "")),
                       params=params, cap=cap)


def _parse_condition(raw: Any, path: str) -> Mapping[str, Any]:
    cond = _map(raw, path)
    if len(cond) != 1:
        raise ProfileError(path, "a condition has exactly one key")
    (kind, arg), = cond.items()
    if kind not in CONDITION_KINDS:
        raise ProfileError(f"{path}.{kind}", f"unknown condition; known: {sorted(CONDITION_KINDS)}")
    if kind == "categories_any":
        for i, cat in enumerate(arg):
            _category(cat, f"{path}.{kind}[{i}]")
    elif kind == "income_above_line_pct":
        lo = _dec(_req(arg, "min", f"{path}.{kind}"), f"{path}.{kind}.min")
        hi = _dec(_req(arg, "max", f"{path}.{kind}"), f"{path}.{kind}.max")
        if hi < lo:
            raise ProfileError(f"{path}.{kind}", "max is below min")
    elif kind == "field_at_least":
        if _req(arg, "field", f"{path}.{kind}") not in NUMERIC_FIELDS:
            raise ProfileError(f"{path}.{kind}.field", f"unknown field {arg['field']!r}")
        _dec(_req(arg, "value", f"{path}.{kind}"), f"{path}.{kind}.value")
    elif kind == "members_with_occupation_at_least":
        _req(arg, "occupations", f"{path}.{kind}")
        _dec(_req(arg, "count", f"{path}.{kind}"), f"{path}.{kind}.count")
    return cond


def _parse_scoring(raw: Any, levels: tuple[Level, ...]) -> ScoringModel:
    data = _map(raw, "scoring")
    direct = {
        _category(cat, f"scoring.direct_identification.{cat}"): _level(lvl, f"scoring.direct_identification.{cat}")
        for cat, lvl in _map(data.get("direct_identification", {}), "scoring.direct_identification").items()
    }
    items = tuple(_parse_item(item, f"scoring.items[{i}]") for i, item in enumerate(data.get("items", [])))
    ids = [item.id for item in items]
    if len(ids) != len(set(ids)):
        raise ProfileError("scoring.items", "item ids must be unique")
    rules = []
    for i, rule in enumerate(data.get("rules", [])):
        path = f"scoring.rules[{i}]"
        rule = _map(rule, path)
        conditions = _req(rule, "any", path)
        if not isinstance(conditions, list) or not conditions:
            raise ProfileError(f"{path}.any", "must be a non-empty list of conditions")
        rules.append(LevelRule(level=_level(_req(rule, "level", path), f"{path}.level"),
                               label=str(rule.get("label", "")),
                               any_of=tuple(_parse_condition(c, f"{path}.any[{j}]")
                                            for j, c in enumerate(conditions))))
    cutoffs = {_level(lvl, f"scoring.cutoffs.{lvl}"): _dec(v, f"scoring.cutoffs.{lvl}")
               for lvl, v in _map(_req(data, "cutoffs", "scoring"), "scoring.cutoffs").items()}
    used = ([(f"scoring.direct_identification.{cat.value}", lvl) for cat, lvl in direct.items()]
            + [(f"scoring.rules[{i}].level", rule.level) for i, rule in enumerate(rules)]
            + [(f"scoring.cutoffs.{lvl.value}", lvl) for lvl in cutoffs])
    for path, lvl in used:
        if lvl not in levels:
            raise ProfileError(path, f"level {lvl.value!r} is not among the profile's levels")
    # Cut-offs must not overlap: a more difficult level needs a strictly higher score.
    ordered = sorted(cutoffs.items(), key=lambda kv: kv[0].rank)
    for (harder, hi), (easier, lo) in itertools.pairwise(ordered):
        if hi <= lo:
            raise ProfileError(f"scoring.cutoffs.{harder.value}",
                               f"overlaps {easier.value}: {hi} must be above {lo}")
    return ScoringModel(model_version=str(_req(data, "model_version", "scoring")), direct=direct, items=items,
                        rules=tuple(rules), cutoffs=cutoffs)


def parse_cutoffs(raw: Any, levels: Sequence[Level], path: str) -> dict[Level, Decimal]:
    """Cut-offs given on their own (a bureau publishing new ones): the same rules as in a profile file."""
    cutoffs = {_level(lvl, f"{path}.{lvl}"): _dec(v, f"{path}.{lvl}") for lvl, v in _map(raw, path).items()}
    for lvl in cutoffs:
        if lvl not in levels:
            raise ProfileError(f"{path}.{lvl.value}", f"level {lvl.value!r} is not among the profile's levels")
    ordered = sorted(cutoffs.items(), key=lambda kv: kv[0].rank)
    for (harder, hi), (easier, lo) in itertools.pairwise(ordered):
        if hi <= lo:
            raise ProfileError(f"{path}.{harder.value}", f"overlaps {easier.value}: {hi} must be above {lo}")
    return cutoffs


def with_cutoffs(profile: PolicyProfile, raw_cutoffs: Any, version: str) -> PolicyProfile:
    """A new version of `profile` that differs only in its cut-offs (published by a bureau after a model review).
    The scoring items are untouched, so scores stay comparable across the versions."""
    cutoffs = parse_cutoffs(raw_cutoffs, profile.levels, "cutoffs")
    if set(cutoffs) != set(profile.scoring.cutoffs):
        missing = sorted(lv.value for lv in set(profile.scoring.cutoffs) - set(cutoffs))
        raise ProfileError("cutoffs", f"give a cut-off for every level the model scores; missing {missing}")
    scoring = replace(profile.scoring, cutoffs=cutoffs,
                      model_version=f"{profile.scoring.model_version.split('+')[0]}+{version}")
    return replace(profile, version=version, scoring=scoring)


def _level_map(raw: Any, path: str, levels: tuple[Level, ...]) -> dict[Level, Decimal]:
    result = {}
    for key, value in _map(raw, path).items():
        lvl = _level(key, f"{path}.{key}")
        if lvl not in levels:
            raise ProfileError(f"{path}.{key}", "level not among the profile's levels")
        result[lvl] = _dec(value, f"{path}.{key}")
    return result


def parse_profile(data: Mapping[str, Any]) -> PolicyProfile:
    """Builds a profile from its file's content, or raises ProfileError naming the offending field."""
    data = _map(data, "(profile)")
    raw_levels = _req(data, "levels", "")
    if not isinstance(raw_levels, list) or not raw_levels:
        raise ProfileError("levels", "must be a non-empty list")
    levels = tuple(_level(v, f"levels[{i}]") for i, v in enumerate(raw_levels))
    province = str(_req(data, "province_code", ""))
    if not (province.isdigit() and len(province) == 2):
        raise ProfileError("province_code", "must be the two-digit province part of a region code")
    publicity = _map(_req(data, "publicity", ""), "publicity")
    days = _req(publicity, "working_days", "publicity")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 30:
        raise ProfileError("publicity.working_days", "must be a whole number of days from 1 to 30")
    grounds = frozenset(publicity.get("exemption_grounds", []))
    if not grounds <= EXEMPTION_GROUNDS:
        raise ProfileError("publicity.exemption_grounds", f"unknown grounds {sorted(grounds - EXEMPTION_GROUNDS)}")
    exemption_allowed = bool(publicity.get("exemption_allowed", False))
    if exemption_allowed and not grounds:
        raise ProfileError("publicity.exemption_grounds", "exemption is allowed but no ground is listed")
    follow_up = _level_map(_req(data, "follow_up_rates", ""), "follow_up_rates", levels)
    for lvl, rate in follow_up.items():
        if not Decimal(0) <= rate <= Decimal(1):
            raise ProfileError(f"follow_up_rates.{lvl.value}", "must be a share between 0 and 1")
    evaluation = _map(data.get("class_evaluation", {}), "class_evaluation")
    share = _dec(evaluation.get("min_student_share", "0"), "class_evaluation.min_student_share")
    readjust = _map(data.get("readjustment", {}), "readjustment")
    months = readjust.get("window_months", 2)
    if not isinstance(months, int) or not 0 < months <= 12:
        raise ProfileError("readjustment.window_months", "must be a whole number of months from 1 to 12")
    standards = {}
    for prefix, raw in _map(data.get("regional_standards", {}), "regional_standards").items():
        path = f"regional_standards.{prefix}"
        if not (prefix.isdigit() and 1 <= len(prefix) <= 6):
            raise ProfileError(path, "must be keyed by a region-code prefix")
        raw = _map(raw, path)
        avg = raw.get("county_average_income")
        standards[prefix] = RegionalStandard(
            minimum_living_line=_dec(_req(raw, "minimum_living_line", path), f"{path}.minimum_living_line"),
            county_average_income=_dec(avg, f"{path}.county_average_income") if avg is not None else None,
        )
    return PolicyProfile(
        profile_id=str(_req(data, "profile_id", "")),
        version=str(_req(data, "version", "")),
        name=str(data.get("name", "")),
        province_code=province,
        levels=levels,
        notice_working_days=days,
        exemption_allowed=exemption_allowed,
        exemption_grounds=grounds,
        skip_class_evaluation_for_data_matched=bool(data.get("skip_class_evaluation_for_data_matched", False)),
        class_evaluation_min_student_share=share,
        follow_up_rates=follow_up,
        readjustment_window_months=months,
        spring_term_start=str(readjust.get("spring_term_start", "03-01")),
        home_visit_required=bool(data.get("home_visit_required", False)),
        aid_targets=_level_map(data.get("aid_targets", {}), "aid_targets", levels),
        programmes=tuple(str(p) for p in data.get("programmes", [])),
        regional_standards=standards,
        scoring=_parse_scoring(_req(data, "scoring", ""), levels),
        consumption={k: _dec(v, f"consumption.{k}")
                     for k, v in _map(data.get("consumption", {}), "consumption").items()},
        semester_ends=_semester_ends(data.get("follow_up", {})),
        spot_check=_spot_check(data.get("spot_check", {})),
        rounds=_round_rules(data.get("rounds")),
        support_plan=_plan_rules(data.get("support_plan"), levels, data),
    )


SPOT_CHECK_KEYS = ("school_rate", "min_schools", "max_schools", "case_rate", "min_cases", "max_cases", "due_days")


def _semester_ends(raw: Any) -> dict[str, str]:
    ends = {}
    for key, value in _map(_map(raw, "follow_up").get("semester_ends", {}), "follow_up.semester_ends").items():
        path = f"follow_up.semester_ends.{key}"
        if key not in {"1", "2"}:
            raise ProfileError(path, "semesters are '1' (autumn) and '2' (spring)")
        try:
            month, day = (int(p) for p in str(value).split("-"))
            date(2024, month, day)  # a leap year, so any real month-day passes
        except ValueError:
            raise ProfileError(path, f"must be a MM-DD date, got {value!r}") from None
        ends[key] = f"{month:02d}-{day:02d}"
    return ends


def _spot_check(raw: Any) -> dict[str, Decimal]:
    data = _map(raw, "spot_check")
    if not data:
        return {}
    params = {key: _dec(_req(data, key, "spot_check"), f"spot_check.{key}") for key in SPOT_CHECK_KEYS}
    for key in ("school_rate", "case_rate"):
        if not Decimal(0) <= params[key] <= Decimal(1):
            raise ProfileError(f"spot_check.{key}", "must be a share between 0 and 1")
    for key in ("min_schools", "max_schools", "min_cases", "max_cases", "due_days"):
        if params[key] != params[key].to_integral_value() or params[key] < 0:
            raise ProfileError(f"spot_check.{key}", "must be a whole number, not negative")
    for low, high in (("min_schools", "max_schools"), ("min_cases", "max_cases")):
        if params[high] < params[low] or params[high] < 1:
            raise ProfileError(f"spot_check.{high}", f"must be at least 1 and at least {low}")
    return params


ROUND_KEYS = ("identification_days", "announce_days", "step_overdue_days", "emergency_days")
ANNOUNCEMENT_KEYS = ("who_may_apply", "how_to_apply", "where_to_object")


def _month_day(value: Any, path: str) -> str:
    try:
        month, day = (int(p) for p in str(value).split("-"))
        date(2024, month, day)  # a leap year, so any real month-day passes
    except ValueError:
        raise ProfileError(path, f"must be a MM-DD date, got {value!r}") from None
    return f"{month:02d}-{day:02d}"


def _round_rules(raw: Any) -> RoundRules | None:
    if raw is None:
        return None
    data = _map(raw, "rounds")
    numbers: dict[str, int] = {}
    for key in ROUND_KEYS:
        value = _req(data, key, "rounds")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 366:
            raise ProfileError(f"rounds.{key}", "must be a whole number of days from 0 to 366")
        numbers[key] = value
    announcement = _map(_req(data, "announcement", "rounds"), "rounds.announcement")
    texts = {}
    for key in ANNOUNCEMENT_KEYS:
        text = str(_req(announcement, key, "rounds.announcement")).strip()
        if not text:
            raise ProfileError(f"rounds.announcement.{key}", "must not be empty")
        texts[key] = text
    return RoundRules(autumn_term_start=_month_day(_req(data, "autumn_term_start", "rounds"),
                                                   "rounds.autumn_term_start"),
                      announcement=texts, **numbers)


def _plan_rules(raw: Any, levels: tuple[Level, ...], profile: Mapping[str, Any]) -> PlanRules | None:
    if raw is None:
        return None
    data = _map(raw, "support_plan")
    targets = _level_map(profile.get("aid_targets", {}), "aid_targets", levels)
    programmes = [str(p) for p in profile.get("programmes", [])]
    lists: dict[Level, tuple[tuple[str, Decimal], ...]] = {}
    for key, entries in _map(_req(data, "aid_list", "support_plan"), "support_plan.aid_list").items():
        path = f"support_plan.aid_list.{key}"
        level = _level(key, path)
        if level not in levels:
            raise ProfileError(path, "level not among the profile's levels")
        if not isinstance(entries, list) or not entries:
            raise ProfileError(path, "must be a non-empty list of {programme, amount}")
        lines: list[tuple[str, Decimal]] = []
        for i, entry in enumerate(entries):
            epath = f"{path}[{i}]"
            programme = str(_req(_map(entry, epath), "programme", epath))
            if programme not in programmes:
                raise ProfileError(f"{epath}.programme", f"{programme!r} is not among the profile's programmes")
            if programme in {p for p, _ in lines}:
                raise ProfileError(f"{epath}.programme", "a programme appears once per level")
            amount = _dec(_req(entry, "amount", epath), f"{epath}.amount")
            if amount <= 0:
                raise ProfileError(f"{epath}.amount", "must be positive")
            lines.append((programme, amount))
        # The list is how the target is met: the two must agree, or the plan would promise what policy does not.
        target = targets.get(level)
        total = sum((a for _, a in lines), Decimal(0))
        if target is None or total != target:
            raise ProfileError(path, f"amounts add up to {total}, but aid_targets.{level.value} is {target}")
        lists[level] = tuple(lines)
    return PlanRules(aid_lists=lists,
                     review_opens=_month_day(_req(data, "review_opens", "support_plan"),
                                             "support_plan.review_opens"))


# ---------------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Facts:
    """What the scoring model reads from an application, with the categories verification confirmed."""

    region_code: str
    household_size: int
    annual_income: Decimal
    debts: Decimal
    members: tuple[Mapping[str, Any], ...]
    sudden_events: tuple[Mapping[str, Any], ...]
    other: Mapping[str, Any]
    confirmed_categories: frozenset[Category]

    @property
    def per_capita_income(self) -> Decimal:
        return self.annual_income / max(self.household_size, 1)

    def numeric(self, name: str) -> Decimal:
        if name == "annual_income":
            return self.annual_income
        if name == "debts":
            return self.debts
        if name == "household_size":
            return Decimal(self.household_size)
        if name == "per_capita_income":
            return self.per_capita_income
        if name == "sudden_event_losses":
            return sum((Decimal(str(e.get("loss", "0"))) for e in self.sudden_events), Decimal(0))
        if name == "members_unable_to_work":
            return Decimal(sum(1 for m in self.members if m.get("health") in {"disabled", "unable_to_work"}))
        return Decimal(str(self.other.get(name, 0) or 0))


@dataclass(frozen=True)
class Assessment:
    score: Decimal
    breakdown: tuple[Mapping[str, str], ...]
    suggested_level: Level | None
    model_version: str
    profile_version: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": str(self.score),
            "breakdown": [dict(b) for b in self.breakdown],
            "suggested_level": self.suggested_level.value if self.suggested_level else None,
            "model_version": self.model_version,
            "profile_version": self.profile_version,
        }


def _capped(points: Decimal, cap: Decimal | None) -> Decimal:
    return min(points, cap) if cap is not None else points


def _item_points(item: ScoringItem, facts: Facts, profile: PolicyProfile) -> tuple[Decimal, str]:
    p = item.params
    if item.kind == "categories":
        scores = [Decimal(str(p["points"][c.value])) for c in facts.confirmed_categories if c.value in p["points"]]
        if not scores:
            return Decimal(0), "no scored category confirmed"
        total = sum(scores, Decimal(0)) if p.get("combine", "max") == "sum" else max(scores)
        return total, ",".join(sorted(c.value for c in facts.confirmed_categories if c.value in p["points"]))
    if item.kind == "region":
        for length in range(len(facts.region_code), 0, -1):
            prefix = facts.region_code[:length]
            if prefix in p["table"]:
                return Decimal(str(p["table"][prefix])), f"region {prefix}"
        return Decimal(str(p.get("default", 0))), "region default"
    if item.kind == "sudden_events":
        kinds = [str(e.get("kind")) for e in facts.sudden_events if str(e.get("kind")) in p["points"]]
        return sum((Decimal(str(p["points"][k])) for k in kinds), Decimal(0)), ",".join(kinds)
    if item.kind in {"member_health", "member_occupation"}:
        key = "health" if item.kind == "member_health" else "occupation"
        hits = [str(m.get(key)) for m in facts.members if str(m.get(key)) in p["points"]]
        return sum((Decimal(str(p["points"][h])) for h in hits), Decimal(0)), ",".join(hits)
    if item.kind == "choice":
        chosen = str(facts.other.get(p["field"], ""))
        return Decimal(str(p["points"].get(chosen, 0))), f"{p['field']}={chosen or '-'}"
    if item.kind == "per_unit":
        units = facts.numeric(p["field"])
        return units * Decimal(str(p["points_per_unit"])), f"{p['field']}={units}"
    if item.kind == "bands":
        value = facts.numeric(p["field"])
        points = Decimal(0)
        for band in p["bands"]:
            if value >= Decimal(str(band["from"])):
                points = Decimal(str(band["points"]))
        return points, f"{p['field']}={value}"
    # income_ratio_bands: per-capita income as a multiple of the local minimum-living line.
    standard = profile.regional_standard(facts.region_code)
    if standard is None or standard.minimum_living_line <= 0:
        return Decimal(0), "no regional standard"
    ratio = facts.per_capita_income / standard.minimum_living_line
    for band in p["bands"]:
        if ratio <= Decimal(str(band["max_ratio"])):
            return Decimal(str(band["points"])), f"ratio={ratio:.2f}"
    return Decimal(0), f"ratio={ratio:.2f}"


def _condition_holds(cond: Mapping[str, Any], facts: Facts, profile: PolicyProfile) -> bool:
    (kind, arg), = cond.items()
    if kind == "categories_any":
        return any(Category(c) in facts.confirmed_categories for c in arg)
    if kind == "income_above_line_pct":
        standard = profile.regional_standard(facts.region_code)
        if standard is None or standard.minimum_living_line <= 0:
            return False
        line = standard.minimum_living_line
        pct = (facts.per_capita_income - line) / line * 100
        return Decimal(str(arg["min"])) <= pct <= Decimal(str(arg["max"]))
    if kind == "per_capita_income_below_county_average":
        standard = profile.regional_standard(facts.region_code)
        return bool(standard and standard.county_average_income is not None
                    and facts.per_capita_income < standard.county_average_income) == bool(arg)
    if kind == "field_at_least":
        return facts.numeric(arg["field"]) >= Decimal(str(arg["value"]))
    # members_with_occupation_at_least
    relations = set(arg.get("relations", [])) or None
    count = sum(1 for m in facts.members
                if m.get("occupation") in arg["occupations"] and (relations is None or m.get("relation") in relations))
    return count >= int(arg["count"])


def assess(facts: Facts, profile: PolicyProfile) -> Assessment:
    """Scores an application on the profile's model and suggests a level (or none)."""
    model = profile.scoring
    breakdown: list[Mapping[str, str]] = []
    score = Decimal(0)
    for item in model.items:
        raw, detail = _item_points(item, facts, profile)
        points = _capped(raw, item.cap)
        score += points
        breakdown.append({"item": item.id, "kind": item.kind, "label": item.label, "points": str(points),
                          "detail": detail})
    candidates: list[Level] = []
    for cat in sorted(facts.confirmed_categories, key=lambda c: c.value):
        if cat in model.direct:
            candidates.append(model.direct[cat])
            breakdown.append({"item": f"direct:{cat.value}", "kind": "direct_identification", "label": "",
                              "points": "0", "detail": model.direct[cat].value})
    for i, rule in enumerate(model.rules):
        if any(_condition_holds(c, facts, profile) for c in rule.any_of):
            candidates.append(rule.level)
            breakdown.append({"item": f"rule[{i}]", "kind": "rule", "label": rule.label, "points": "0",
                              "detail": rule.level.value})
    for lvl, cutoff in sorted(model.cutoffs.items(), key=lambda kv: kv[0].rank):
        if score >= cutoff:
            candidates.append(lvl)
            break
    suggested = min(candidates, key=lambda lv: lv.rank) if candidates else None
    return Assessment(score=score, breakdown=tuple(breakdown), suggested_level=suggested,
                      model_version=model.model_version, profile_version=profile.tag)


def facts_from_application(application: Mapping[str, Any], confirmed: Sequence[str]) -> Facts:
    household = application["household"]
    return Facts(
        region_code=str(household["region_code"]),
        household_size=int(household.get("size") or max(len(household.get("members", [])), 1)),
        annual_income=Decimal(str(household.get("annual_income", "0"))),
        debts=Decimal(str(household.get("debts", "0") or "0")),
        members=tuple(household.get("members", [])),
        sudden_events=tuple(application.get("sudden_events", [])),
        other=application.get("other", {}) or {},
        confirmed_categories=frozenset(Category(c) for c in confirmed),
    )
