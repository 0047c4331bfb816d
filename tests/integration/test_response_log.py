"""The kept answers of keyed POSTs (adapters/idempotency.ResponseLog) on SQLite and PostgreSQL: a claim is the first
request's alone, a kept answer comes back as it was sent, a released claim frees the key, and a claim nobody
touches any more is taken over after its lease."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from adapters.idempotency import IdempotencyKeyReused, KeptResponse, RequestKey, ResponseLog, idempotent_responses
from api.deps import Services


def _request(body: bytes = b"{}", header: str = "k-1") -> RequestKey:
    return RequestKey.derive(sub="school-1", header=header, method="POST", path="/v1/schools/S1/assess-verified",
                             query=b"", body=body)


@pytest.fixture
def log(services: Services) -> ResponseLog:
    assert services.responses is not None
    return services.responses


def test_the_first_claim_is_ours_and_a_copy_sees_it_running(log: ResponseLog) -> None:
    request = _request()
    assert log.claim(request) == "ours"
    assert log.claim(request) == "running"
    with pytest.raises(IdempotencyKeyReused):
        log.claim(_request(body=b'{"other": 1}'))


def test_a_kept_answer_comes_back_as_sent(log: ResponseLog) -> None:
    request = _request(header="k-2")
    assert log.claim(request) == "ours"
    answer = KeptResponse(200, [(b"content-type", b"application/json"), (b"x-min-position", b"42")],
                          '{"ok": 3, "名": "韦"}'.encode())
    log.keep(request, answer)
    assert log.claim(request) == answer


def test_a_released_claim_frees_the_key(log: ResponseLog) -> None:
    request = _request(header="k-3")
    assert log.claim(request) == "ours"
    log.release(request)
    assert log.claim(request) == "ours"


def test_a_claim_untouched_for_its_lease_is_taken_over_and_a_touched_one_is_not(log: ResponseLog) -> None:
    request = _request(header="k-4")

    def lapse() -> None:
        with log.engine.begin() as conn:
            conn.execute(update(idempotent_responses).values(
                started_at=datetime.now(UTC) - ResponseLog.LEASE - timedelta(seconds=1)))

    assert log.claim(request) == "ours"
    lapse()
    log.touch(request)  # its process is alive: the heartbeat renews the claim
    assert log.claim(request) == "running"
    lapse()  # no heartbeat for a whole lease: its process died
    assert log.claim(request) == "ours"
    assert log.claim(request) == "running"
