"""Matching rules and registry lists, without I/O: what confirms a category, what is a discrepancy or a note, and how
each row of a department's file is accepted or rejected."""

from __future__ import annotations

import io
import random
from datetime import date, datetime

import pytest
from openpyxl import Workbook

from adapters.matching import NO_MATCH, OPEN, Entry, build_index, match_many, match_one, verification_of
from adapters.registries import (
    OPEN_END,
    REGISTRY_HEADERS,
    REGISTRY_REQUIRED_COLUMNS,
    FileRefused,
    RegistryRow,
    Rejection,
    SubjectKeys,
    check_registry_rows,
    mask_id,
    normalise_name,
    parse_day,
    read_sheet,
)
from tests.support import id_number

KEYS = SubjectKeys("unit-test-secret-of-at-least-32-characters")
NAME = KEYS.name_key("韦小明")
APPLIED = date(2025, 9, 15).toordinal()


def entry(source: str = "civil_affairs", category: str = "minimum_living_allowance", start: str = "2025-01-01",
          end: str | None = "2025-12-31", name: str = NAME) -> Entry:
    return (source, category, date.fromisoformat(start).toordinal(),
            date.fromisoformat(end).toordinal() if end else OPEN, name)


# ---------------------------------------------------------------------------------------------- matching rules


def test_an_entry_in_force_on_the_application_date_confirms_its_category_with_its_source() -> None:
    match = match_one(NAME, APPLIED, [entry()])
    assert match.confirmed == {"minimum_living_allowance": ("civil_affairs",)}
    confirmed, notes = verification_of(match, ["minimum_living_allowance"])
    assert confirmed == [{"category": "minimum_living_allowance", "source": "civil_affairs"}]
    assert notes == []


def test_validity_bounds_are_inclusive_on_both_ends() -> None:
    assert match_one(NAME, APPLIED, [entry(start="2025-09-15", end="2025-09-15")]).confirmed
    assert match_one(NAME, APPLIED, [entry(start="2025-09-15", end=None)]).confirmed


def test_an_expired_entry_confirms_nothing_and_a_claimed_category_gets_a_note() -> None:
    match = match_one(NAME, APPLIED, [entry(start="2024-01-01", end="2025-09-14")])
    assert match.confirmed == {}
    confirmed, notes = verification_of(match, ["minimum_living_allowance"])
    assert confirmed == []
    assert notes == ["minimum_living_allowance: civil_affairs entry not in force on the application date "
                     "(valid 2024-01-01 to 2025-09-14)"]


def test_an_entry_not_yet_in_force_confirms_nothing() -> None:
    match = match_one(NAME, APPLIED, [entry(start="2025-09-16", end=None)])
    assert match.confirmed == {}
    assert verification_of(match, ["minimum_living_allowance"])[1] == [
        "minimum_living_allowance: civil_affairs entry not in force on the application date "
        "(valid 2025-09-16 to open)"]


def test_an_expired_entry_of_an_unclaimed_category_is_not_noted() -> None:
    match = match_one(NAME, APPLIED, [entry(category="orphan", start="2020-01-01", end="2021-01-01")])
    assert verification_of(match, ["minimum_living_allowance"]) == ([], [])


def test_a_name_mismatch_is_not_a_confirmation_but_a_note() -> None:
    match = match_one(NAME, APPLIED, [entry(name=KEYS.name_key("韦小红"))])
    assert match.confirmed == {}
    confirmed, notes = verification_of(match, ["minimum_living_allowance"])
    assert confirmed == []
    assert notes == ["minimum_living_allowance: civil_affairs lists this ID number under another name; "
                     "not confirmed"]


def test_a_category_confirmed_by_several_registries_lists_every_source() -> None:
    entries = [entry(source="veterans_affairs", category="disabled"),
               entry(source="disability_federation", category="disabled"),
               entry(source="disability_federation", category="disabled", start="2024-06-01")]
    confirmed, _ = verification_of(match_one(NAME, APPLIED, entries), ["disabled"])
    assert confirmed == [{"category": "disabled", "source": "disability_federation,veterans_affairs"}]


def test_entries_of_several_sources_confirm_several_categories_claimed_or_not() -> None:
    entries = [entry(), entry(source="rural_revitalisation", category="poverty_alleviated"),
               entry(source="trade_union", category="needy_worker_family", end="2025-01-31")]
    confirmed, notes = verification_of(match_one(NAME, APPLIED, entries),
                                       ["minimum_living_allowance", "needy_worker_family"])
    # An unclaimed category the registries confirm is confirmed too: the case records it as unclaimed_confirmed.
    assert confirmed == [{"category": "minimum_living_allowance", "source": "civil_affairs"},
                         {"category": "poverty_alleviated", "source": "rural_revitalisation"}]
    assert notes == ["needy_worker_family: trade_union entry not in force on the application date "
                     "(valid 2025-01-01 to 2025-01-31)"]


def test_a_confirmation_from_one_entry_silences_the_notes_of_others_for_that_category() -> None:
    entries = [entry(start="2023-01-01", end="2023-12-31"), entry(name=KEYS.name_key("别人")), entry()]
    assert verification_of(match_one(NAME, APPLIED, entries), ["minimum_living_allowance"])[1] == []


def test_match_many_keeps_order_and_answers_no_match_for_unknown_subjects() -> None:
    index = build_index([("a", entry()), ("b", entry(category="orphan")), ("a", entry(category="orphan"))])
    results = list(match_many([("a", NAME, APPLIED), ("zzz", NAME, APPLIED), ("b", NAME, APPLIED)], index))
    assert sorted(results[0].confirmed) == ["minimum_living_allowance", "orphan"]
    assert results[1] is NO_MATCH
    assert list(results[2].confirmed) == ["orphan"]


def test_match_many_applies_exactly_the_rules_of_match_one() -> None:
    rng = random.Random(7)
    other = KEYS.name_key("别人")
    sources = [("civil_affairs", "orphan"), ("trade_union", "needy_worker_family"), ("civil_affairs", "orphan")]
    rows = []
    for _ in range(300):
        source, category = rng.choice(sources)
        start = APPLIED + rng.randrange(-30, 30)
        end = rng.choice([OPEN, start + rng.randrange(0, 60)])
        rows.append((f"k{rng.randrange(120)}", (source, category, start, end, rng.choice([NAME, NAME, other]))))
    index = build_index(rows)
    subjects = [(f"k{n}", NAME, APPLIED + rng.randrange(-5, 5)) for n in range(150)]
    assert list(match_many(subjects, index)) == [match_one(name, day, index.get(key)) for key, name, day in subjects]


def test_notes_are_sorted_so_a_rerun_compares_equal() -> None:
    entries = [entry(category="orphan", end="2020-01-01", start="2019-01-01"),
               entry(name=KEYS.name_key("别人"))]
    claimed = ["orphan", "minimum_living_allowance"]
    first = verification_of(match_one(NAME, APPLIED, entries), claimed)
    again = verification_of(match_one(NAME, APPLIED, list(reversed(entries))), claimed)
    assert first == again and first[1] == sorted(first[1])


# ---------------------------------------------------------------------------------------------- keys


def test_names_compare_after_width_spaces_and_middle_dot_forms() -> None:
    assert normalise_name(" 买买提 · 艾力 ") == normalise_name("买买提•艾力") == normalise_name("买买提・艾力")
    assert KEYS.name_key("ＡＢＣ") == KEYS.name_key("ABC")
    assert KEYS.name_key("韦小明") != KEYS.name_key("韦小红")


def test_subject_keys_depend_on_the_secret_and_hide_the_number() -> None:
    number = id_number(1)
    key = KEYS.id_key(number)
    assert key == KEYS.id_key(number.lower()) and len(key) == 32 and number not in key
    assert SubjectKeys("another-secret-of-at-least-32-characters!").id_key(number) != key
    assert mask_id(number) == number[:6] + "********" + number[-4:]


# ---------------------------------------------------------------------------------------------- registry files


def sheet_of(text: str, encoding: str = "utf-8") -> list[tuple[int, dict[str, object]]]:
    return read_sheet(text.encode(encoding), REGISTRY_HEADERS, REGISTRY_REQUIRED_COLUMNS).rows


def check(text: str, source: str = "civil_affairs",
          encoding: str = "utf-8") -> tuple[list[RegistryRow], list[Rejection]]:
    sheet = read_sheet(text.encode(encoding), REGISTRY_HEADERS, REGISTRY_REQUIRED_COLUMNS)
    return check_registry_rows(sheet, source, KEYS)


HEADER = "id_number,name,category,valid_from,valid_to,department\n"


def test_every_bad_row_is_reported_with_its_line_and_reason_and_good_rows_pass() -> None:
    good = id_number(1)
    text = HEADER + "\n".join([
        f"{good},韦小明,minimum_living_allowance,2025-01-01,2025-12-31,南宁市民政局",  # line 2: good
        "45010320100101001,韦小明,minimum_living_allowance,2025-01-01,2025-12-31,",  # 3: 17 characters
        f"{good[:17]}{'0' if good[17] != '0' else '1'},韦小明,minimum_living_allowance,2025-01-01,,",  # 4: check
        f"{good},韦小明,minimum_living_allowance,2025-01-01,2025-12-31,南宁市民政局",  # 5: duplicate of 2
        f"{id_number(2)},韦小红,rich_uncle,2025-01-01,2025-12-31,",  # 6: unknown category
        f"{id_number(3)},韦小红,disabled,2025-01-01,2025-12-31,",  # 7: not a civil-affairs category
        f"{id_number(4)},韦小红,orphan,2025-06-01,2025-05-31,",  # 8: dates out of order
        f"{id_number(5)},,orphan,2025-06-01,,",  # 9: empty name
        f"{id_number(6)},韦小红,orphan,June 2025,,",  # 10: not a date
        f"{id_number(7)},韦小红,低保,2025/01/01,20251231,",  # 11: good (Chinese label, other date shapes)
    ]) + "\n"
    accepted, rejected = check(text)
    assert [r.line for r in accepted] == [2, 11]
    assert [(r.line, r.reason, r.column) for r in rejected] == [
        (3, "malformed_id_number", "id_number"), (4, "malformed_id_number", "id_number"),
        (5, "duplicate_row", None), (6, "unknown_category", "category"), (7, "unknown_category", "category"),
        (8, "dates_out_of_order", "valid_to"), (9, "empty_required_field", "name"),
        (10, "malformed_date", "valid_from")]
    assert "line 2" in rejected[2].detail
    assert all(good not in r.detail and "韦小" not in r.detail for r in rejected)
    assert accepted[1].category == "minimum_living_allowance"
    assert (accepted[1].valid_from, accepted[1].valid_to) == (date(2025, 1, 1), date(2025, 12, 31))
    assert accepted[0].department == "南宁市民政局" and accepted[1].department == "civil_affairs"


def test_an_empty_valid_to_is_open_ended() -> None:
    accepted, _ = check(HEADER + f"{id_number(1)},韦小明,低保,2025-01-01,,\n")
    assert accepted[0].valid_to == OPEN_END


def test_chinese_headers_and_a_gbk_file_are_read() -> None:
    text = "身份证号,姓名,类别,有效期起,有效期止,来源部门\n" + f"{id_number(1)},韦小明,脱贫户,2024-01-01,,乡村振兴局\n"
    accepted, rejected = check(text, source="rural_revitalisation", encoding="gbk")
    assert not rejected and accepted[0].category == "poverty_alleviated"
    assert accepted[0].name_key == KEYS.name_key("韦小明") and accepted[0].department == "乡村振兴局"


def test_a_utf8_file_with_bom_and_blank_lines_is_read() -> None:
    raw = "\ufeff\n" + HEADER + "\n" + f"{id_number(1)},韦小明,低保,2025-01-01,,\n\n"
    rows = sheet_of(raw, "utf-8")
    assert [line for line, _ in rows] == [4]


def test_an_xlsx_workbook_is_read_with_date_cells() -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["身份证号", "姓名", "类别", "有效期起", "有效期止"])
    sheet.append([id_number(1), "韦小明", "残疾", datetime(2025, 1, 1), None])
    # An ID number typed into a number cell loses its check digit's meaning (and often digits): rejected.
    sheet.append([450103201001010018, "韦小明", "残疾", datetime(2025, 1, 1), None])
    buffer = io.BytesIO()
    book.save(buffer)
    sheet_read = read_sheet(buffer.getvalue(), REGISTRY_HEADERS, REGISTRY_REQUIRED_COLUMNS)
    accepted, rejected = check_registry_rows(sheet_read, "disability_federation", KEYS)
    assert [(r.line, r.category, r.valid_from) for r in accepted] == [(2, "disabled", date(2025, 1, 1))]
    assert [(r.line, r.reason) for r in rejected] == [(3, "malformed_id_number")]


@pytest.mark.parametrize(("raw", "field"), [
    (b"", "file"), (b"  \n\n", "file"), (HEADER.encode(), "file"), (b"\xff\xfei\x00d\x00", "file"),
    (b"PK\x03\x04not really a workbook", "file"),
    ("身份证号,姓名,有效期起,有效期止\n1,2,3,4\n".encode(), "category"),
    (b"id_number,name,category,valid_from\n1,2,3,4\n", "valid_to"),
])
def test_a_file_in_the_wrong_shape_is_refused_whole_naming_what_is_wrong(raw: bytes, field: str) -> None:
    with pytest.raises(FileRefused) as refused:
        read_sheet(raw, REGISTRY_HEADERS, REGISTRY_REQUIRED_COLUMNS)
    assert refused.value.field == field
    if field not in {"file"}:
        assert f"missing column {field}" in refused.value.detail


def test_dates_in_the_shapes_departments_export() -> None:
    assert parse_day("2025-01-02") == parse_day("2025/1/2") == parse_day("20250102") == date(2025, 1, 2)
    assert parse_day("2025年1月2日") == parse_day("2025.01.02") == date(2025, 1, 2)
    assert parse_day("2025-01-02 00:00:00") == date(2025, 1, 2)
    assert parse_day(datetime(2025, 1, 2, 8)) == date(2025, 1, 2)
    assert parse_day("2025-02-30") is None and parse_day("soon") is None
