"""The kept answers of keyed POSTs (adapters/idempotency.ResponseLog) on SQLite and PostgreSQL: a claim is the first
request's alone, a kept answer comes back as it was sent, a released claim frees the key, a claim nobody touches any
more is taken over after its lease (an abandoned one at once), and an expired answer's key is never new again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from adapters.idempotency import IdempotencyKeyReused, KeptResponse, RequestKey, ResponseLog, idempotent_responses
from api.deps import Services


def _request(body: bytes = b"{}", header: str = "k-1") -> RequestKey:
    return RequestKey.derive(sub="school-1", header=header, method="POST", path="/v1/schools/S1/assess-verified",
                             query=b"", body=body)


@pytest.fixture
def log(services: Services) -> ResponseLog:
    assert services.responses is not None
    return services.responses


def test_the_first_claim_is_new_and_a_copy_sees_it_running(log: ResponseLog) -> None:
    request = _request()
    assert log.claim(request) == "new"
    assert log.claim(request) == "running"
    with pytest.raises(IdempotencyKeyReused):
        log.claim(_request(body=b'{"other": 1}'))


def test_a_kept_answer_comes_back_as_sent(log: ResponseLog) -> None:
    request = _request(header="k-2")
    assert log.claim(request) == "new"
    answer = KeptResponse(200, [(b"content-type", b"application/json"), (b"x-min-position", b"42")],
                          '{"ok": 3, "名": "韦"}'.encode())
    log.keep(request, answer)
    assert log.claim(request) == answer


def test_a_released_claim_frees_the_key(log: ResponseLog) -> None:
    request = _request(header="k-3")
    assert log.claim(request) == "new"
    log.release(request)
    assert log.claim(request) == "new"


def test_a_claim_untouched_for_its_lease_is_taken_over_and_a_touched_one_is_not(log: ResponseLog) -> None:
    request = _request(header="k-4")

    def lapse() -> None:
        with log.engine.begin() as conn:
            conn.execute(update(idempotent_responses).values(
                started_at=datetime.now(UTC) - ResponseLog.LEASE - timedelta(seconds=1)))

    assert log.claim(request) == "new"
    lapse()
    log.touch(request)  # its process is alive: the heartbeat renews the claim
    assert log.claim(request) == "running"
    lapse()  # no heartbeat for a whole lease: its process died
    assert log.claim(request) == "taken"  # it may have done its work: not new
    assert log.claim(request) == "running"


def test_an_abandoned_claim_is_taken_over_at_once(log: ResponseLog) -> None:
    """A request that failed (5xx) or was cut short may have stored something: its retry is not new."""
    request = _request(header="k-5")
    assert log.claim(request) == "new"
    log.abandon(request)
    assert log.claim(request) == "taken"
    assert log.claim(request) == "running"


def test_an_expired_answer_leaves_its_key_used(log: ResponseLog) -> None:
    request = _request(header="k-6")
    assert log.claim(request) == "new"
    log.keep(request, KeptResponse(200, [], b'{"ok": 1}'))
    with log.engine.begin() as conn:
        conn.execute(update(idempotent_responses).values(
            started_at=datetime.now(UTC) - ResponseLog.KEEP - timedelta(minutes=1)))
    log._pruned = datetime.min.replace(tzinfo=UTC)
    other = _request(header="k-7")
    assert log.claim(other) == "new"
    log.keep(other, KeptResponse(200, [], b"{}"))  # keeping prunes what is older than KEEP
    with log.engine.connect() as conn:
        row = conn.execute(select(idempotent_responses).where(idempotent_responses.c.key == request.key)).one()
    assert (row.state, row.status, row.headers, row.body) == ("expired", None, None, None)
    with pytest.raises(IdempotencyKeyReused):
        log.claim(_request(header="k-6", body=b'{"other": 1}'))
    assert log.claim(request) == "taken"  # the request runs again, and a case command searches for its event
    assert log.claim(request) == "running"
