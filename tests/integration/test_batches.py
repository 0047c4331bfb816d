"""Batch commands (adapters/batches.py) and the batch steps that share their chunked load/decide/save, against a
real SQLite file and a fresh PostgreSQL database: bulk entry, school-wide assessment and rating, a class group's
results; scope like the per-case commands; limits that change nothing; a concurrent change inside a chunk that
costs only its own case; re-runs that do nothing twice."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from typing import Any
from uuid import UUID

import pytest

from adapters.auth import Principal
from adapters.batches import MAX_APPLICATIONS, BatchCommands, decide_in_chunks
from adapters.rounds import RoundService
from adapters.settings import Settings
from api.app import build_services
from api.deps import Services
from domain.case import StudentCase
from domain.errors import CaseNotFound, Forbidden, ValidationFailed
from domain.round import NoOpenRound
from domain.values import Role, Status, case_id_for
from tests.conftest import SECRET
from tests.support import GX_SCHOOL, form, id_number

OTHER_SCHOOL = "S4501030002"
STAFF = Principal("staff-1", Role.SCHOOL, school=GX_SCHOOL)
OTHER_STAFF = Principal("staff-2", Role.SCHOOL, school=OTHER_SCHOOL)
TEACHER = Principal("teacher-1", Role.EVALUATOR, school=GX_SCHOOL, class_id="G10-3")
OTHER_TEACHER = Principal("teacher-2", Role.EVALUATOR, school=GX_SCHOOL, class_id="G10-4")
NOW = "2025-09-15T09:00:00+08:00"


@pytest.fixture
def opened(database_url: str) -> Iterator[list[Services]]:
    built: list[Services] = []
    yield built
    for services in built:
        services.store.close()
        services.engine.dispose()


def open_services(database_url: str, opened: list[Services], now: str = NOW) -> Services:
    services = build_services(Settings(database_url=database_url, secret=SECRET, now=now, log_level="WARNING",
                                       run_deadlines=False))
    if not opened:
        services.schools.import_csv(f"school_id,name,region_code,stage\n{OTHER_SCHOOL},第二中学,450103,"
                                    "senior_secondary\n".encode(), known_provinces={"45"})
    opened.append(services)
    return services


@pytest.fixture
def services(database_url: str, opened: list[Services]) -> Services:
    return open_services(database_url, opened)


def batches(services: Services) -> BatchCommands:
    assert services.batches is not None
    return services.batches


def event_count(services: Services) -> int:
    return int(services.store.recorder.max_notification_id() or 0)


def status_of(services: Services, case_id: str | UUID) -> Status:
    case = services.store.repository.get(UUID(str(case_id)))
    assert isinstance(case, StudentCase)
    return case.status


def applied(services: Services, *seqs: int) -> list[str]:
    answer = batches(services).apply_many(STAFF, GX_SCHOOL, [form(s) for s in seqs])
    assert answer["ok"] == len(seqs), answer
    return [a["case_id"] for a in answer["applications"]]


def verified(services: Services, *seqs: int) -> list[str]:
    ids = applied(services, *seqs)
    assert services.identification is not None
    services.identification.matching.verify_school(STAFF, GX_SCHOOL)
    return ids


def assessed(services: Services, *seqs: int) -> list[str]:
    ids = verified(services, *seqs)
    assert batches(services).assess_school(STAFF, GX_SCHOOL)["ok"] == len(seqs)
    return ids


def suggested(services: Services, case_id: str) -> str | None:
    case = services.store.repository.get(UUID(case_id))
    assert isinstance(case, StudentCase)
    return case.suggested_level.value if case.suggested_level else None


def tally(case_id: str, level: str | None, **extra: Any) -> dict[str, Any]:
    return {"case_id": case_id, "votes_for": 5, "votes_against": 1, "recommended_level": level,
            "panel": [{"sub": "teacher-1", "role": "head_teacher"}], **extra}


# ------------------------------------------------------------------------------------------------ bulk entry


def test_bulk_entry_records_each_form_and_reports_each_refused_row(services: Services) -> None:
    first = services.cases.apply(Principal("guardian-9", Role.APPLICANT, student=id_number(9)), form(9))
    bad = form(4)
    bad["student"]["id_number"] = "450103201001010000"  # wrong check digit
    answer = batches(services).apply_many(STAFF, GX_SCHOOL, [
        form(1), form(2), form(2), form(9), bad, form(5, school_id=OTHER_SCHOOL), form(3)])
    rows = {r["row"]: r for r in answer["applications"]}
    assert [rows[i]["outcome"] for i in range(7)] == ["ok", "ok", "skipped", "skipped", "skipped", "skipped", "ok"]
    assert rows[2]["code"] == "conflict" and rows[3]["code"] == "conflict"  # twice in the request; applied before
    assert rows[3]["case_id"] == str(first.case.id)
    assert rows[4]["code"] == "invalid_resident_id" and rows[4]["field"] == "student.id_number"
    assert rows[5]["code"] == "forbidden"  # another school's student
    assert (answer["considered"], answer["ok"], answer["skipped"]) == (7, 3, 4)
    for seq in (1, 2, 3):
        assert status_of(services, case_id_for(id_number(seq), "2025-2026")) is Status.APPLIED
    assert answer["position"] == event_count(services)


def test_bulk_entry_run_again_records_nothing_and_reports_every_row_as_applied(services: Services) -> None:
    applied(services, 1, 2, 3)
    before = event_count(services)
    again = batches(services).apply_many(STAFF, GX_SCHOOL, [form(1), form(2), form(3)])
    assert [r["code"] for r in again["applications"]] == ["conflict"] * 3
    assert again["position"] is None and event_count(services) == before


def test_bulk_entry_over_the_limit_or_outside_the_school_changes_nothing(services: Services) -> None:
    forms = [form(i % 1000) for i in range(MAX_APPLICATIONS + 1)]
    with pytest.raises(ValidationFailed) as refused:
        batches(services).apply_many(STAFF, GX_SCHOOL, forms)
    assert refused.value.field == "applications"
    with pytest.raises(CaseNotFound):
        batches(services).apply_many(OTHER_STAFF, GX_SCHOOL, [form(1)])
    with pytest.raises(Forbidden):
        batches(services).apply_many(TEACHER, GX_SCHOOL, [form(1)])
    assert event_count(services) == 0


def test_bulk_entry_meeting_a_concurrent_application_loses_only_that_student(
        database_url: str, opened: list[Services], services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    other = open_services(database_url, opened)
    original = services.store.get_many

    def then_the_guardian_applies(ids: Any, chunk: int = 500) -> dict[UUID, Any]:
        wanted = list(ids)
        found = original(wanted, chunk)
        if case_id_for(id_number(2), "2025-2026") in wanted:  # the batch's look-up (not a round's)
            other.cases.apply(Principal("guardian-2", Role.APPLICANT, student=id_number(2)), form(2))
        return found

    monkeypatch.setattr(services.store, "get_many", then_the_guardian_applies)
    answer = batches(services).apply_many(STAFF, GX_SCHOOL, [form(1), form(2), form(3)])
    assert [(r["outcome"], r.get("code")) for r in answer["applications"]] == [
        ("ok", None), ("skipped", "conflict"), ("ok", None)]
    guardian = services.store.repository.get(case_id_for(id_number(2), "2025-2026"))
    assert guardian.version == 1 and guardian.applicant_sub == "guardian-2"  # the guardian's own application


def test_bulk_entry_refuses_forms_outside_an_open_round_as_one_by_one_entry_does_reading_the_rounds_once(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    rounds = RoundService(services.store, services.clock, services.profiles, services.schools, services.projections)
    rounds.open_for_school(STAFF, GX_SCHOOL, RoundService.request("2025-2026", "identification", date(2025, 9, 20),
                                                                  date(2025, 11, 30)))
    reads: list[list[UUID]] = []
    original = services.store.get_many

    def counted(ids: Any, chunk: int = 500) -> dict[UUID, Any]:
        reads.append(list(ids))
        return original(reads[-1], chunk)

    monkeypatch.setattr(services.store, "get_many", counted)
    emergency = form(2, sudden_events=[{"kind": "accident", "occurred_on": "2025-09-01", "loss": "20000.00"}])
    answer = batches(services).apply_many(STAFF, GX_SCHOOL, [form(1), emergency, form(3)])
    rows = answer["applications"]
    assert [(r["outcome"], r.get("code")) for r in rows] == [
        ("skipped", "no_open_round"), ("ok", None), ("skipped", "no_open_round")]
    with pytest.raises(NoOpenRound) as alone:  # the same refusal as the form sent on its own
        services.cases.apply(Principal("guardian-1", Role.APPLICANT, student=id_number(1)), form(1))
    assert alone.value.code == "no_open_round"
    # One read of the school's rounds for the request's three forms, one of the new cases; then the single form's.
    assert len(reads) == 3 and len(reads[0]) == 4 and reads[1] == [case_id_for(id_number(2), "2025-2026")]
    # Another school, which runs no rounds, takes its forms in the same way.
    other = batches(services).apply_many(OTHER_STAFF, OTHER_SCHOOL, [form(5, school_id=OTHER_SCHOOL)])
    assert other["ok"] == 1


# ------------------------------------------------------------------------------------------------ assess, rate


def test_a_school_assesses_its_verified_cases_in_one_request_and_a_rerun_finds_none(services: Services) -> None:
    ids = verified(services, 1, 2, 3)
    answer = batches(services).assess_school(STAFF, GX_SCHOOL)
    assert sorted(c["case_id"] for c in answer["cases"]) == sorted(ids)  # one moment: in case order
    assert [c["outcome"] for c in answer["cases"]] == ["ok"] * 3
    assert all(status_of(services, i) is Status.ASSESSED for i in ids)
    before = event_count(services)
    again = batches(services).assess_school(STAFF, GX_SCHOOL)
    assert (again["considered"], again["position"], event_count(services)) == (0, None, before)


def test_school_batches_answer_other_schools_and_other_roles_like_the_single_command(services: Services) -> None:
    verified(services, 1)
    for run in (batches(services).assess_school, batches(services).rate_school):
        with pytest.raises(CaseNotFound):
            run(OTHER_STAFF, GX_SCHOOL)
        with pytest.raises(Forbidden):
            run(TEACHER, GX_SCHOOL)
    with pytest.raises(CaseNotFound):
        batches(services).assess_school(STAFF, "S9999999999")
    assert status_of(services, case_id_for(id_number(1), "2025-2026")) is Status.VERIFIED


def test_a_concurrent_change_in_a_chunk_is_reported_and_the_rest_of_the_chunk_is_saved(
        database_url: str, opened: list[Services], services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = verified(services, 1, 2, 3)
    other = open_services(database_url, opened)
    original = services.store.get_many

    def then_the_applicant_withdraws(wanted: Any, chunk: int = 500) -> dict[UUID, Any]:
        found = original(wanted, chunk)
        monkeypatch.undo()  # once
        other.cases.withdraw(Principal("guardian-2", Role.APPLICANT, student=id_number(2)), UUID(ids[1]),
                             reason="moved away")
        return found

    monkeypatch.setattr(services.store, "get_many", then_the_applicant_withdraws)
    answer = {c["case_id"]: c for c in batches(services).assess_school(STAFF, GX_SCHOOL)["cases"]}
    assert [(answer[i]["outcome"], answer[i].get("code")) for i in ids] == [
        ("ok", None), ("skipped", "invalid_transition"), ("ok", None)]
    assert [status_of(services, i) for i in ids] == [Status.ASSESSED, Status.WITHDRAWN, Status.ASSESSED]


def test_the_chunked_engine_saves_one_transaction_per_chunk(services: Services,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [UUID(i) for i in verified(services, 1, 2, 3, 4, 5)]
    saves: list[int] = []
    original = services.store.save

    def counted(*objs: Any, **kwargs: Any) -> Any:
        saves.append(len(objs))
        return original(*objs, **kwargs)

    monkeypatch.setattr(services.store, "save", counted)
    results, position = decide_in_chunks(services.cases, STAFF, "assess", [(i, _assess(services)) for i in ids],
                                         chunk=2)
    assert saves == [2, 2, 1] and all(r.changed for r in results) and position == event_count(services)


def _assess(services: Services) -> Any:
    from domain.policy import assess, facts_from_application

    def decide(case: StudentCase, now: Any) -> None:
        case.assess(assessment=assess(facts_from_application(case.form, case.confirmed_categories),
                                      services.cases.profile_for(case)), actor=STAFF.actor, now=now)

    return decide


# ------------------------------------------------------------------------------------------------ evaluate, rate


def test_the_class_group_records_its_results_in_one_request_and_the_school_rates_at_them(
        services: Services) -> None:
    ids = assessed(services, 1, 2, 3)
    other_class = batches(services).apply_many(STAFF, GX_SCHOOL, [form(4, class_id="G10-4")])["applications"][0]
    other_class = other_class["case_id"]
    levels = [suggested(services, i) for i in ids]
    different = "generally_difficult" if levels[2] != "generally_difficult" else "difficult"
    answer = batches(services).evaluate_class(TEACHER, GX_SCHOOL, "G10-3", [
        tally(ids[0], levels[0]), tally(ids[1], levels[1]), tally(ids[2], different),
        tally(other_class, None)])
    assert [c["outcome"] for c in answer["cases"]] == ["ok", "ok", "ok", "skipped"]
    assert answer["cases"][3]["code"] == "not_found"  # another class's case does not exist for this group
    again = batches(services).evaluate_class(TEACHER, GX_SCHOOL, "G10-3", [tally(ids[0], levels[0])])
    assert again["cases"][0]["code"] == "invalid_transition"  # evaluated already: reported, not recorded twice
    rated = {c["case_id"]: c for c in batches(services).rate_school(STAFF, GX_SCHOOL)["cases"]}
    assert [(rated[i]["outcome"], rated[i].get("code")) for i in ids] == [
        ("ok", None), ("ok", None), ("skipped", "reason_required")]
    for case_id, level in zip(ids[:2], levels[:2], strict=True):
        case = services.store.repository.get(UUID(case_id))
        assert case.level == (None if level is None else case.suggested_level)
        assert case.status is (Status.RATED if level else Status.NOT_IDENTIFIED)
    assert status_of(services, ids[2]) is Status.EVALUATED  # to be rated on its own, with a reason
    assert batches(services).rate_school(STAFF, GX_SCHOOL)["cases"][0]["code"] == "reason_required"


def test_only_the_class_own_group_records_its_results_and_a_bad_row_changes_nothing(services: Services) -> None:
    ids = assessed(services, 1)
    before = event_count(services)
    with pytest.raises(CaseNotFound):
        batches(services).evaluate_class(OTHER_TEACHER, GX_SCHOOL, "G10-3", [tally(ids[0], None)])
    with pytest.raises(CaseNotFound):
        batches(services).evaluate_class(TEACHER, OTHER_SCHOOL, "G10-3", [tally(ids[0], None)])
    with pytest.raises(Forbidden):
        batches(services).evaluate_class(STAFF, GX_SCHOOL, "G10-3", [tally(ids[0], None)])
    with pytest.raises(ValidationFailed) as refused:
        batches(services).evaluate_class(TEACHER, GX_SCHOOL, "G10-3", [tally(ids[0], None), tally("x", None)])
    assert refused.value.field == "evaluations[1].case_id"
    assert event_count(services) == before and status_of(services, ids[0]) is Status.ASSESSED


# ------------------------------------------------------------------------------------------------ the later steps


def test_notice_confirmation_archive_and_sample_load_their_cases_in_chunks(
        database_url: str, opened: list[Services], services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = assessed(services, 1, 2, 3)
    batches(services).evaluate_class(TEACHER, GX_SCHOOL, "G10-3",
                                     [tally(i, suggested(services, i) or "generally_difficult") for i in ids])
    for case_id in ids:
        if suggested(services, case_id) is None:
            services.cases.rate(STAFF, UUID(case_id), level="generally_difficult", reason="class group's view")
    batches(services).rate_school(STAFF, GX_SCHOOL)
    assert services.publicity is not None
    services.publicity.open_window(STAFF, GX_SCHOOL, ids)
    later = open_services(database_url, opened, now="2025-09-30T09:00:00+08:00")
    one_at_a_time: list[UUID] = []
    monkeypatch.setattr(later.store.repository, "get", lambda i, *a, **k: one_at_a_time.append(i))
    assert later.deadlines is not None and later.exports is not None
    run = later.deadlines.run_once()
    assert sorted(run.confirmed) == sorted(ids) and not run.refused
    again = later.deadlines.run_once()
    assert not again.confirmed
    export = later.exports.national(STAFF, GX_SCHOOL, "2025-2026")
    assert export.newly_archived == 3
    assert one_at_a_time == []  # no case was read on its own
    monkeypatch.undo()
    assert all(status_of(later, i) is Status.ARCHIVED for i in ids)


# ------------------------------------------------------------------------------------------------ the command line


def test_a_school_scripts_bulk_entry_and_assessment_with_its_token(database_url: str, tmp_path: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from adapters.auth import issue_token
    from api.cli import cli

    for key in [k for k in os.environ if k.startswith("ZIZHU_")]:
        monkeypatch.delenv(key)
    env = {"ZIZHU_SECRET": SECRET, "ZIZHU_LOG_LEVEL": "WARNING", "ZIZHU_DATABASE_URL": database_url,
           "ZIZHU_NOW": NOW}
    forms = tmp_path / "forms.json"
    forms.write_text(json.dumps({"applications": [form(1), form(2), form(1)]}), encoding="utf-8")
    token = issue_token(SECRET, sub="staff-1", role="school", school=GX_SCHOOL)
    other = issue_token(SECRET, sub="staff-2", role="school", school="S3201020001")
    entered = CliRunner().invoke(cli, ["batch", "apply", str(forms), "--school", GX_SCHOOL, "--token", token],
                                 env=env)
    assert entered.exit_code == 0, entered.output
    assert "ok 2" in entered.output and "row 2: conflict" in entered.output
    refused = CliRunner().invoke(cli, ["batch", "assess", "--school", GX_SCHOOL, "--token", other], env=env)
    assert refused.exit_code == 1 and "not_found" in refused.output
    assessed = CliRunner().invoke(cli, ["batch", "assess", "--school", GX_SCHOOL], env={**env, "ZIZHU_TOKEN": token})
    assert assessed.exit_code == 0 and "considered 0" in assessed.output  # applied, not yet verified
