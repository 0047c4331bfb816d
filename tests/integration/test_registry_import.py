"""Registry and campus-card imports against a real SQLite file and PostgreSQL: what is recorded, what is stored
(keys, never numbers or names), idempotence, and that a refused file leaves nothing behind."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Table, func, select

from adapters.auth import Principal
from adapters.consumption import consumption_records
from adapters.logs import configure_logging
from adapters.matching import IdentificationEngine
from adapters.registries import FileRefused, Importer, UnknownSource, data_imports, registry_entries
from api.deps import Services
from domain.values import Role
from tests.support import GX_SCHOOL, id_number

HEADER = "身份证号,姓名,类别,有效期起,有效期止,来源部门\n"
OFFICER = Importer("officer-7", "bureau")


def engine_of(services: Services) -> IdentificationEngine:
    assert services.identification is not None
    return services.identification


def rows(*lines: str) -> bytes:
    return (HEADER + "".join(line + "\n" for line in lines)).encode("gbk")


def count(services: Services, table: Table) -> int:
    with services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_an_import_is_recorded_and_its_good_rows_stored_as_keys(services: Services) -> None:
    raw = rows(f"{id_number(1)},韦小明,低保,2025-01-01,2025-12-31,南宁市民政局",
               f"{id_number(2)},韦小红,特困,2025-01-01,,南宁市民政局",
               f"{id_number(3)},韦小刚,低保,2025-06-01,2025-01-01,南宁市民政局",
               f"{id_number(1)},韦小明,低保,2025-01-01,2025-12-31,南宁市民政局")
    record = engine_of(services).registries.import_file(raw, source="civil_affairs", by=OFFICER,
                                                        now=services.clock.now())
    assert (record.rows_total, record.rows_accepted, record.rows_rejected, record.rows_stored) == (4, 2, 2, 2)
    assert [(r["line"], r["reason"]) for r in record.rejections] == [(4, "dates_out_of_order"),
                                                                      (5, "duplicate_row")]
    assert not record.already_imported
    with services.engine.connect() as conn:
        stored = conn.execute(select(registry_entries)).all()
        recorded = conn.execute(select(data_imports)).one()
    assert recorded.imported_by == "officer-7" and recorded.imported_role == "bureau"
    assert recorded.file_sha256 == record.file_sha256 and recorded.rows_stored == 2
    everything = repr(stored) + repr(recorded)
    assert id_number(1) not in everything and "韦小明" not in everything
    keys = engine_of(services).keys
    found = engine_of(services).registries.entries_of(keys.id_key(id_number(2)))
    assert [(e.source, e.category, e.valid_from, e.valid_to, e.department) for e in found] == [
        ("civil_affairs", "extreme_poverty_support", date(2025, 1, 1), None, "南宁市民政局")]
    assert found[0].name_key == keys.name_key("韦小红")


def test_the_same_file_twice_changes_nothing_and_answers_the_first_import(services: Services) -> None:
    registries = engine_of(services).registries
    raw = rows(f"{id_number(1)},韦小明,低保,2025-01-01,2025-12-31,")
    first = registries.import_file(raw, source="civil_affairs", by=OFFICER, now=services.clock.now())
    again = registries.import_file(raw, source="civil_affairs", by=Importer("someone-else", "school"),
                                   now=services.clock.now())
    assert again.already_imported and again.import_id == first.import_id
    assert again.imported_by == OFFICER
    assert count(services, registry_entries) == 1 and count(services, data_imports) == 1
    # Another file repeating a row stores only what is new.
    more = registries.import_file(raw + f"{id_number(2)},韦小红,孤儿,2025-01-01,,\n".encode("gbk"),
                                  source="civil_affairs", by=OFFICER, now=services.clock.now())
    assert (more.rows_accepted, more.rows_stored) == (2, 1)
    assert count(services, registry_entries) == 2 and count(services, data_imports) == 2


@pytest.mark.parametrize("raw", [b"", "身份证号,姓名,有效期起,有效期止\n1,2,3,4\n".encode("gbk"),
                                 b"\xff\xfei\x00d\x00", HEADER.encode()])
def test_a_refused_file_leaves_nothing_behind(services: Services, raw: bytes) -> None:
    with pytest.raises(FileRefused):
        engine_of(services).registries.import_file(raw, source="civil_affairs", by=OFFICER,
                                                   now=services.clock.now())
    assert count(services, registry_entries) == 0 and count(services, data_imports) == 0


def test_a_file_of_only_bad_rows_is_recorded_with_every_reason(services: Services) -> None:
    raw = rows("12345,韦小明,低保,2025-01-01,,", f"{id_number(1)},韦小明,残疾,2025-01-01,,")
    record = engine_of(services).registries.import_file(raw, source="civil_affairs", by=OFFICER,
                                                        now=services.clock.now())
    assert (record.rows_accepted, record.rows_stored) == (0, 0)
    assert [r["reason"] for r in record.rejections] == ["malformed_id_number", "unknown_category"]
    assert count(services, data_imports) == 1 and count(services, registry_entries) == 0


def test_an_unknown_source_is_refused(services: Services) -> None:
    with pytest.raises(UnknownSource):
        engine_of(services).registries.import_file(rows(), source="tax_bureau", by=OFFICER,
                                                   now=services.clock.now())


def test_spending_imports_are_idempotent_and_a_later_file_corrects_an_amount(services: Services) -> None:
    school = Principal("clerk", Role.SCHOOL, school=GX_SCHOOL)
    consumption = engine_of(services).consumption
    raw = (f"id_number,month,amount,category\n{id_number(1)},2025-09,300,canteen\n"
           f"{id_number(1)},2025-10,320,canteen\n").encode()
    first = consumption.import_file(school, GX_SCHOOL, raw)
    assert (first.rows_accepted, first.rows_stored) == (2, 2)
    assert consumption.import_file(school, GX_SCHOOL, raw).already_imported
    corrected = consumption.import_file(school, GX_SCHOOL,
                                        f"id_number,month,amount,category\n{id_number(1)},2025-10,220,canteen\n"
                                        .encode())
    assert corrected.rows_stored == 1
    with services.engine.connect() as conn:
        amounts = conn.execute(select(consumption_records.c.month, consumption_records.c.amount)
                               .order_by(consumption_records.c.month)).all()
    assert [(m, str(a)) for m, a in amounts] == [("2025-09", "300.00"), ("2025-10", "220.00")]
    assert [s.id_masked for s in consumption.roster(GX_SCHOOL, "2025-2026")] == [
        id_number(1)[:6] + "********" + id_number(1)[-4:]]


def test_an_import_logs_counts_but_never_a_number_or_a_name(services: Services,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    try:
        engine_of(services).registries.import_file(
            rows(f"{id_number(1)},韦小明,低保,2025-01-01,,", f"{id_number(2)}X,韦小红,低保,2025-01-01,,"),
            source="civil_affairs", by=OFFICER, now=services.clock.now())
    finally:
        configure_logging("WARNING")
    logged = capsys.readouterr().err
    assert '"registry_imported"' in logged and '"accepted": 1' in logged and '"rejected": 1' in logged
    assert id_number(1) not in logged and id_number(2) not in logged and "韦小" not in logged
