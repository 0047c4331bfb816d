"""Bulk writes of views (COPY on PostgreSQL, executemany on SQLite) keep every value exactly, inside the batch's
transaction: awkward text, NULLs, booleans, times; a rolled-back batch leaves nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from uuid import uuid4

import pytest
from sqlalchemy import JSON, BigInteger, Boolean, Column, Date, DateTime, MetaData, Numeric, String, Table, select

from api.deps import Services
from projections import bulk
from projections.bulk import (
    insert_missing_rows,
    insert_rows,
    select_rows,
    stored_form,
    stored_time,
    upsert_rows,
)
from projections.runner import Envelope, as_utc

AWKWARD = ["tab\there", "line\nbreak", "back\\slash", "\\N", "", "韦小明", "carriage\rreturn", "quote\"'"]


def _table(services: Services) -> Table:
    table = Table("bulk_probe", MetaData(), Column("key", String(40), primary_key=True), Column("text", String(200)),
                  Column("flag", Boolean), Column("at", DateTime(timezone=True)), Column("n", BigInteger))
    table.create(services.engine)
    return table


def _read(services: Services, table: Table) -> dict[str, tuple[object, ...]]:
    with services.engine.connect() as conn:
        return {r.key: (r.text, r.flag, as_utc(r.at) if r.at else None, r.n)
                for r in conn.execute(select(table))}


def test_rows_come_back_exactly_as_written(services: Services) -> None:
    table = _table(services)
    moment = datetime(2025, 9, 15, 1, 2, 3, 456789, tzinfo=UTC)
    rows = [{"key": f"k{i}", "text": text, "flag": i % 2 == 0, "at": moment, "n": 2**40 + i}
            for i, text in enumerate(AWKWARD)]
    rows.append({"key": "nulls", "text": None, "flag": None, "at": None, "n": None})
    with services.engine.begin() as conn:
        insert_rows(conn, table, rows)
    assert _read(services, table) == {r["key"]: (r["text"], r["flag"], r["at"], r["n"]) for r in rows}

    with services.engine.begin() as conn:
        upsert_rows(conn, table, "key", [{"key": "new", "text": "fresh", "flag": True, "at": moment, "n": 1}],
                    [{"key": "k0", "text": "replaced\tagain", "flag": False, "at": None, "n": 7}])
    after = _read(services, table)
    assert after["new"] == ("fresh", True, moment, 1)
    assert after["k0"] == ("replaced\tagain", False, None, 7)
    assert len(after) == len(rows) + 1


def test_a_failed_batch_writes_nothing(services: Services) -> None:
    table = _table(services)
    with pytest.raises(RuntimeError), services.engine.begin() as conn:
        insert_rows(conn, table, [{"key": "a", "text": "x", "flag": True, "at": None, "n": 1}])
        raise RuntimeError("the batch fails after its rows were sent")
    assert _read(services, table) == {}


def test_a_table_with_types_copy_is_not_given_falls_back_to_plain_inserts(services: Services) -> None:
    table = Table("bulk_money", MetaData(), Column("key", String(10), primary_key=True),
                  Column("amount", Numeric(14, 2)))
    table.create(services.engine)
    with services.engine.begin() as conn:
        insert_rows(conn, table, [{"key": "a", "amount": Decimal("1500.25")}, {"key": "b", "amount": None}])
    with services.engine.connect() as conn:
        assert dict(conn.execute(select(table.c.key, table.c.amount)).all()) == {"a": Decimal("1500.25"), "b": None}


def test_json_values_go_in_by_the_bulk_path_and_read_back_as_sqlalchemy_reads_them(services: Services) -> None:
    """A JSON column (the assessment breakdown) no longer sends its table to plain inserts: COPY / executemany write
    what SQLAlchemy would, and both readers give the same objects back (a None reads back as None)."""
    table = Table("bulk_json", MetaData(), Column("key", String(10), primary_key=True), Column("doc", JSON))
    table.create(services.engine)
    if services.engine.dialect.name == "postgresql":
        assert bulk._copy_types(table) == ["text", "json"]
    else:
        assert bulk._sqlite_converters(table) is not None
    docs = {"list": [{"item": "income", "points": 3, "detail": "韦小明\t\"quoted\""}], "text": "just text",
            "number": 2.5, "empty": {}, "none": None}
    with services.engine.begin() as conn:
        insert_rows(conn, table, [{"key": k, "doc": v} for k, v in docs.items() if k != "number"])
        upsert_rows(conn, table, "key", [{"key": "number", "doc": docs["number"]}],
                    [{"key": "empty", "doc": {"replaced": [1, None, True]}}])
    expected = {**docs, "empty": {"replaced": [1, None, True]}}
    with services.engine.connect() as conn:
        assert dict(conn.execute(select(table.c.key, table.c.doc)).all()) == expected
        found = select_rows(conn, table, "key", set(docs))
    assert {k: r["doc"] for k, r in found.items()} == expected


def test_rows_read_back_by_key_equal_what_sqlalchemy_reads(services: Services) -> None:
    """select_rows reads with the driver alone (one packed/JSON parameter for thousands of keys): every value comes
    back as SQLAlchemy itself would give it (booleans, dates, times, NULLs, awkward text)."""
    table = Table("bulk_keyed", MetaData(), Column("key", String(40), primary_key=True), Column("text", String(200)),
                  Column("flag", Boolean), Column("at", DateTime(timezone=True)), Column("on", Date),
                  Column("n", BigInteger))
    table.create(services.engine)
    moment = datetime(2025, 9, 15, 1, 2, 3, 456789, tzinfo=UTC)
    rows = [(f"k{i}", text, i % 2 == 0, moment, date(2025, 9, 1 + i), i) for i, text in enumerate(AWKWARD)]
    rows += [("nulls", None, None, None, None, None)] + [(f"bulk{i}", "x", True, moment, None, i) for i in range(3000)]
    with services.engine.begin() as conn:
        insert_rows(conn, table, rows)  # values in column order
    wanted = {"k0", "k3", "k7", "nulls", "bulk2999", "absent", *(f"bulk{i}" for i in range(0, 3000, 2))}
    with services.engine.connect() as conn:
        found = select_rows(conn, table, "key", wanted)
        expected = {r.key: dict(r._mapping) for r in conn.execute(select(table).where(table.c.key.in_(wanted)))}
    assert found == expected
    assert set(found) == wanted - {"absent"}
    assert found["k0"]["flag"] is True and found["k3"]["flag"] is False and found["nulls"]["on"] is None
    assert found["k7"]["on"] == date(2025, 9, 8) and as_utc(found["k7"]["at"]) == moment


def test_rows_already_present_are_left_as_they_are(services: Services) -> None:
    """insert_missing_rows adds rows with new keys and keeps existing ones unchanged, also when called twice in one
    transaction (its PostgreSQL staging table is per call)."""
    table = _table(services)
    moment = datetime(2025, 9, 15, 1, 2, 3, tzinfo=UTC)
    with services.engine.begin() as conn:
        insert_rows(conn, table, [{"key": "a", "text": "first", "flag": True, "at": moment, "n": 1}])
    with services.engine.begin() as conn:
        insert_missing_rows(conn, table, [{"key": "a", "text": "second", "flag": False, "at": None, "n": 2},
                                          {"key": "b", "text": "new\tone", "flag": None, "at": moment, "n": 3}])
        insert_missing_rows(conn, table, [{"key": "c", "text": "third", "flag": True, "at": None, "n": 4}])
    assert _read(services, table) == {"a": ("first", True, moment, 1), "b": ("new\tone", None, moment, 3),
                                      "c": ("third", True, None, 4)}


def test_values_converted_once_by_the_view_read_back_the_same(services: Services) -> None:
    """insert_rows(stored=True): a view converts a value shared by many rows once (stored_form); the rows read
    back exactly as rows whose values the bulk writer converted itself."""
    table = _table(services)
    moment = datetime(2025, 9, 15, 1, 2, 3, 456789, tzinfo=UTC)
    with services.engine.begin() as conn:
        insert_rows(conn, table, [("own", "x", True, moment, 1), ("none", None, None, None, None)])
        stored = stored_form(conn, table, "at")
        insert_rows(conn, table, [("once", "x", True, stored(moment), 1), ("nulls", None, None, stored(None), None)],
                      stored=True)
    rows = _read(services, table)
    assert rows["once"] == rows["own"] == ("x", True, moment, 1)
    assert rows["nulls"] == rows["none"] == (None, None, None, None)


def test_an_events_time_taken_from_its_stored_text_is_stored_as_its_datetime_is(services: Services) -> None:
    """stored_time: on SQLite an event's time is cut from the ISO text its stored state begins with. What it
    stores must be what converting the datetime stores, to the byte (SQL compares these as text): with and without
    microseconds, and by the datetime where the text has another offset or there is no stored state."""
    table = _table(services)
    moments = {"micro": datetime(2025, 9, 15, 1, 2, 3, 456789, tzinfo=UTC),
               "whole": datetime(2025, 9, 15, 1, 2, 3, tzinfo=UTC),
               "offset": datetime(2025, 9, 15, 9, 2, 3, 5, tzinfo=timezone(timedelta(hours=8)))}
    transcoder = services.store.mapper.transcoder
    with services.engine.begin() as conn:
        time_of = stored_time(conn, table, "at")
        envelopes = {}
        for name, moment in moments.items():
            event = SimpleNamespace(originator_id=uuid4(), originator_version=1, timestamp=moment)
            state = transcoder.encode({"timestamp": moment, "actor": {"sub": "s", "role": "school"}})
            envelopes[name] = Envelope(1, "case.confirmed", event, state)
        envelopes["no state"] = Envelope(1, "case.confirmed", envelopes["micro"].event)
        insert_rows(conn, table, [(name, None, None, time_of(e), 1) for name, e in envelopes.items()], stored=True)
        insert_rows(conn, table, [(f"{name} as datetime", None, None, e.occurred_at, 1)
                                  for name, e in envelopes.items()])
        raw = dict(conn.exec_driver_sql("SELECT key, at FROM bulk_probe").all())
    for name, e in envelopes.items():
        assert raw[name] == raw[f"{name} as datetime"], name
        assert _read(services, table)[name][2] == e.occurred_at == e.event.timestamp
