"""After identification, through HTTP on SQLite and PostgreSQL: follow-up samples and checks, home visits,
spring readjustment, aid and its targets, revocation and recovery, the ledgers, and bureau spot checks."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from adapters.aftercare import Aftercare, SampleResult
from adapters.person_keys import PersonKeys
from domain.sampling import draw
from tests.conftest import SECRET, TokenFactory
from tests.e2e.aftercare_support import Open, identified, open_service, services_of, staff, version_of
from tests.support import GX_SCHOOL, JS_SCHOOL, form, id_number

E, D, G = "especially_difficult", "difficult", "generally_difficult"


@pytest.fixture
def service_at(database_url: str) -> Iterator[Open]:
    yield from open_service(database_url)


def by_level(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lv["level"]: lv for lv in body["levels"]}


# ---------------------------------------------------------------------------------------------- follow-up checks


def test_a_sample_draws_each_levels_share_reproducibly_and_a_second_draw_returns_the_first(
        service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    school = auth("school", school=GX_SCHOOL)
    levels = [E] * 11 + [D] * 2 + [G] * 3
    ids = [identified(client, seq, level=level) for seq, level in enumerate(levels, start=1)]
    not_yet = identified(client, 40, level=G, year="2024-2025")  # another year's case is not in this sample

    drawn = client.post(f"/v1/schools/{GX_SCHOOL}/follow-ups/sample", headers=school, json={"seed": "autumn-1"})
    assert drawn.status_code == 201, drawn.text
    body = drawn.json()
    assert body["semester"] == "2025-2026-1" and body["deadline"] == "2026-01-31" and body["seed"] == "autumn-1"
    levels_drawn = by_level(body)
    for level, n in ((E, 11), (D, 2), (G, 3)):
        stratum = levels_drawn[level]
        assert len(stratum["population"]) == n
        assert stratum["required"] == len(stratum["drawn"]) == math.ceil(Decimal(stratum["required_share"]) * n)
        # Anyone can redo the draw from what the sample recorded: population, share and seed.
        assert stratum["drawn"] == draw(stratum["population"], stratum["required"], "autumn-1")
    assert [levels_drawn[lv]["required"] for lv in (E, D, G)] == [2, 1, 3]
    chosen = {c for lv in levels_drawn.values() for c in lv["drawn"]}
    assert not_yet not in {c for lv in levels_drawn.values() for c in lv["population"]}

    for case_id in ids:
        state = client.get(f"/v1/cases/{case_id}", headers=school).json()
        if case_id in chosen:
            assert state["follow_up"]["sample_id"] == body["sample_id"]
            assert state["follow_up"]["deadline"] == "2026-01-31"
        else:
            assert state["follow_up"] is None
    versions = {c: version_of(client, school, c) for c in ids}

    again = client.post(f"/v1/schools/{GX_SCHOOL}/follow-ups/sample", headers=school, json={"seed": "other"})
    assert again.status_code == 200
    assert {k: v for k, v in again.json().items() if k != "drawn_now"} == \
        {k: v for k, v in body.items() if k != "drawn_now"}
    assert {c: version_of(client, school, c) for c in ids} == versions  # nothing new was recorded


def test_checks_are_recorded_on_drawn_cases_only_and_the_school_view_shows_completion(
        service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    school = auth("school", school=GX_SCHOOL)
    empty = client.post(f"/v1/schools/{GX_SCHOOL}/follow-ups/sample", headers=school, json={})
    assert empty.status_code == 409 and empty.json()["code"] == "no_identified_cases"  # too early: nothing drawn
    ids = [identified(client, seq, level=level) for seq, level in enumerate([E, E, G, G], start=1)]
    sample = client.post(f"/v1/schools/{GX_SCHOOL}/follow-ups/sample", headers=school, json={}).json()
    assert len(sample["seed"]) == 16  # drawn with a fresh random seed, recorded
    drawn = by_level(sample)
    undrawn = next(c for c in drawn[E]["population"] if c not in drawn[E]["drawn"])
    check = {"method": "phone", "checked_on": "2025-09-15", "finding": "consistent", "notes": "called mother",
             "attachments": ["doc://follow-up/2025/001.pdf"]}

    before = version_of(client, school, undrawn)
    refused = client.post(f"/v1/cases/{undrawn}/follow-up", headers=school, json=check)
    assert refused.status_code == 409 and refused.json()["code"] == "not_selected_for_follow_up"
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert version_of(client, school, undrawn) == before

    target = drawn[G]["drawn"][0]
    recorded = client.post(f"/v1/cases/{target}/follow-up", headers=school, json=check)
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["follow_up"]["records"][0]["attachments"] == ["doc://follow-up/2025/001.pdf"]
    bad = client.post(f"/v1/cases/{target}/follow-up", headers=school, json={**check, "method": "rumour"})
    assert bad.status_code == 422

    view = client.get(f"/v1/schools/{GX_SCHOOL}/follow-ups", headers={
        **school, "X-Min-Position": recorded.headers["X-Min-Position"]})
    assert view.status_code == 200, view.text
    status = view.json()
    assert status["deadline"] == "2026-01-31" and status["overdue"] is False and status["complete"] is False
    levels = by_level(status)
    assert levels[G] == {
        "level": G, "required_share": "1.00", "population": 2, "required": 2, "selected": 2, "completed": 1,
        "remaining": 1, "inconsistent": 0, "share_checked": "0.50", "meets_required_share": False}
    assert levels[E]["required"] == 1 and levels[E]["completed"] == 0
    assert {c["case_id"] for c in status["cases"] if c["checked"]} == {target}
    assert ids  # every case above was identified

    bureau = client.get(f"/v1/schools/{GX_SCHOOL}/follow-ups", headers=auth("bureau", region="450100"))
    assert bureau.status_code == 200
    assert client.get(f"/v1/schools/{GX_SCHOOL}/follow-ups",
                      headers=auth("bureau", region="320000")).status_code == 404
    evaluator = auth("evaluator", school=GX_SCHOOL, class_id="G10-3")
    assert client.post(f"/v1/schools/{GX_SCHOOL}/follow-ups/sample", headers=evaluator).status_code == 403
    other = auth("school", school="S4501030002")
    assert client.post(f"/v1/schools/{GX_SCHOOL}/follow-ups/sample", headers=other).status_code == 404


# ---------------------------------------------------------------------------------------------- home visits


def test_one_visit_covers_a_family_of_two_siblings_and_coverage_is_per_family(
        service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    school = auth("school", school=JS_SCHOOL)
    guardian = id_number(900, region="320102", born="19800101")
    household = {"region_code": "320102", "size": 5, "annual_income": "18000.00", "debts": "0.00",
                 "guardian_id_number": guardian, "members": []}
    elder = identified(client, 1, school=JS_SCHOOL, region="320102", household=household)
    younger = identified(client, 2, school=JS_SCHOOL, region="320102", household=household)
    alone = identified(client, 3, school=JS_SCHOOL, region="320102")

    visit = client.post(f"/v1/cases/{younger}/home-visit", headers=school,
                        json={"visited_on": "2025-09-14", "notes": "met both parents"})
    assert visit.status_code == 200, visit.text
    coverage = client.get(f"/v1/schools/{JS_SCHOOL}/home-visits", headers={
        **school, "X-Min-Position": visit.headers["X-Min-Position"]}).json()
    assert coverage["required"] is True and coverage["academic_year"] == "2025-2026"
    assert (coverage["families"], coverage["visited"], coverage["unvisited"], coverage["coverage"]) == \
        (2, 1, 1, "0.50")
    family = next(f for f in coverage["items"] if elder in f["case_ids"])
    assert sorted(family["case_ids"]) == sorted([elder, younger])
    assert family["visited"] is True and family["visited_on"] == "2025-09-14" and family["recorded_on_case"] == younger
    assert next(f for f in coverage["items"] if f["case_ids"] == [alone])["visited"] is False
    assert guardian not in str(coverage)

    future = client.post(f"/v1/cases/{alone}/home-visit", headers=school, json={"visited_on": "2025-09-16"})
    assert future.status_code == 422


# ---------------------------------------------------------------------------------------------- readjustment


def test_readjustment_outside_the_spring_window_is_refused_with_the_windows_dates(
        service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    school = auth("school", school=GX_SCHOOL)
    case_id = identified(client, 1, level=E)
    refused = client.post(f"/v1/cases/{case_id}/readjust", headers=school,
                          json={"level": D, "reason": "income rose"})
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["code"] == "outside_readjustment_window"
    assert (problem["opens_on"], problem["closes_on"]) == ("2026-03-01", "2026-04-30")

    client = service_at("2026-03-10T10:00:00+08:00")
    moved = client.post(f"/v1/cases/{case_id}/readjust", headers=school, json={"level": D, "reason": "income rose"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["level"] == D and moved.json()["status"] == "confirmed"
    ended = client.post(f"/v1/cases/{case_id}/readjust", headers=school,
                        json={"level": "not_identified", "reason": "father found steady work"})
    assert ended.json()["status"] == "not_identified"
    aid = client.get(f"/v1/schools/{GX_SCHOOL}/aid", headers={
        **school, "X-Min-Position": ended.headers["X-Min-Position"]}, params={"academic_year": "2025-2026"})
    assert aid.json()["items"] == []  # a case readjusted out leaves the aid list

    client = service_at("2026-05-01T10:00:00+08:00")
    late = client.post(f"/v1/cases/{identified(client, 2)}/readjust", headers=school,
                       json={"level": D, "reason": "too late"})
    assert late.status_code == 409 and late.json()["closes_on"] == "2026-04-30"


# ---------------------------------------------------------------------------------------------- aid


def test_aid_over_the_levels_target_needs_an_override_and_the_under_aid_list_shows_shortfalls(
        service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    school = auth("school", school=GX_SCHOOL)
    full, short = identified(client, 1, level=E), identified(client, 2, level=D)

    def grant(case_id: str, amount: str, **extra: str) -> Any:
        return client.post(f"/v1/cases/{case_id}/grant-aid", headers=school,
                           json={"programme": "national_grant", "amount": amount, **extra})

    assert grant(full, "2000.00").status_code == 200
    over = grant(full, "1500.00")
    assert over.status_code == 409 and over.json()["code"] == "over_aid" and over.json()["target"] == "3000.00"
    assert grant(full, "1000.00").json()["aid"]["granted"] == "3000.00"  # exactly the target is not over it
    overridden = grant(full, "0.50", override_reason="medical bills after the flood")
    assert overridden.status_code == 200 and overridden.json()["aid"]["granted"] == "3000.50"
    last = grant(short, "500.00")
    number = client.post(f"/v1/cases/{short}/grant-aid", headers=school,
                         json={"programme": "national_grant", "amount": 500})
    assert number.status_code == 422  # money is a decimal string, never a JSON number
    assert grant(short, "5.00", programme="lottery").status_code == 422

    wait = {**school, "X-Min-Position": last.headers["X-Min-Position"]}
    under = client.get(f"/v1/schools/{GX_SCHOOL}/aid/under-target", headers=wait).json()
    assert [(i["case_id"], i["target"], i["granted"], i["shortfall"]) for i in under["items"]] == \
        [(short, "2000.00", "500.00", "1500.00")]
    listed = {i["case_id"]: i for i in client.get(f"/v1/schools/{GX_SCHOOL}/aid", headers=wait).json()["items"]}
    assert listed[full]["over_target"] is True and listed[full]["granted"] == "3000.50"


def test_emergency_aid_reaches_a_student_hit_by_a_sudden_event_before_identification(
        service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    school = auth("school", school=GX_SCHOOL)
    applied = client.post("/v1/cases", headers=auth("applicant", student=id_number(7)),
                          json=form(7)).json()["id"]
    regular = client.post(f"/v1/cases/{applied}/grant-aid", headers=school,
                          json={"programme": "national_grant", "amount": "100.00"})
    assert regular.status_code == 409 and regular.json()["code"] == "invalid_transition"
    emergency = client.post(f"/v1/cases/{applied}/grant-aid", headers=school,
                            json={"programme": "emergency_aid", "amount": "800.00"})
    assert emergency.status_code == 200, emergency.text
    paid = client.post(f"/v1/cases/{applied}/disburse", headers=school, json={"amount": "800.00"})
    assert paid.status_code == 200 and paid.json()["aid"]["disbursed"] == "800.00"
    assert paid.json()["status"] == "applied"


# ---------------------------------------------------------------------------------------------- money back


def test_revocation_stops_payment_and_recovery_runs_in_parts_until_nothing_is_owed(
        service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    school = auth("school", school=GX_SCHOOL)
    case_id, other = identified(client, 1, level=E), identified(client, 2, level=G)
    js_case = identified(client, 3, school=JS_SCHOOL, region="320102", level=E)
    js_school = auth("school", school=JS_SCHOOL)
    client.post(f"/v1/cases/{case_id}/grant-aid", headers=school,
                json={"programme": "national_grant", "amount": "2000.00"})
    client.post(f"/v1/cases/{case_id}/disburse", headers=school, json={"amount": "1500.00"})
    client.post(f"/v1/cases/{other}/grant-aid", headers=school,
                json={"programme": "tuition_waiver", "amount": "800.00"})
    client.post(f"/v1/cases/{other}/disburse", headers=school, json={"amount": "800.00"})
    client.post(f"/v1/cases/{js_case}/grant-aid", headers=js_school,
                json={"programme": "provincial_grant", "amount": "1000.00"})

    revoked = client.post(f"/v1/cases/{case_id}/revoke", headers=school,
                          json={"reason": "household income concealed", "dishonest": False})
    assert revoked.status_code == 200 and revoked.json()["revocation"]["disbursed_at_revocation"] == "1500.00"
    paid = client.post(f"/v1/cases/{case_id}/disburse", headers=school, json={"amount": "100.00"})
    assert paid.status_code == 409 and paid.json()["code"] == "invalid_transition"
    too_much = client.post(f"/v1/cases/{case_id}/order-recovery", headers=school, json={"amount": "1500.01"})
    assert too_much.status_code == 409 and too_much.json()["code"] == "amount_exceeds_owed"
    assert client.post(f"/v1/cases/{case_id}/order-recovery", headers=school,
                       json={"amount": "1500.00"}).status_code == 200
    assert client.post(f"/v1/cases/{case_id}/record-recovery", headers=school,
                       json={"amount": "600.00"}).json()["aid"]["outstanding"] == "900.00"
    before = version_of(client, school, case_id)
    above = client.post(f"/v1/cases/{case_id}/record-recovery", headers=school, json={"amount": "900.01"})
    assert above.status_code == 409 and above.json()["code"] == "amount_exceeds_owed"
    assert version_of(client, school, case_id) == before
    last = client.post(f"/v1/cases/{case_id}/record-recovery", headers=school, json={"amount": "900.00"})
    assert last.json()["aid"]["outstanding"] == "0.00"

    wait = {"X-Min-Position": last.headers["X-Min-Position"]}
    assert case_id not in {i["case_id"] for i in client.get(
        f"/v1/schools/{GX_SCHOOL}/aid", headers={**school, **wait}).json()["items"]}
    ledger = client.get(f"/v1/schools/{GX_SCHOOL}/ledger", headers={**school, **wait}).json()
    rows = {r["case_id"]: r for r in ledger["items"]}
    assert rows[case_id] | {"level": None} == {
        "case_id": case_id, "academic_year": "2025-2026", "status": "revoked", "level": None,
        "granted": "2000.00", "disbursed": "1500.00", "recovery_ordered": "1500.00", "recovered": "1500.00",
        "outstanding": "0.00"}
    assert ledger["totals"] == {"granted": "2800.00", "disbursed": "2300.00", "recovery_ordered": "1500.00",
                                "recovered": "1500.00", "outstanding": "0.00"}
    assert ledger["revoked_cases"] == 1

    province = auth("bureau", region="450000")
    region = client.get("/v1/regions/450000/ledger", headers={**province, **wait}).json()
    assert region["totals"] == ledger["totals"] and [i["school_id"] for i in region["items"]] == [GX_SCHOOL]
    country = client.get("/v1/regions/100000/ledger", headers={**auth("auditor"), **wait})
    assert country.status_code == 200
    assert client.get("/v1/regions/320000/ledger", headers={**province, **wait}).status_code == 404
    assert client.get("/v1/regions/450000/ledger", headers={**school, **wait}).status_code == 403
    js_ledger = client.get("/v1/regions/320000/ledger", headers={**auth("bureau", region="320000"), **wait})
    assert js_ledger.json()["totals"]["granted"] == "1000.00"


# ---------------------------------------------------------------------------------------------- spot checks


def test_a_bureau_draws_assigns_and_follows_up_spot_checks_in_its_region(
        service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    ids = [identified(client, seq, level=E) for seq in range(1, 6)]
    ids += [identified(client, seq, school="S4501030002", level=G) for seq in range(6, 8)]
    identified(client, 8, school=JS_SCHOOL, region="320102")  # outside the region: never drawn
    city = auth("bureau", sub="chief-1", region="450100")

    drawn = client.post("/v1/regions/450100/spot-checks", headers=city,
                        json={"seed": "2025-check-1", "due_on": "2025-09-20"})
    assert drawn.status_code == 201, drawn.text
    check = drawn.json()
    # Profile: schools ceil(0.20 × 2) = 1 (at least 1); cases per school max(3, ceil(0.05 × N)), at most N.
    assert check["school_population"] == [GX_SCHOOL, "S4501030002"]
    (school,) = check["schools"]
    assert school["required"] == min(len(school["population"]), 3) == len(school["drawn"])
    assert school["drawn"] == draw(school["population"], school["required"], "2025-check-1")
    assert set(school["drawn"]) <= set(ids)
    assert client.post("/v1/regions/450100/spot-checks", headers=city,
                       json={"seed": "2025-check-1"}).status_code == 200  # same seed: the same check
    base = f"/v1/regions/450100/spot-checks/{check['check_id']}"

    first, *rest = school["drawn"]
    unassigned = client.post(f"{base}/results", headers=city,
                             json={"case_id": first, "finding": "consistent", "checked_on": "2025-09-15"})
    assert unassigned.status_code == 409 and unassigned.json()["code"] == "not_assigned"
    assign = client.post(f"{base}/assign", headers=city, json={"inspector": "inspector-7"})
    assert {i["inspector"] for i in assign.json()["items"]} == {"inspector-7"}
    inspector = auth("bureau", sub="inspector-7", region="450100")
    wrong = client.post(f"{base}/results", headers=city,
                        json={"case_id": first, "finding": "consistent", "checked_on": "2025-09-15"})
    assert wrong.status_code == 403 and wrong.json()["code"] == "not_the_inspector"
    done = client.post(f"{base}/results", headers=inspector,
                       json={"case_id": first, "finding": "inconsistent", "checked_on": "2025-09-15",
                             "notes": "income not as declared", "attachments": ["doc://spot/1.pdf"]})
    assert done.status_code == 200, done.text
    assert client.post("/v1/regions/450100/spot-checks", headers=auth("school", school=GX_SCHOOL)).status_code == 403
    assert client.post("/v1/regions/320100/spot-checks", headers=city).status_code == 404
    assert client.post("/v1/regions/450100/spot-checks", headers=auth("auditor")).status_code == 403

    later = service_at("2025-09-22T09:00:00+08:00")
    overview = later.get("/v1/regions/450000/spot-checks", headers={
        **auth("bureau", region="450000"), "X-Min-Position": done.headers["X-Min-Position"]}).json()
    (row,) = overview["checks"]
    assert row["recorded"] == 1 and row["inconsistent"] == 1 and row["assigned"] == len(school["drawn"])
    assert sorted(row["overdue"]) == sorted(rest) and overview["overdue"] == len(rest)
    assert row["formula"]["school_rate"] == "0.20"


# ---------------------------------------------------------------------------------------------- races and rebuilds


def test_two_simultaneous_draws_make_one_sample(service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    for seq in range(1, 5):
        identified(client, seq, level=G if seq % 2 else E)
    services = services_of(client)
    aftercare = Aftercare(services.cases, services.projections, PersonKeys(SECRET))
    office = staff(GX_SCHOOL)
    gate = threading.Barrier(2)

    def draw_once(seed: str) -> SampleResult:
        gate.wait()
        return aftercare.draw_follow_up_sample(office, GX_SCHOOL, seed=seed)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(draw_once, ["seed-a", "seed-b"]))
    assert sorted(r.created for r in results) == [False, True]
    assert results[0].sample.id == results[1].sample.id and results[0].sample.seed == results[1].sample.seed
    winner = next(r for r in results if r.created).sample
    for case_id in winner.drawn_cases:
        selected = [e for e in services.store.events.get(UUID(case_id)) if type(e).__name__ == "FollowUpSelected"]
        assert len(selected) == 1


def _after_identification(client: Any, auth: TokenFactory) -> None:
    """Two identified cases and every after-identification step on them: follow-up sample and record, home visit,
    aid granted and disbursed, a dishonest revocation, recovery ordered and partly recorded."""
    school = auth("school", school=GX_SCHOOL)
    first, second = identified(client, 1, level=E), identified(client, 2, level=G)
    client.post(f"/v1/schools/{GX_SCHOOL}/follow-ups/sample", headers=school, json={"seed": "r"})
    client.post(f"/v1/cases/{second}/follow-up", headers=school,
                json={"method": "letter", "checked_on": "2025-09-15", "finding": "inconsistent"})
    client.post(f"/v1/cases/{first}/home-visit", headers=school, json={"visited_on": "2025-09-15"})
    client.post(f"/v1/cases/{first}/grant-aid", headers=school,
                json={"programme": "national_grant", "amount": "1200.00"})
    client.post(f"/v1/cases/{first}/disburse", headers=school, json={"amount": "1200.00"})
    client.post(f"/v1/cases/{first}/revoke", headers=school, json={"reason": "false statement", "dishonest": True})
    client.post(f"/v1/cases/{first}/order-recovery", headers=school, json={"amount": "1200.00"})
    client.post(f"/v1/cases/{first}/record-recovery", headers=school, json={"amount": "200.00"})


def test_every_after_identification_view_rebuilds_to_the_same_rows(service_at: Open, auth: TokenFactory) -> None:
    client = service_at()
    _after_identification(client, auth)
    client.post("/v1/regions/450100/spot-checks", headers=auth("bureau", region="450100"), json={"seed": "r"})
    services = services_of(client)
    views = ("ledger", "follow_ups", "home_visits", "integrity_register", "spot_checks")
    services.projections.catch_up()
    before = {view: services.projections.checksum(view) for view in views}
    for view in views:
        services.projections.rebuild(view)
    assert {view: services.projections.checksum(view) for view in views} == before


def test_views_read_without_the_payloads_they_do_not_need_build_the_same_rows(
        service_at: Open, auth: TokenFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Views hand some topics over without decoding the events' payload (View.lean_topics). Over a log with every
    kind of case event those views take lean, each view rebuilt that way equals the same view rebuilt from fully
    decoded events, row for row, and equals what the live runner built."""
    client = service_at()
    _after_identification(client, auth)
    applicant = auth("applicant", sub="guardian-3", student=id_number(3))
    withdrawn = client.post("/v1/cases", json=form(3), headers=applicant).json()["id"]
    assert client.post(f"/v1/cases/{withdrawn}/withdraw", json={"reason": "moved away"},
                       headers=applicant).status_code == 200
    services = services_of(client)
    projections = services.projections
    projections.catch_up()
    views = [name for name, view in projections.views.items() if view.lean_topics]
    assert {"case_index", "case_versions", "notifications"} <= set(views)
    live = {view: projections.checksum(view) for view in views}
    lean_topics = {t for view in views for t in projections.views[view].lean_topics}
    kinds_in_log = {n.topic for n in services.store.recorder.select_notifications(start=1, limit=10_000)}
    assert len(kinds_in_log & lean_topics) >= 10  # withdrawn, class evaluation, notice, confirmation, aftercare …
    lean_calls: list[str] = []
    lean_event = projections.lean_event

    def counted(notification: Any) -> Any:
        lean_calls.append(notification.topic)
        return lean_event(notification)

    monkeypatch.setattr(projections, "lean_event", counted)
    for view in views:
        projections.rebuild(view)
    lean = {view: projections.checksum(view) for view in views}
    assert set(lean_calls) == kinds_in_log & lean_topics
    for view in views:
        monkeypatch.setattr(type(projections.views[view]), "lean_topics", frozenset())
        projections.rebuild(view)
    full = {view: projections.checksum(view) for view in views}
    assert lean == full == live
