"""Campus-card spending warnings, without I/O: the peer-group median, the profile's thresholds at their edges, and
how a spending file's rows are accepted or rejected."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from adapters.consumption import (
    CONSUMPTION_HEADERS,
    CONSUMPTION_REQUIRED,
    NoConsumptionThresholds,
    Spender,
    Thresholds,
    academic_year_of,
    check_consumption_rows,
    find_warnings,
    parse_amount,
    parse_month,
    thresholds_of,
)
from adapters.registries import SubjectKeys, read_sheet
from domain.values import case_id_for
from tests.support import id_number

KEYS = SubjectKeys("unit-test-secret-of-at-least-32-characters")
RULES = Thresholds(low_ratio=Decimal("0.40"), high_ratio=Decimal("1.80"), min_group=1)


def spender(key: str, average: str, status: str | None = None, level: str | None = None,
            stage: str = "senior_secondary") -> Spender:
    return Spender(key, stage, Decimal(average), 3, status, level, {"key": key})


def peers(*averages: str) -> list[Spender]:
    return [spender(f"p{i}", a, status="applied") for i, a in enumerate(averages)]


def keys_of(entries: list[dict[str, object]]) -> list[object]:
    return [e["key"] for e in entries]


def test_non_applicants_far_below_the_peer_median_are_listed() -> None:
    # Median of 300, 500, 500, 600, 100 and 199.99 is 400: the low line is 160.00.
    group = [*peers("300", "500", "500", "600"), spender("low", "100.00"), spender("edge", "160.00")]
    found = find_warnings(group, RULES)
    assert found.groups == [{"stage": "senior_secondary", "students": 6, "median_monthly": Decimal("400.00"),
                             "warnings_given": True}]
    assert keys_of(found.low) == ["low"]  # 160.00 is exactly 0.40 × median: not *below* it
    assert found.low[0]["ratio"] == Decimal("0.25") and found.low[0]["peer_median"] == Decimal("400.00")
    assert found.high == []


def test_applicants_are_not_listed_as_low_spenders_but_withdrawn_ones_are() -> None:
    group = [*peers("400", "400", "400"), spender("applied", "50", status="assessed"),
             spender("withdrawn", "50", status="withdrawn")]
    assert keys_of(find_warnings(group, RULES).low) == ["withdrawn"]


def test_aided_students_far_above_the_peer_median_are_listed() -> None:
    group = [*peers("100", "100", "100", "100", "100", "100", "100"),  # the median stays 100
             spender("rich-aided", "181", status="confirmed", level="difficult"),
             spender("edge-aided", "180", status="in_publicity", level="difficult"),
             spender("rich-not-identified", "900", status="not_identified"),
             spender("rich-unrated", "900", status="assessed"),
             spender("rich-non-applicant", "900")]
    found = find_warnings(group, RULES)
    assert keys_of(found.high) == ["rich-aided"]
    assert found.high[0]["level"] == "difficult" and found.high[0]["case_status"] == "confirmed"


def test_peer_groups_are_per_stage() -> None:
    group = [*peers("1000", "1000", "1000"), spender("junior", "300", stage="junior_secondary"),
             spender("junior-peer", "300", stage="junior_secondary", status="applied")]
    found = find_warnings(group, RULES)
    assert [g["stage"] for g in found.groups] == ["junior_secondary", "senior_secondary"]
    assert found.low == []  # 300 is low for seniors, but juniors are compared with juniors


def test_a_group_smaller_than_the_profiles_minimum_gives_no_warnings() -> None:
    group = [*peers("400", "400"), spender("low", "10")]
    found = find_warnings(group, Thresholds(Decimal("0.40"), Decimal("1.80"), min_group=4))
    assert found.low == [] and found.groups[0]["warnings_given"] is False
    assert keys_of(find_warnings(group, Thresholds(Decimal("0.40"), Decimal("1.80"), min_group=3)).low) == ["low"]


def test_a_missing_threshold_switches_off_its_list_only() -> None:
    group = [*peers("100", "100"), spender("low", "1"), spender("rich", "900", "confirmed", "difficult")]
    found = find_warnings(group, Thresholds(None, Decimal("1.80"), 1))
    assert found.low == [] and keys_of(found.high) == ["rich"]


def test_thresholds_come_from_the_profile() -> None:
    rules = thresholds_of({"low_spending_ratio": Decimal("0.3"), "min_peer_group_size": Decimal("10")})
    assert rules == Thresholds(Decimal("0.3"), None, 10)
    assert thresholds_of({"high_spending_ratio": Decimal("2")}).min_group == 1
    with pytest.raises(NoConsumptionThresholds):
        thresholds_of({})


# ---------------------------------------------------------------------------------------------- spending files


def test_months_amounts_and_school_years() -> None:
    assert parse_month("2025-09") == parse_month("2025/9") == parse_month("202509") == date(2025, 9, 1)
    assert parse_month("2025年9月") == parse_month(date(2025, 9, 17)) == date(2025, 9, 1)
    assert parse_month("2025-13") is None and parse_month("September") is None
    assert parse_amount("1,234.5") == Decimal("1234.50")
    assert parse_amount("-1") is None and parse_amount("1.001") is None and parse_amount("lots") is None
    assert academic_year_of(date(2025, 9, 1)) == "2025-2026" and academic_year_of(date(2026, 8, 31)) == "2025-2026"


def test_each_bad_spending_row_is_reported_and_good_rows_carry_the_years_case_key() -> None:
    text = "身份证号,姓名,月份,金额,消费类别\n" + "\n".join([
        f"{id_number(1)},韦小明,2025-09,350.50,食堂",  # 2: good, canteen
        f"{id_number(1)},韦小明,2026-03,20,超市",  # 3: good, spring term of the same school year
        "4501032010,韦小明,2025-09,1,食堂",  # 4: malformed ID
        f"{id_number(2)},,2025-9,abc,食堂",  # 5: malformed amount
        f"{id_number(2)},,Sept,1,食堂",  # 6: malformed month
        f"{id_number(1)},韦小明,2025-09,10,canteen",  # 7: duplicate of 2 (same month and category)
        f"{id_number(3)},,2025-09,,食堂",  # 8: empty amount
    ]) + "\n"
    sheet = read_sheet(text.encode("gbk"), CONSUMPTION_HEADERS, CONSUMPTION_REQUIRED)
    accepted, rejected = check_consumption_rows(sheet, KEYS)
    assert [(r.line, r.category, r.amount) for r in accepted] == [(2, "canteen", Decimal("350.50")),
                                                                   (3, "shop", Decimal("20.00"))]
    assert {r.student_key for r in accepted} == {str(case_id_for(id_number(1), "2025-2026"))}
    assert accepted[0].id_masked.endswith(id_number(1)[-4:]) and accepted[0].name == "韦小明"
    assert [(r.line, r.reason) for r in rejected] == [
        (4, "malformed_id_number"), (5, "malformed_amount"), (6, "malformed_month"), (7, "duplicate_row"),
        (8, "empty_required_field")]
    assert all(id_number(1) not in r.detail for r in rejected)
