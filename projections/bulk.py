"""Bulk writes for views: a batch of thousands of rows in a few statements, inside the batch's transaction.

On PostgreSQL rows go in by binary COPY on the transaction's own connection (so they commit or vanish with the
tracking position, exactly like any other statement of the batch): SQLAlchemy's executemany of thousands of
parameter sets costs several times more than the database's own work, and was the largest cost of a rebuild after
decoding. A table with a column type not mapped here (Numeric, Enum …) falls back to executemany, as does
SQLite, where executemany runs in C already.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Table, any_, bindparam, func, literal, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.sql import sqltypes
from sqlalchemy.types import TypeEngine

from projections.runner import Batch, Envelope, current_batch, kept_for_batches, utc_wall_text

SEPARATOR = "\x1f"  # ASCII unit separator: never part of an id, code or status a view keys on


def packed(values: Iterable[Any]) -> str:
    """Values as one text parameter for PostgreSQL's string_to_array(…, SEPARATOR): psycopg adapts a Python list
    element by element in Python, which for thousands of keys per batch cost more than the query. An empty
    value cannot be told from an empty list that way, so it is refused like one containing the separator."""
    items = [str(v) for v in values]
    if not all(items) or any(SEPARATOR in v for v in items):
        raise ValueError("a packed value is empty or contains the separator")
    return SEPARATOR.join(items)


def key_in(conn: Connection, column: ColumnElement[Any], values: Collection[Any]) -> ColumnElement[bool]:
    """`column IN values` for thousands of values: one text parameter on PostgreSQL (an IN list of thousands of
    parameters costs more to compile and send than the look-up itself)."""
    if conn.dialect.name == "postgresql":
        return column == any_(func.string_to_array(literal(packed(values)), SEPARATOR))
    return column.in_(list(values))


def select_rows(conn: Connection, table: Table, key: str, keys: Collection[str]) -> dict[str, dict[str, Any]]:
    """The rows whose `key` is one of `keys`, as dicts by key. On PostgreSQL read through the driver's cursor
    (plain tuples; its types need no conversion), which costs a fraction of building SQLAlchemy rows."""
    if not keys:
        return {}
    if conn.dialect.name == "postgresql":
        names = [c.name for c in table.columns]
        driver: Any = conn.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(map(_quoted, names))} FROM {qualified(table)} "
                           f"WHERE {_quoted(key)} = ANY(string_to_array(%s, %s))", (packed(keys), SEPARATOR))
            index = names.index(key)
            return {row[index]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
    readers = _sqlite_readers(table) if conn.dialect.name == "sqlite" else None
    if readers is not None:
        # The driver's own cursor and the keys as one JSON parameter: SQLAlchemy rows and an expanding IN list of
        # thousands of parameters cost several times the look-up; values come back as SQLAlchemy gives them.
        names = [c.name for c in table.columns]
        index = names.index(key)
        converted = [(i, f) for i, f in enumerate(readers) if f is not None]
        found: dict[str, dict[str, Any]] = {}
        cursor = conn.connection.driver_connection.execute(  # type: ignore[union-attr]
            f"SELECT {', '.join(map(_quoted, names))} FROM {qualified(table)} "
            f"WHERE {_quoted(key)} IN (SELECT value FROM json_each(?))", (json.dumps(list(keys)),))
        for fetched in cursor.fetchall():
            values = list(fetched)
            for i, f in converted:
                if (v := values[i]) is not None:
                    values[i] = f(v)
            found[values[index]] = dict(zip(names, values, strict=True))
        return found
    return {r._mapping[key]: dict(r._mapping)
            for r in conn.execute(select(table).where(table.c[key].in_(list(keys))))}


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]],
                stored: bool = False) -> None:
    """Appends rows: mappings by column name (a missing key is NULL), or tuples of every column's value in the
    table's order (no dict per row to build and read). A row whose key is already present fails the batch, as a
    plain INSERT would. `stored` (tuples only): every value that needs it went through `stored_form` already."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        types = _copy_types(table)
        if types is not None:
            _copy(conn, table, types, rows)
            return
    elif conn.dialect.name == "sqlite" and _sqlite_converters(table) is not None:
        _sqlite_many(conn, table, "INSERT", rows, stored=stored and not isinstance(rows[0], Mapping))
        return
    names = [c.name for c in table.columns]
    conn.execute(table.insert(), [dict(r) if isinstance(r, Mapping) else dict(zip(names, r, strict=True))
                                  for r in rows])


def insert_missing_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Appends the rows whose primary key is not in the table yet and leaves the others as they are (no read of
    what is there first): INSERT OR IGNORE on SQLite; on PostgreSQL COPY into a session-private staging table and
    one INSERT … ON CONFLICT DO NOTHING from it."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        types = _copy_types(table)
        if types is not None:
            stage = _quoted(f"new_{table.name}")
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {qualified(table)}) "
                                 "ON COMMIT DELETE ROWS")
            conn.exec_driver_sql(f"TRUNCATE {stage}")  # rows of an earlier call in this transaction
            _copy(conn, table, types, rows, into=stage)
            conn.exec_driver_sql(f"INSERT INTO {qualified(table)} SELECT * FROM {stage} ON CONFLICT DO NOTHING")
            return
        conn.execute(postgresql.insert(table).on_conflict_do_nothing(), list(rows))
        return
    if conn.dialect.name == "sqlite" and _sqlite_converters(table) is not None:
        _sqlite_many(conn, table, "INSERT OR IGNORE", rows)
        return
    conn.execute(table.insert().prefix_with("OR IGNORE", dialect="sqlite"), list(rows))


def stored_form(conn: Connection, table: Table, name: str) -> Callable[[Any], Any]:
    """How a value of column `name` goes to the driver in `insert_rows(…, stored=True)`: a view that writes one
    value into many rows (an event's time into each of its messages) converts it once."""
    converters = _sqlite_converters(table) if conn.dialect.name == "sqlite" else None
    converter = converters[[c.name for c in table.columns].index(name)] if converters is not None else None
    if converter is None:
        return _as_is
    return lambda value: None if value is None else converter(value)


def stored_time(conn: Connection, table: Table, name: str) -> Callable[[Envelope], Any]:
    """`stored_form` of an envelope's time (`occurred_at`) for column `name`: on SQLite cut from the stored event's
    own text where it can be (`utc_wall_text`), which costs half the formatting of the datetime, paid per event."""
    convert = stored_form(conn, table, name)
    if convert is _as_is or not isinstance(table.c[name].type, sqltypes.DateTime):
        return lambda envelope: convert(envelope.occurred_at)
    return lambda envelope: utc_wall_text(envelope) or convert(envelope.occurred_at)


def _as_is(value: Any) -> Any:
    return value


def upsert_rows(conn: Connection, table: Table, key: str, new: Sequence[Mapping[str, Any]],
                changed: Sequence[Mapping[str, Any]]) -> None:
    """Writes a batch's rows keyed by the single-column primary key `key`: `new` ones are inserted and `changed`
    ones (already in the table) replaced whole."""
    if not changed:
        insert_rows(conn, table, new)
        return
    types = _copy_types(table) if conn.dialect.name == "postgresql" else None
    if types is not None and UPDATE_VIA_STAGE:
        _update_via_stage(conn, table, key, types, changed)
        insert_rows(conn, table, new)
        return
    if types is not None:
        # Replacing is delete + COPY: the same dead tuples an UPDATE leaves, at a fraction of the client cost.
        conn.execute(table.delete().where(key_in(conn, table.c[key], [r[key] for r in changed])))
        insert_rows(conn, table, [*new, *changed])
        return
    if conn.dialect.name == "sqlite" and _sqlite_converters(table) is not None:
        _sqlite_many(conn, table, "INSERT OR REPLACE", [*new, *changed])
        return
    columns: dict[str, Any] = {c.name: bindparam(c.name) for c in table.columns if c.name != key}
    conn.execute(table.update().where(table.c[key] == bindparam(f"b_{key}")).values(columns),
                 [{**r, f"b_{key}": r[key]} for r in changed])
    insert_rows(conn, table, new)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(table: Table) -> str:
    """The table's name as SQL, quoted (with its schema, if any)."""
    return (f"{_quoted(table.schema)}." if table.schema else "") + _quoted(table.name)


# ------------------------------------------------------------------------------------------ PostgreSQL: COPY

# PostgreSQL type of each SQLAlchemy type a view may use, most specific first (BigInteger is an Integer); "" means
# not sent by COPY (the batch falls back to executemany).
_PG_TYPES: list[tuple[type[TypeEngine[Any]], str]] = [
    (postgresql.JSONB, "jsonb"), (sqltypes.JSON, "json"),  # psycopg encodes the value as SQLAlchemy would
    (sqltypes.Enum, ""), (sqltypes.BigInteger, "int8"), (sqltypes.SmallInteger, "int2"),
    (sqltypes.Integer, "int4"), (sqltypes.Boolean, "bool"), (sqltypes.Date, "date"), (sqltypes.Numeric, ""),
    (sqltypes.String, "text"),
]


def _copy_types(table: Table) -> list[str] | None:
    """The binary COPY types of the table's columns; None if a column's type is not one COPY is given here."""
    if "copy_types" not in table.info:
        types: list[str] | None = []
        for column in table.columns:
            kind = column.type
            if isinstance(kind, sqltypes.DateTime):
                name = "timestamptz" if kind.timezone else "timestamp"
            else:
                name = next((pg for cls, pg in _PG_TYPES if isinstance(kind, cls)), "")
            if not name or types is None:
                types = None
                continue
            types.append(name)
        table.info["copy_types"] = types
    result: list[str] | None = table.info["copy_types"]
    return result


UPDATE_VIA_STAGE = True


def _update_via_stage(conn: Connection, table: Table, key: str, types: list[str],
                      rows: Sequence[Mapping[str, Any]]) -> None:
    """Replaces rows in place: COPY into a session-private staging table, then one UPDATE … FROM it. An update
    that changes no indexed column stays on its page (PostgreSQL's HOT update), which a rebuild filling a table
    without its secondary indexes gets for every row; delete + insert churned the key index instead."""
    stage = _quoted(f"stage_{table.name}")
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {qualified(table)}) "
                         "ON COMMIT DELETE ROWS")
    _copy(conn, table, types, rows, into=stage)
    names = [c.name for c in table.columns if c.name != key]
    assignments = ", ".join(f"{_quoted(n)} = s.{_quoted(n)}" for n in names)
    conn.exec_driver_sql(f"UPDATE {qualified(table)} AS t SET {assignments} FROM {stage} AS s "
                         f"WHERE t.{_quoted(key)} = s.{_quoted(key)}")


def _copy(conn: Connection, table: Table, types: list[str], rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
          into: str | None = None) -> None:
    """Rows as mappings by column name, or as values in column order."""
    names = [c.name for c in table.columns]
    statement = f"COPY {into or qualified(table)} ({', '.join(map(_quoted, names))}) FROM STDIN (FORMAT BINARY)"
    driver: Any = conn.connection.driver_connection
    # Binary COPY: psycopg encodes each row in C from the declared types (text COPY formatted in Python, or
    # executemany, cost several times more per row).
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(types)
        if rows and isinstance(rows[0], Mapping):
            for row in rows:
                copy.write_row(list(map(row.get, names)))  # type: ignore[union-attr]
        else:
            for row in rows:
                copy.write_row(row)


# ------------------------------------------------------------------------------------------ SQLite: executemany

def _sqlite_datetime(value: datetime) -> str:
    # The text SQLAlchemy's SQLite DateTime stores (wall time, microseconds, no offset), so reads parse it alike.
    return value.isoformat(" ", "microseconds")[:26]


def _sqlite_converters(table: Table) -> list[Callable[[Any], Any] | None] | None:
    """Per column, how a Python value becomes what SQLAlchemy would store (None: as is); None for a table with a
    column type not handled here."""
    if "sqlite_converters" not in table.info:
        converters: list[Callable[[Any], Any] | None] = []
        handled = True
        for column in table.columns:
            kind = column.type
            if isinstance(kind, sqltypes.DateTime):
                converter: Callable[[Any], Any] | None = _sqlite_datetime
            elif isinstance(kind, sqltypes.Date):
                converter = date.isoformat
            elif isinstance(kind, sqltypes.JSON):
                converter = json.dumps  # SQLAlchemy's own serialiser for SQLite (a None is stored as SQL NULL)
            elif isinstance(kind, (sqltypes.Enum, sqltypes.Numeric, sqltypes.PickleType)) or \
                    not isinstance(kind, (sqltypes.String, sqltypes.Integer, sqltypes.Boolean)):
                handled = False
                break
            else:
                converter = None
            converters.append(converter)
        table.info["sqlite_converters"] = converters if handled else None
    result: list[Callable[[Any], Any] | None] | None = table.info["sqlite_converters"]
    return result


def _sqlite_readers(table: Table) -> list[Callable[[Any], Any] | None] | None:
    """Per column, how a value SQLite returns becomes what SQLAlchemy would return (None: as is); None for a table
    with a column type not handled here."""
    if "sqlite_readers" not in table.info:
        readers: list[Callable[[Any], Any] | None] | None = None
        if _sqlite_converters(table) is not None:
            readers = []
            for column in table.columns:
                kind = column.type
                if isinstance(kind, sqltypes.DateTime):
                    readers.append(datetime.fromisoformat)
                elif isinstance(kind, sqltypes.Date):
                    readers.append(date.fromisoformat)
                elif isinstance(kind, sqltypes.Boolean):
                    readers.append(bool)
                elif isinstance(kind, sqltypes.JSON):
                    readers.append(_json_value)
                else:
                    readers.append(None)
        table.info["sqlite_readers"] = readers
    result: list[Callable[[Any], Any] | None] | None = table.info["sqlite_readers"]
    return result


def _json_value(stored: Any) -> Any:
    # A column declared JSON has numeric affinity in SQLite: a number written as JSON text comes back a number.
    return json.loads(stored) if isinstance(stored, str) else stored


def _sqlite_many(conn: Connection, table: Table, verb: str,
                 rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]], stored: bool = False) -> None:
    """`stored`: rows are tuples whose values went through `stored_form` already, sent as they are."""
    converters = _sqlite_converters(table)
    assert converters is not None
    names = [c.name for c in table.columns]
    statement = (f"{verb} INTO {qualified(table)} ({', '.join(map(_quoted, names))}) "
                 f"VALUES ({', '.join('?' * len(names))})")
    if stored:
        conn.exec_driver_sql(statement, list(rows))
        return
    converted = [(i, f) for i, f in enumerate(converters) if f is not None]
    # The hot loop of every SQLite rebuild: values by C-level map, converters only where needed.
    by_name = bool(rows) and isinstance(rows[0], Mapping)
    params: list[tuple[Any, ...]] = []
    for row in rows:
        values = list(map(row.get, names)) if by_name else list(row)  # type: ignore[union-attr]
        for i, f in converted:
            if (v := values[i]) is not None:
                values[i] = f(v)
        params.append(tuple(values))
    conn.exec_driver_sql(statement, params)


def fold_per_case(conn: Connection, table: Table, batch: Sequence[Any],
                  apply: Callable[[dict[str, dict[str, Any]], Any], None],
                  cache: RowCache[dict[str, Any]] | None = None) -> None:
    """The shape of every one-row-per-case view: read the rows of the batch's cases once (through `cache`, if
    given), fold each envelope into them in memory with `apply(rows, envelope)`, and write new and changed rows
    back in bulk."""
    keys = {e.case_key for e in batch}
    rows = select_rows(conn, table, "case_id", keys) if cache is None else cache.rows(conn, table, "case_id", keys)
    existing = set(rows)
    for envelope in batch:
        apply(rows, envelope)
    upsert_rows(conn, table, "case_id", [r for k, r in rows.items() if k not in existing],
                [r for k, r in rows.items() if k in existing])
    if cache is not None:
        cache.keep(table, rows)


# ------------------------------------------------------------------------------------------ rows kept in memory

# Rows kept per table: while rebuilding (about 200 MB of case index rows at most), and for a live generation,
# whose small batches mostly touch cases the database has cached anyway (a serving process keeps little).
ROW_CACHE_ROWS = 250_000
LIVE_CACHE_ROWS = 10_000


R = TypeVar("R")


class RowCache(Generic[R]):
    """The rows a view wrote in its latest batches, kept in this process (least recently used dropped beyond
    `size` while rebuilding, `live_size` otherwise), so the next batches read back from the database only the rows
    of cases they have not seen lately. A case's events come days apart, between other cases' events: in the
    1,000,000-case benchmark log a 250,000-row cache held 84 % of the rows a batch touched, where reading them back
    was the largest part of a batch after decoding (bench/README (b)).

    The rows are what the table holds only while nothing but this process's batches moved the generation: each
    batch starts by comparing the generation's position with the one the cached rows are as of (another runner's
    batch, a rolled-back batch or another generation empties the cache), and the rows it keeps count only once its
    transaction has committed. Only for tables a view changes in `handle` alone. Outside a runner's batch (a view
    driven directly) it reads through.

    While the cache holds every row the table has (it began with the generation's table empty, and has dropped
    none since), a key it does not hold is in no row, and a batch reads nothing back at all: a rebuild of a log
    with fewer cases than `size` never reads its own rows.

    A row is a dict by column (`RowCache()`), or what a view makes of one (`RowCache(load=…)`: the view keeps its
    own objects and writes their rows). The rows are the very objects a batch folds its events into and writes
    (converting them to tuples and back cost a tenth of a batch at 1 M cases, and saved a quarter of the memory): a
    batch that fails leaves them changed, which is why a batch in flight makes the cache invalid until it
    commits."""

    def __init__(self, size: int = ROW_CACHE_ROWS, live_size: int = LIVE_CACHE_ROWS,
                 load: Callable[[dict[str, Any]], R] | None = None) -> None:
        self.size = size
        self.live_size = live_size
        self._load = load
        self._lock = threading.Lock()
        self._tables: dict[int, _Kept[R]] = {}  # by the Table object's id: one per store and generation
        kept_for_batches.add(self)

    def rows(self, conn: Connection, table: Table, key: str, keys: Collection[str]) -> dict[str, R]:
        """The rows whose `key` is one of `keys`, by key, for this batch to change and `keep`."""
        batch = current_batch()
        if batch is None or self.size <= 0:
            return self._read(conn, table, key, keys)
        kept = self._begin(table, batch)
        if kept.complete is None:
            # A generation that no batch has moved yet: complete if its table is empty (it is, unless rows were
            # written outside a runner's batch, as a unit test may).
            kept.complete = batch.position == 0 and conn.execute(
                select(literal(1)).select_from(table).limit(1)).first() is None
        rows = kept.rows
        found: dict[str, R] = {}
        missing: list[str] = []
        for k in keys:
            row = rows.get(k)
            if row is None:
                missing.append(k)
            else:
                found[k] = row
        if missing and not kept.complete:
            found.update(self._read(conn, table, key, missing))
        return found

    def _read(self, conn: Connection, table: Table, key: str, keys: Collection[str]) -> dict[str, R]:
        rows = select_rows(conn, table, key, keys)
        if self._load is None:
            return rows  # type: ignore[return-value]  # R is the row dict itself
        load = self._load
        return {k: load(r) for k, r in rows.items()}

    def keep(self, table: Table, rows: Mapping[str, R]) -> None:
        """The rows a batch wrote (or read and left as they are), by key, kept once its transaction commits."""
        batch = current_batch()
        if batch is None or self.size <= 0:
            return
        kept = self._begin(table, batch)
        if not kept.registered:
            kept.registered = True
            batch.on_commit.append(lambda: self._commit(kept, batch))
        kept.pending.append(rows)

    def settle(self, tables: Iterable[Table]) -> None:
        """The rebuild of the generation these are the tables of is over: keep no more of their rows than a live
        generation does (a batch in flight trims them itself when it commits)."""
        with self._lock:
            for kept in self._of(tables):
                if kept.owner is None:
                    self._trim(kept, min(self.size, self.live_size))

    def moved(self, tables: Iterable[Table], position: int, to: int) -> None:
        """The position of the generation these are the tables of moved from `position` to `to` with no batch
        (over events the view does not read): rows kept as of `position` are still what the tables hold."""
        with self._lock:
            for kept in self._of(tables):
                if kept.owner is None and kept.position == position:
                    kept.position = to

    def _of(self, tables: Iterable[Table]) -> list[_Kept[R]]:
        return [kept for table in tables if (kept := self._tables.get(id(table))) is not None
                and kept.table is table]

    @staticmethod
    def _trim(kept: _Kept[R], limit: int) -> None:
        rows = kept.rows
        while len(rows) > limit:
            rows.popitem(last=False)
            kept.complete = False

    def _begin(self, table: Table, batch: Batch) -> _Kept[R]:
        with self._lock:
            kept = self._tables.get(id(table))  # a _Kept holds its table, so the id is not reused meanwhile
            if kept is None or kept.owner is not batch:
                if kept is None or kept.position != batch.position:
                    kept = self._tables[id(table)] = _Kept(table)
                    for other in [n for n, k in self._tables.items() if k.generation != batch.generation
                                  and k.view == batch.view]:
                        del self._tables[other]  # a view's other generation: one generation's rows at a time
                kept.view, kept.generation = batch.view, batch.generation
                kept.owner, kept.position = batch, None  # in flight: not valid until this batch commits
                kept.pending, kept.registered = [], False
            return kept

    def _commit(self, kept: _Kept[R], batch: Batch) -> None:
        with self._lock:
            if kept.owner is not batch or self._tables.get(id(kept.table)) is not kept:
                return  # another batch began meanwhile (it emptied the cache): nothing to keep
            rows = kept.rows
            for written in kept.pending:
                for k, row in written.items():
                    rows[k] = row
                    rows.move_to_end(k)
            self._trim(kept, self.size if batch.building else min(self.size, self.live_size))
            kept.position, kept.owner, kept.pending = batch.after, None, []


class _Kept(Generic[R]):
    """One table's kept rows, as of the generation's `position` (None while a batch that uses them is in flight)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.rows: OrderedDict[str, R] = OrderedDict()
        self.complete: bool | None = None  # every row of the table is here (None: not known yet)
        self.view = ""
        self.generation = 0
        self.position: int | None = None
        self.owner: Batch | None = None
        self.pending: list[Mapping[str, R]] = []  # rows the batch in flight wrote, in order
        self.registered = False  # its commit will keep them
