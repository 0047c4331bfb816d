"""The views' indexes fit their queries: each query plan reads one index range in the query's own order (no sort
step, no full scan), checked with EXPLAIN on PostgreSQL (sequential scans disabled, so only a fitting index can
avoid a sort) and EXPLAIN QUERY PLAN on SQLite."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Select, select

from adapters.auth import Principal
from api.deps import Services
from domain.values import Role
from projections.queries import ReadModels
from tests.support import GX_SCHOOL, form

STAFF = Principal("staff-1", Role.SCHOOL, school=GX_SCHOOL)


def _plan(services: Services, query: Select[Any]) -> str:
    with services.engine.connect() as conn:
        compiled = query.compile(conn)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_bitmapscan = off")
            rows = conn.exec_driver_sql("EXPLAIN " + compiled.string, compiled.params).all()
            return "\n".join(r[0] for r in rows)
        params = tuple(compiled.params[k] for k in compiled.positiontup or ())
        params = tuple(v.isoformat(" ") if hasattr(v, "isoformat") else v for v in params)
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, params).all()
        return "\n".join(str(r[-1]) for r in rows)


def _uses(plan: str, index: str, covering: bool = False) -> None:
    assert index in plan, plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan  # the index gives the order
    assert "Seq Scan" not in plan and "SCAN case" not in plan, plan
    if covering:
        assert "Index Only Scan" in plan or "COVERING INDEX" in plan, plan


@pytest.fixture
def read_models(services: Services) -> ReadModels:
    for seq in range(1, 4):
        services.cases.apply(STAFF, form(seq, class_id=f"G10-{seq}"))
    services.projections.catch_up()
    return ReadModels(services.projections, services.schools, services.clock)


def test_a_queue_page_is_one_range_of_the_queue_index(services: Services, read_models: ReadModels) -> None:
    _uses(_plan(services, read_models.queue_query(STAFF, GX_SCHOOL, stage="applied")), "_queue")
    first = read_models.queue(STAFF, GX_SCHOOL, stage="applied", limit=1)
    assert first.next_cursor is not None
    _uses(_plan(services, read_models.queue_query(STAFF, GX_SCHOOL, stage="applied", limit=1,
                                                  cursor=first.next_cursor)), "_queue")


def test_an_evaluators_queue_uses_the_class_queue_index(services: Services, read_models: ReadModels) -> None:
    evaluator = Principal("t", Role.EVALUATOR, school=GX_SCHOOL, class_id="G10-2")
    plan = _plan(services, read_models.queue_query(evaluator, GX_SCHOOL, stage="applied"))
    # On a handful of rows PostgreSQL may filter the school's queue range by class instead: also in order.
    _uses(plan, "_class_queue" if "SEARCH" in plan else "_queue")


def test_a_school_search_by_name_walks_the_name_index(services: Services, read_models: ReadModels) -> None:
    _uses(_plan(services, read_models.search_query(STAFF, name="小")), "_name")


def test_region_statistics_read_one_key_range_of_the_counts(services: Services, read_models: ReadModels) -> None:
    bureau = Principal("b", Role.BUREAU, region="450000")
    plan = _plan(services, read_models.statistics_query(bureau, "450100", academic_year="2025-2026"))
    assert "case_index_counts" in plan and ("pkey" in plan or "PRIMARY KEY" in plan or "autoindex" in plan), plan
    assert "Seq Scan" not in plan and "SCAN case" not in plan, plan


def test_an_as_of_lookup_reads_only_the_cases_own_rows(services: Services, read_models: ReadModels) -> None:
    table = services.projections.active_tables("case_versions")["versions"]
    query = select(table.c.version).where(table.c.case_id == str(UUID(int=1)))
    plan = _plan(services, query)
    assert "Seq Scan" not in plan and "SCAN case" not in plan, plan
    assert "pkey" in plan or "PRIMARY KEY" in plan, plan  # the key alone: (case, version)
