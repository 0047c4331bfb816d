"""Bulk writes for views: a batch of thousands of rows in a few statements, inside the batch's transaction.

On PostgreSQL rows go in by COPY on the transaction's own connection (so they commit or vanish with the tracking
position, exactly like any other statement of the batch); SQLAlchemy's executemany of thousands of parameter sets
costs several times more than the database work (measured by bench/: it halved rebuild throughput). On SQLite
executemany runs in C already and stays.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, ColumnElement, Table, any_, bindparam, literal
from sqlalchemy.engine import Connection


def key_in(conn: Connection, column: ColumnElement[Any], values: Collection[Any]) -> ColumnElement[bool]:
    """`column IN values` for thousands of values: one array parameter on PostgreSQL (an IN list of thousands of
    parameters costs more to compile and send than the look-up itself)."""
    if conn.dialect.name == "postgresql":
        return column == any_(literal(list(values), ARRAY(column.type)))
    return column.in_(list(values))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Appends rows (every column of the table, by name; a missing key is NULL)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), list(rows))
        return
    names = [c.name for c in table.columns]
    schema = f"{_quoted(table.schema)}." if table.schema else ""
    statement = f"COPY {schema}{_quoted(table.name)} ({', '.join(_quoted(n) for n in names)}) FROM STDIN"
    driver: Any = conn.connection.driver_connection
    # Rows are formatted here as COPY text in one string: psycopg's per-value adaptation (write_row) costs
    # ten times more.
    text = "".join("\t".join(map(_copy_text, (row.get(n) for n in names))) + "\n" for row in rows)
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(text)


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (int, float, Decimal, UUID)):
        return str(value)
    raise TypeError(f"no COPY text format for {type(value).__name__}")


def upsert_rows(conn: Connection, table: Table, key: str, new: Sequence[Mapping[str, Any]],
                changed: Sequence[Mapping[str, Any]]) -> None:
    """Writes a batch's rows keyed by the single-column primary key `key`: `new` ones are inserted and `changed`
    ones (already in the table) replaced whole."""
    if changed:
        if conn.dialect.name == "postgresql":
            # Replacing is delete + COPY: the same dead tuples an UPDATE leaves, at a fraction of the client cost.
            conn.execute(table.delete().where(key_in(conn, table.c[key], [r[key] for r in changed])))
            insert_rows(conn, table, [*new, *changed])
            return
        columns: dict[str, Any] = {c.name: bindparam(c.name) for c in table.columns if c.name != key}
        conn.execute(table.update().where(table.c[key] == bindparam(f"b_{key}")).values(columns),
                     [{**r, f"b_{key}": r[key]} for r in changed])
    insert_rows(conn, table, new)
