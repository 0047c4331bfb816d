"""Model review and published profile versions through HTTP on SQLite and PostgreSQL: the report on a small cohort
scored by the real Guangxi model, publishing the cut-offs it found, later assessments recording the new version,
and an assessment that runs while a version is published using exactly one version."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

import adapters.cases
from adapters.auth import Principal
from adapters.model_review import ModelReviewService, PublishedProfiles
from domain.policy import Assessment, Facts, PolicyProfile, facts_from_application
from domain.values import Role
from tests.conftest import TokenFactory
from tests.e2e.aftercare_support import Open, open_service, services_of
from tests.e2e.steps import problem
from tests.support import GX_SCHOOL, JS_SCHOOL, form

BUREAU = {"region": "450000"}
NEW_CUTOFFS = {"especially_difficult": 65, "difficult": 25, "generally_difficult": 22}


@pytest.fixture
def open_client(database_url: str) -> Iterator[Open]:
    yield from open_service(database_url)


def body(seq: int, *, sudden: bool = True, siblings: int = 1, year: str = "2025-2026", school: str = GX_SCHOOL,
         region: str = "450103") -> dict[str, Any]:
    """A household above every income rule, so only the scored items speak: with a serious illness and one
    sibling in school it scores 55 on the Guangxi model; without the illness 25; three siblings 65; neither 20."""
    data = form(seq, claimed=[], year=year, school_id=school, region=region)
    data["household"]["annual_income"] = "200000.00"
    data["sudden_events"] = data["sudden_events"] if sudden else []
    data["other"]["siblings_in_school"] = siblings
    return data


def assessed(client: TestClient, auth: TokenFactory, seq: int, **kw: Any) -> tuple[str, dict[str, Any]]:
    school = kw.get("school", GX_SCHOOL)
    staff = auth("school", school=school)
    case_id = client.post("/v1/cases", json=body(seq, **kw), headers=staff).json()["id"]
    client.post(f"/v1/cases/{case_id}/verify", headers=staff, json={"method": "document", "confirmed_categories": []})
    response = client.post(f"/v1/cases/{case_id}/assess", headers=staff, json={})
    assert response.status_code == 200, response.text
    return case_id, response.json()["assessment"]


def rated(client: TestClient, auth: TokenFactory, seq: int, level: str, reason: str = "", **kw: Any) -> str:
    case_id, _ = assessed(client, auth, seq, **kw)
    school = kw.get("school", GX_SCHOOL)
    client.post(f"/v1/cases/{case_id}/evaluate", headers=auth("evaluator", school=school, class_id="G10-3"),
                json={"votes_for": 5, "votes_against": 0, "recommended_level": None})
    response = client.post(f"/v1/cases/{case_id}/rate", headers=auth("school", school=school),
                           json={"level": level, "reason": reason or None})
    assert response.status_code == 200, response.text
    return case_id


def cohort(client: TestClient, auth: TokenFactory) -> dict[str, str]:
    staff = auth("school", school=GX_SCHOOL)
    cases = {
        "fraud": rated(client, auth, 1, "difficult"),                                      # 55: difficult
        "lower": rated(client, auth, 2, "difficult", "父亲新近失业", sudden=False),           # 25: generally
        "higher": rated(client, auth, 3, "especially_difficult", "母亲重病住院", siblings=3),  # 65: difficult
        "none": rated(client, auth, 4, "not_identified", sudden=False, siblings=0),        # 20: none
    }
    revoked = client.post(f"/v1/cases/{cases['fraud']}/revoke", headers=staff,
                          json={"reason": "隐瞒经营收入", "dishonest": True})
    assert revoked.status_code == 200, revoked.text
    withdrawn, _ = assessed(client, auth, 5)
    client.post(f"/v1/cases/{withdrawn}/withdraw", headers=staff, json={"reason": "不再申请"})
    rated(client, auth, 6, "difficult", "另一学年", year="2024-2025")
    rated(client, auth, 7, "difficult", "按江苏模型另行评定", school=JS_SCHOOL, region="320102")
    services = services_of(client)
    assert services.projections.wait_for("assessment_outcomes", services.projections.head())
    return cases


def test_the_review_compares_suggestions_with_final_ratings(client: TestClient, auth: TokenFactory) -> None:
    cases = cohort(client, auth)
    report = client.get("/v1/regions/450000/model-review", params={"academic_year": "2025-2026"},
                        headers=auth("bureau", **BUREAU)).json()
    # The withdrawn case, the other year's and the Jiangsu school's are not in the cohort.
    assert report["cases"] == 4 and report["profile_version"] == "guangxi@2025.1"
    assert report["agreement"] == {"agreed": 2, "rate": "0.5000"}
    assert sorted((d["case_id"], d["suggested"], d["final"], d["direction"], d["reason"])
                  for d in report["departures"]) == sorted([
        (cases["lower"], "generally_difficult", "difficult", "more_need", "父亲新近失业"),
        (cases["higher"], "difficult", "especially_difficult", "more_need", "母亲重病住院")])
    assert report["follow_up"]["revoked"] == 1
    assert [d["case_id"] for d in report["follow_up"]["disproved"]] == [cases["fraud"]]
    # The disproved case scored on the illness and the sibling; the agreeing one had neither.
    assert [i["item"] for i in report["items"][:2]] == ["siblings", "sudden_events"]
    assert report["cutoffs"] == {
        "current": {"especially_difficult": "70", "difficult": "45", "generally_difficult": "25"},
        "current_agreement": 2,
        "best": {"especially_difficult": "65", "difficult": "25", "generally_difficult": "22"},
        "best_agreement": 4, "gain": 2, "cases": 4}
    city = client.get("/v1/regions/450100/model-review", params={"academic_year": "2025-2026"},
                      headers=auth("bureau", region="450100"))
    assert city.status_code == 200 and city.json()["cases"] == 4
    problem(client.get("/v1/regions/450000/model-review", params={"academic_year": "2025-2026"},
                       headers=auth("bureau", region="450100")), 404, "not_found")
    problem(client.get("/v1/regions/450000/model-review", params={"academic_year": "2025-2026"},
                       headers=auth("school", school=GX_SCHOOL)), 403, "forbidden")


def test_a_published_version_is_used_by_every_later_assessment(client: TestClient, auth: TokenFactory) -> None:
    cases = cohort(client, auth)
    bureau = auth("bureau", **BUREAU)
    published = client.post("/v1/regions/450000/profiles", headers=bureau,
                            json={"cutoffs": NEW_CUTOFFS, "based_on": "guangxi@2025.1", "academic_year": "2025-2026",
                                  "note": "2025-2026学年模型复盘：降低一般困难与比较困难分数线"})
    assert published.status_code == 201, published.text
    assert published.json() == {"profile_version": "guangxi@2025.1-r1", "model_version": "gx-2025-1+2025.1-r1",
                                "cutoffs": {k: str(v) for k, v in NEW_CUTOFFS.items()}}
    versions = client.get("/v1/regions/450000/profiles", headers=bureau).json()
    assert versions["in_force"] == "guangxi@2025.1-r1" and versions["file_version"] == "guangxi@2025.1"
    assert versions["published"][0]["review"] == {"academic_year": "2025-2026", "cases": 4, "agreement_before": 2,
                                                  "agreement_after": 4}
    # The same facts as the 'lower' case now score into difficult, and the assessment says which version.
    _, assessment = assessed(client, auth, 20, sudden=False)
    assert (assessment["score"], assessment["suggested_level"], assessment["profile_version"]) == (
        "25", "difficult", "guangxi@2025.1-r1")
    earlier = client.get(f"/v1/cases/{cases['lower']}", headers=auth("school", school=GX_SCHOOL)).json()
    assert earlier["assessment"]["profile_version"] == "guangxi@2025.1"
    # Jiangsu is untouched.
    _, js = assessed(client, auth, 21, school=JS_SCHOOL, region="320102")
    assert js["profile_version"] == "jiangsu@2025.1"


def test_publishing_is_refused_when_stale_malformed_or_not_provincial(client: TestClient,
                                                                     auth: TokenFactory) -> None:
    bureau = auth("bureau", **BUREAU)
    first = client.post("/v1/regions/450000/profiles", headers=bureau,
                        json={"cutoffs": NEW_CUTOFFS, "based_on": "guangxi@2025.1", "note": "first"})
    assert first.status_code == 201
    body = problem(client.post("/v1/regions/450000/profiles", headers=bureau,
                               json={"cutoffs": NEW_CUTOFFS, "based_on": "guangxi@2025.1", "note": "second"}),
                   409, "stale_profile_version")
    assert body["in_force"] == "guangxi@2025.1-r1"
    problem(client.post("/v1/regions/450000/profiles", headers=bureau,
                        json={"cutoffs": {**NEW_CUTOFFS, "especially_difficult": 20}, "note": "x"}),
            422, "validation_failed", "cutoffs.especially_difficult")
    problem(client.post("/v1/regions/450000/profiles", headers=bureau,
                        json={"cutoffs": {"especially_difficult": 70}, "note": "x"}), 422, "validation_failed",
            "cutoffs")
    problem(client.post("/v1/regions/450100/profiles", headers=auth("bureau", region="450100"),
                        json={"cutoffs": NEW_CUTOFFS, "note": "city"}), 403, "forbidden")
    problem(client.post("/v1/regions/320000/profiles", headers=bureau,
                        json={"cutoffs": NEW_CUTOFFS, "note": "other province"}), 404, "not_found")
    assert client.get("/v1/regions/450000/profiles", headers=bureau).json()["in_force"] == "guangxi@2025.1-r1"


def review_service(client: TestClient) -> ModelReviewService:
    services = services_of(client)
    return ModelReviewService(services.store, services.clock, services.profiles, services.projections,
                              PublishedProfiles(services.store))


def recomputed(client: TestClient, case_id: str) -> tuple[dict[str, Any], Assessment]:
    """The recorded assessment, and the one the version it names gives for the same facts."""
    services = services_of(client)
    case = services.cases.get(Principal("auditor-1", Role.AUDITOR), UUID(case_id))
    assert case.assessment is not None
    profile = services.profiles.by_tag(case.assessment["profile_version"])
    assert profile is not None
    facts: Facts = facts_from_application(case.form, case.confirmed_categories)
    return case.assessment, adapters.cases.assess(facts, profile)


def test_an_assessment_running_while_a_version_is_published_uses_the_one_it_started_with(
        client: TestClient, auth: TokenFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    staff = auth("school", school=GX_SCHOOL)
    case_id = client.post("/v1/cases", json=body(30, sudden=False), headers=staff).json()["id"]
    client.post(f"/v1/cases/{case_id}/verify", headers=staff, json={"method": "document", "confirmed_categories": []})
    scoring = adapters.cases.assess
    bureau = Principal("bureau-1", Role.BUREAU, region="450000")

    def publish_midway(facts: Facts, profile: PolicyProfile) -> Assessment:
        # The profile was fetched; a version is published before the model runs.
        review_service(client).publish(bureau, "450000", cutoffs=NEW_CUTOFFS, based_on=None, note="midway",
                                       academic_year=None)
        return scoring(facts, profile)

    monkeypatch.setattr(adapters.cases, "assess", publish_midway)
    assessment = client.post(f"/v1/cases/{case_id}/assess", headers=staff, json={}).json()["assessment"]
    monkeypatch.setattr(adapters.cases, "assess", scoring)
    assert (assessment["profile_version"], assessment["score"], assessment["suggested_level"]) == (
        "guangxi@2025.1", "25", "generally_difficult")
    again = client.post(f"/v1/cases/{case_id}/assess", headers=staff, json={}).json()["assessment"]
    assert (again["profile_version"], again["suggested_level"]) == ("guangxi@2025.1-r1", "difficult")


def test_concurrent_assessments_and_a_publication_never_mix_versions(client: TestClient,
                                                                     auth: TokenFactory) -> None:
    staff = auth("school", school=GX_SCHOOL)
    cases = []
    for seq in range(40, 48):
        case_id = client.post("/v1/cases", json=body(seq, sudden=False), headers=staff).json()["id"]
        client.post(f"/v1/cases/{case_id}/verify", headers=staff,
                    json={"method": "document", "confirmed_categories": []})
        cases.append(case_id)
    services = services_of(client)
    office = Principal("school-1", Role.SCHOOL, school=GX_SCHOOL)
    bureau = Principal("bureau-1", Role.BUREAU, region="450000")
    start = threading.Barrier(len(cases) + 1)
    errors: list[BaseException] = []

    def run(task: Any) -> None:
        try:
            start.wait()
            task()
        except BaseException as exc:  # collected and re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(lambda c=c: services.cases.assess(office,
                                                                                    UUID(c)),))
               for c in cases]
    threads.append(threading.Thread(target=run, args=(lambda: review_service(client).publish(
        bureau, "450000", cutoffs=NEW_CUTOFFS, based_on=None, note="race", academic_year=None),)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    seen = set()
    for case_id in cases:
        recorded, again = recomputed(client, case_id)
        seen.add(recorded["profile_version"])
        # The version an assessment names is the one whose cut-offs made its suggestion: 25 points are
        # generally difficult under the file's cut-offs and difficult under the published ones.
        assert recorded == again.as_dict()
    assert seen <= {"guangxi@2025.1", "guangxi@2025.1-r1"}
