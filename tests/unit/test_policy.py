"""Policy profiles and the scoring model: every item kind, direct identification, rules, cut-offs, how they combine,
and the profile checks that refuse a malformed or inconsistent file naming the field (no I/O: profiles are dicts)."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from domain.policy import Facts, PolicyProfile, ProfileError, assess, facts_from_application, parse_profile
from domain.values import Category, Level

E, D, G = Level.ESPECIALLY_DIFFICULT, Level.DIFFICULT, Level.GENERALLY_DIFFICULT

BASE: dict[str, Any] = {
    "profile_id": "test",
    "version": "1",
    "province_code": "45",
    "levels": ["especially_difficult", "difficult", "generally_difficult"],
    "publicity": {"working_days": 5},
    "follow_up_rates": {"especially_difficult": "0.1", "difficult": "0.1", "generally_difficult": "1"},
    "regional_standards": {
        "45": {"minimum_living_line": "6000", "county_average_income": "20000"},
        "4501": {"minimum_living_line": "10000"},
    },
    "scoring": {"model_version": "t-1", "items": [], "rules": [],
                "cutoffs": {"especially_difficult": 70, "difficult": 45, "generally_difficult": 25}},
}


def profile(items: list[dict[str, Any]] | None = None, rules: list[dict[str, Any]] | None = None,
            direct: dict[str, str] | None = None, cutoffs: dict[str, Any] | None = None,
            **top: Any) -> PolicyProfile:
    data = copy.deepcopy(BASE)
    data.update(top)
    scoring = data["scoring"]
    scoring["items"] = items or []
    scoring["rules"] = rules or []
    if direct is not None:
        scoring["direct_identification"] = direct
    if cutoffs is not None:
        scoring["cutoffs"] = cutoffs
    return parse_profile(data)


def facts(*, region: str = "450103", size: int = 4, income: str = "40000", debts: str = "0",
          members: tuple[dict[str, Any], ...] = (), events: tuple[dict[str, Any], ...] = (),
          other: dict[str, Any] | None = None, confirmed: tuple[str, ...] = ()) -> Facts:
    return Facts(region_code=region, household_size=size, annual_income=Decimal(income), debts=Decimal(debts),
                 members=members, sudden_events=events, other=other or {},
                 confirmed_categories=frozenset(Category(c) for c in confirmed))


def score(item: dict[str, Any], f: Facts, **top: Any) -> tuple[Decimal, dict[str, str]]:
    result = assess(f, profile([{"id": "x", "label": "x", **item}], **top))
    return result.score, dict(result.breakdown[0])


# ---------------------------------------------------------------------------------------------- scoring items


def test_category_points_take_the_highest_confirmed_or_their_sum_and_respect_the_cap() -> None:
    item = {"kind": "categories", "points": {"orphan": 60, "disabled": 50}}
    both = facts(confirmed=("orphan", "disabled"))
    assert score(item, both)[0] == 60
    assert score({**item, "combine": "sum"}, both)[0] == 110
    assert score({**item, "combine": "sum", "cap": 100}, both)[0] == 100
    assert score(item, facts())[0] == 0
    assert score(item, both)[1]["detail"] == "disabled,orphan"


def test_region_lookup_takes_the_longest_matching_prefix_and_else_the_default() -> None:
    item = {"kind": "region", "table": {"45": 15, "4501": 5, "450103": 1}, "default": 7}
    assert score(item, facts(region="450103")) == (Decimal(1), {"item": "x", "kind": "region", "label": "x",
                                                                 "points": "1", "detail": "region 450103"})
    assert score(item, facts(region="450105"))[0] == 5
    assert score(item, facts(region="452101"))[0] == 15
    assert score(item, facts(region="320102"))[0] == 7


def test_sudden_events_add_up_to_their_cap() -> None:
    item = {"kind": "sudden_events", "points": {"serious_illness": 30, "accident": 20}, "cap": 40}
    one = facts(events=({"kind": "serious_illness"},))
    two = facts(events=({"kind": "serious_illness"}, {"kind": "accident"}, {"kind": "unlisted"}))
    assert score(item, one)[0] == 30
    assert score(item, two)[0] == 40


def test_member_items_add_per_member_and_a_negative_entry_subtracts() -> None:
    occupation = {"kind": "member_occupation", "points": {"unemployed": 6, "manager": -2}, "cap": 12}
    parents = ({"relation": "father", "occupation": "unemployed"}, {"relation": "mother", "occupation": "manager"})
    assert score(occupation, facts(members=parents))[0] == 4
    assert score(occupation, facts(members=parents[1:]))[0] == -2  # a parent in management lowers the score
    health = {"kind": "member_health", "points": {"disabled": 15}, "cap": 20}
    disabled = tuple({"relation": r, "health": "disabled"} for r in ("father", "mother"))
    assert score(health, facts(members=disabled))[0] == 20


def test_per_unit_points_multiply_a_numeric_fact_up_to_the_cap() -> None:
    item = {"kind": "per_unit", "field": "siblings_in_school", "points_per_unit": 5, "cap": 15}
    assert score(item, facts(other={"siblings_in_school": 2}))[0] == 10
    assert score(item, facts(other={"siblings_in_school": 5}))[0] == 15
    assert score(item, facts())[0] == 0


def test_bands_give_the_points_of_the_highest_band_reached() -> None:
    item = {"kind": "bands", "field": "medical_costs",
            "bands": [{"from": "0", "points": 0}, {"from": "5000", "points": 2}, {"from": "10000", "points": 5}]}
    assert score(item, facts(other={"medical_costs": "4999.99"}))[0] == 0
    assert score(item, facts(other={"medical_costs": "5000"}))[0] == 2
    assert score(item, facts(other={"medical_costs": "12000"}))[0] == 5
    debts = {"kind": "bands", "field": "debts", "bands": [{"from": "10000", "points": 3}]}
    assert score(debts, facts(debts="30000"))[0] == 3


def test_income_ratio_bands_compare_per_capita_income_with_the_local_minimum_living_line() -> None:
    item = {"kind": "income_ratio_bands",
            "bands": [{"max_ratio": "1.0", "points": 40}, {"max_ratio": "1.5", "points": 25}]}
    # 4501 (line 10000) is the longest prefix of 450103: per capita 10000 is exactly 1.0 times the line.
    assert score(item, facts(income="40000"))[0] == 40
    assert score(item, facts(income="40004"))[0] == 25
    assert score(item, facts(income="80000"))[0] == 0
    # Elsewhere in the province the line is 6000: per capita 10000 is 1.67 times it, above every band.
    assert score(item, facts(region="452101", income="40000")) == (
        Decimal(0), {"item": "x", "kind": "income_ratio_bands", "label": "x", "points": "0", "detail": "ratio=1.67"})
    assert score(item, facts(region="320102"))[1]["detail"] == "no regional standard"


def test_choice_scores_the_chosen_option_and_nothing_for_an_unlisted_one() -> None:
    item = {"kind": "choice", "field": "family_type", "points": {"single_parent_bereaved": 40, "divorced": 20}}
    assert score(item, facts(other={"family_type": "divorced"}))[0] == 20
    assert score(item, facts(other={"family_type": "other"}))[0] == 0
    assert score(item, facts())[1]["detail"] == "family_type=-"


def test_the_breakdown_lists_every_item_with_its_capped_points_and_the_total_adds_them() -> None:
    items = [{"id": "siblings", "kind": "per_unit", "field": "siblings_in_school", "points_per_unit": 5, "cap": 15},
             {"id": "manager", "kind": "member_occupation", "points": {"manager": -2}}]
    result = assess(facts(other={"siblings_in_school": 4}, members=({"occupation": "manager"},)), profile(items))
    assert [(b["item"], b["points"]) for b in result.breakdown] == [("siblings", "15"), ("manager", "-2")]
    assert result.score == 13
    assert result.model_version == "t-1" and result.profile_version == "test@1"
    assert result.as_dict()["score"] == "13" and result.as_dict()["suggested_level"] is None


# ---------------------------------------------------------------------------------------------- levels


def test_direct_identification_applies_only_to_confirmed_categories() -> None:
    p = profile(direct={"minimum_living_allowance": "especially_difficult", "near_minimum_living": "difficult"})
    assert assess(facts(income="1000000"), p).suggested_level is None
    assert assess(facts(income="1000000", confirmed=("near_minimum_living",)), p).suggested_level is D
    both = assess(facts(income="1000000", confirmed=("near_minimum_living", "minimum_living_allowance")), p)
    assert both.suggested_level is E
    assert [b["item"] for b in both.breakdown] == ["direct:minimum_living_allowance", "direct:near_minimum_living"]


RULES = [
    {"level": "especially_difficult", "any": [{"income_above_line_pct": {"min": "-100", "max": "0"}}]},
    {"level": "difficult", "any": [
        {"income_above_line_pct": {"min": "0.01", "max": "50"}},
        {"members_with_occupation_at_least": {"occupations": ["unemployed"], "relations": ["father", "mother"],
                                              "count": 2}},
        {"field_at_least": {"field": "children_in_noncompulsory_schooling", "value": 4}}]},
    {"level": "generally_difficult", "any": [{"income_above_line_pct": {"min": "50.01", "max": "100"}},
                                             {"per_capita_income_below_county_average": True}]},
]


@pytest.mark.parametrize(("kwargs", "level"), [
    ({"income": "40000"}, E),  # per capita exactly the line (10000)
    ({"income": "48000"}, D),  # 20% above it
    ({"income": "70000"}, G),  # 75% above it
    ({"income": "100000"}, None),  # 150% above: no rule (4501 has no county average)
    ({"income": "100000", "region": "452101"}, None),  # 317% above 6000, and per capita 25000 ≥ 20000
    ({"income": "76000", "region": "452101"}, G),  # 217% above 6000, but per capita 19000 < county 20000
    ({"income": "100000", "members": ({"relation": "father", "occupation": "unemployed"},
                                      {"relation": "mother", "occupation": "unemployed"})}, D),
    ({"income": "100000", "members": ({"relation": "father", "occupation": "unemployed"},
                                      {"relation": "uncle", "occupation": "unemployed"})}, None),
    ({"income": "100000", "other": {"children_in_noncompulsory_schooling": 4}}, D),
    ({"income": "100000", "other": {"children_in_noncompulsory_schooling": 3}}, None),
])
def test_rules_set_levels_from_income_against_the_line_and_named_conditions(kwargs: dict[str, Any],
                                                                            level: Level | None) -> None:
    result = assess(facts(**kwargs), profile(rules=RULES, cutoffs={}))
    assert result.suggested_level is level


def test_cutoffs_give_the_most_difficult_level_whose_cutoff_the_score_reaches() -> None:
    p = profile([{"id": "siblings", "kind": "per_unit", "field": "siblings_in_school", "points_per_unit": 1}])
    for siblings, level in [(24, None), (25, G), (44, G), (45, D), (69, D), (70, E), (200, E)]:
        assert assess(facts(other={"siblings_in_school": siblings}), p).suggested_level is level, siblings


def test_the_combination_picks_the_most_difficult_level_any_part_suggests() -> None:
    items = [{"id": "siblings", "kind": "per_unit", "field": "siblings_in_school", "points_per_unit": 1}]
    p = profile(items, rules=RULES, direct={"near_minimum_living": "difficult"})
    # Points say generally difficult (30), the rule says difficult (20% above the line), the category difficult.
    mixed = facts(income="48000", other={"siblings_in_school": 30}, confirmed=("near_minimum_living",))
    assert assess(mixed, p).suggested_level is D
    # Points alone reach especially difficult, beating the rule's difficult.
    assert assess(facts(income="48000", other={"siblings_in_school": 70}), p).suggested_level is E
    # The rule's especially difficult beats generally difficult points.
    assert assess(facts(income="20000", other={"siblings_in_school": 30}), p).suggested_level is E


def test_facts_come_from_the_application_and_the_confirmed_categories_only() -> None:
    application = {"household": {"region_code": "450103", "size": 3, "annual_income": "18000.00",
                                 "debts": "1000.00", "members": [{"health": "disabled"}, {"health": "well"}]},
                   "sudden_events": [{"kind": "accident", "loss": "300.00"}, {"kind": "other", "loss": "200.00"}],
                   "other": {"siblings_in_school": 2}, "claimed_categories": ["orphan"]}
    f = facts_from_application(application, ["disabled"])
    assert f.confirmed_categories == frozenset({Category.DISABLED})
    assert f.per_capita_income == Decimal(6000)
    assert f.numeric("sudden_event_losses") == Decimal(500) and f.numeric("members_unable_to_work") == 1
    assert f.numeric("debts") == Decimal(1000) and f.numeric("siblings_in_school") == 2


def test_the_regional_standard_is_the_longest_prefix_that_has_one() -> None:
    p = profile()
    assert p.regional_standard("450103") == p.regional_standards["4501"]
    assert p.regional_standard("452101") == p.regional_standards["45"]
    assert p.regional_standard("320102") is None


# ---------------------------------------------------------------------------------------------- profile checks


def broken(path: list[str | int], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["scoring"]["items"] = [{"id": "cat", "kind": "categories", "points": {"orphan": 60}},
                                {"id": "med", "kind": "bands", "field": "medical_costs",
                                 "bands": [{"from": "0", "points": 0}, {"from": "5000", "points": 2}]}]
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(("path", "value", "field", "words"), [
    (["scoring", "cutoffs", "difficult"], 80, "scoring.cutoffs.especially_difficult", "overlaps difficult"),
    (["scoring", "cutoffs", "generally_difficult"], 45, "scoring.cutoffs.difficult", "overlaps"),
    (["scoring", "direct_identification"], {"rich_uncle": "difficult"}, "scoring.direct_identification.rich_uncle",
     "unknown category"),
    (["scoring", "items", 0, "points"], {"rich_uncle": 5}, "scoring.items[0].points.rich_uncle", "unknown category"),
    (["scoring", "rules"], [{"level": "difficult", "any": [{"categories_any": ["orphan", "rich_uncle"]}]}],
     "scoring.rules[0].any[0].categories_any[1]", "unknown category"),
    (["levels", 1], "very_difficult", "levels[1]", "unknown level"),
    (["scoring", "cutoffs", "very_difficult"], 10, "scoring.cutoffs.very_difficult", "unknown level"),
    (["scoring", "items", 1, "kind"], "horoscope", "scoring.items[1].kind", "unknown item kind"),
    (["scoring", "items", 1, "bands", 1, "from"], "0", "scoring.items[1].bands[1].from", "increasing"),
    (["scoring", "items", 1, "field"], "shoe_size", "scoring.items[1].field", "unknown field"),
    (["scoring", "items", 1, "id"], "cat", "scoring.items", "unique"),
    (["scoring", "rules"], [{"level": "difficult", "any": [{"astrology": True}]}],
     "scoring.rules[0].any[0].astrology", "unknown condition"),
    (["follow_up_rates", "difficult"], "1.5", "follow_up_rates.difficult", "between 0 and 1"),
    (["publicity", "working_days"], 0, "publicity.working_days", "1 to 30"),
    (["publicity", "exemption_allowed"], True, "publicity.exemption_grounds", "no ground"),
    (["publicity", "exemption_grounds"], ["bribery"], "publicity.exemption_grounds", "unknown grounds"),
    (["province_code"], "450", "province_code", "two-digit"),
    (["version"], KeyError, "version", "required"),
    (["regional_standards", "45", "minimum_living_line"], "lots", "regional_standards.45.minimum_living_line",
     "must be a number"),
    (["levels"], ["especially_difficult", "difficult"], "follow_up_rates.generally_difficult", "not among"),
])
def test_a_malformed_or_inconsistent_profile_is_refused_naming_the_field(path: list[str | int], value: Any,
                                                                         field: str, words: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(broken(path, value))
    assert caught.value.field_path == field
    assert words in caught.value.message
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(("scoring", "field"), [
    ({"cutoffs": {"generally_difficult": 25}}, "scoring.cutoffs.generally_difficult"),
    ({"direct_identification": {"orphan": "generally_difficult"}}, "scoring.direct_identification.orphan"),
    ({"rules": [{"level": "difficult", "any": [{"categories_any": ["orphan"]}]},
                {"level": "generally_difficult", "any": [{"categories_any": ["orphan"]}]}]}, "scoring.rules[1].level"),
])
def test_a_level_the_profile_does_not_use_is_refused_where_the_scoring_names_it(scoring: dict[str, Any],
                                                                                  field: str) -> None:
    data = copy.deepcopy(BASE)
    data["levels"] = ["especially_difficult", "difficult"]
    del data["follow_up_rates"]["generally_difficult"]
    data["scoring"]["cutoffs"] = {"especially_difficult": 70, "difficult": 45}
    data["scoring"].update(scoring)
    with pytest.raises(ProfileError) as caught:
        parse_profile(data)
    assert caught.value.field_path == field and "not among the profile's levels" in caught.value.message


def test_the_base_profile_of_these_tests_is_itself_valid() -> None:
    parsed = parse_profile(broken(["name"], "ok"))
    assert parsed.tag == "test@1" and parsed.levels == (E, D, G) and parsed.notice_working_days == 5
