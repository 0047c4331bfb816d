"""Packing keys into one text parameter for PostgreSQL's string_to_array: lossless, or refused."""

from __future__ import annotations

import pytest

from projections.bulk import SEPARATOR, packed


def test_keys_pack_into_one_string_the_database_splits_back() -> None:
    keys = ["5a1d0000-0000-5000-8000-000000000001", "S4501030001", "韦小明", "0"]
    assert packed(keys).split(SEPARATOR) == keys
    assert packed([42, 7]) == f"42{SEPARATOR}7"


@pytest.mark.parametrize("keys", [[""], ["a", ""], [f"a{SEPARATOR}b"]])
def test_a_key_that_would_not_come_back_the_same_is_refused(keys: list[str]) -> None:
    with pytest.raises(ValueError):
        packed(keys)
