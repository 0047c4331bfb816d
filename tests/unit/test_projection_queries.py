"""Pure parts of the read-model queries: region prefixes and ranges, and cursors that refuse tampering."""

from __future__ import annotations

import pytest

from domain.errors import ValidationFailed
from projections.queries import decode_cursor, encode_cursor, region_prefix, region_range


@pytest.mark.parametrize(("code", "prefix"), [("450000", "45"), ("450100", "4501"), ("450103", "450103"),
                                              ("100000", ""), ("320102", "320102")])
def test_a_region_code_covers_the_codes_under_its_prefix(code: str, prefix: str) -> None:
    assert region_prefix(code) == prefix


def test_a_prefix_is_a_closed_range_of_six_digit_codes() -> None:
    low, high = region_range("4501")
    assert (low, high) == ("450100", "450199")
    assert low <= "450103" <= high and not low <= "450200" <= high
    assert region_range("") == ("000000", "999999")


def test_a_cursor_round_trips_its_sort_key() -> None:
    cursor = encode_cursor("2025-09-15T01:00:00+00:00", "5f0c…")
    assert decode_cursor(cursor, 2) == ["2025-09-15T01:00:00+00:00", "5f0c…"]


@pytest.mark.parametrize("cursor", ["", "not base64!", "bm9wZQ", encode_cursor("only-one"), "WzEsMl0"])
def test_a_cursor_not_handed_out_by_the_service_is_refused(cursor: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        decode_cursor(cursor, 2)
    assert refused.value.field == "cursor"
