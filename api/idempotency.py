"""The `Idempotency-Key` header on every POST.

This ASGI middleware derives the request's key (see adapters/idempotency.py) and, for the request's duration:
- binds it, so a case command (`CaseService`) stamps it on its event and finds it there on a retry: exactly once
  even if the process dies between the save and the answer;
- claims it in the response log: a retry of a request that succeeded gets the first answer again (status, headers
  and body, marked `Idempotent-Replayed: true`), whatever the operation (a school's batch, a round, a notice, a
  plan…); a copy sent while the first is still running waits for it (at most `WAIT` seconds, then 409
  `request_in_progress`) and then gets the same answer.
It sits outside the routes so that every POST, including those added later, honours the header without touching
its route. A request without the header, or with a token that does not verify (the route then answers 401),
passes through unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import anyio
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters import idempotency
from adapters.auth import InvalidToken, verify_token
from adapters.logs import get_logger
from api.errors import problem

HEADER = b"idempotency-key"
REPLAYED = (b"idempotent-replayed", b"true")
WAIT = 30.0  # seconds a copy waits for the first of its request to finish (or its claim to lapse)
POLL = 0.05


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw = headers.get(HEADER)
        if raw is None:
            await self.app(scope, receive, send)
            return
        header = raw.decode("latin-1").strip()
        if not idempotency.valid_header(header):
            response = problem(422, "validation_failed",
                               f"Idempotency-Key must be 1 to {idempotency.MAX_KEY_LENGTH} printable ASCII "
                               "characters", field="Idempotency-Key")
            await response(scope, receive, send)
            return
        sub = self._caller(scope, headers.get(b"authorization", b"").decode("latin-1"))
        if sub is None:
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        request = idempotency.RequestKey.derive(sub=sub, header=header, method=scope["method"],
                                                path=scope["path"], query=scope.get("query_string", b""),
                                                body=body)
        services = getattr(scope["app"].state, "services", None)
        responses: idempotency.ResponseLog | None = getattr(services, "responses", None)
        try:
            claim = await self._claim(responses, request) if responses is not None else None
        except idempotency.IdempotencyKeyReused as reused:
            await problem(422, "idempotency_key_reused", str(reused), field="Idempotency-Key")(scope, receive, send)
            return
        except SQLAlchemyError as exc:
            # The store is failing: the request runs unguarded and meets the same failure (503) or, if the store
            # is back, is still exactly once where a case command's event carries the key.
            get_logger("zizhu.idempotency").warning("idempotency_claim_failed", error_type=type(exc).__name__)
            claim = None
        if isinstance(claim, idempotency.KeptResponse):
            await send({"type": "http.response.start", "status": claim.status, "headers": [*claim.headers, REPLAYED]})
            await send({"type": "http.response.body", "body": claim.body, "more_body": False})
            return
        if claim == "running":
            await problem(409, "request_in_progress", "a request with this Idempotency-Key is still running; "
                          "retry it later", headers={"Retry-After": "1"})(scope, receive, send)
            return
        sent = _Recorder(send)
        ours = claim in ("new", "taken")
        alive = asyncio.create_task(self._heartbeat(responses, request)) if ours and responses else None
        if claim == "new":
            request = dataclasses.replace(request, new=True)  # a case command has nothing to search for
        try:
            with idempotency.bound(request):
                await self.app(scope, _replaying(body, more, receive), sent.send)
        finally:
            if alive is not None and responses is not None:
                alive.cancel()
                await self._settle(responses, request, sent)

    @staticmethod
    async def _heartbeat(responses: idempotency.ResponseLog, request: idempotency.RequestKey) -> None:
        """Keeps the claim while the request runs (a process that dies stops touching it; see ResponseLog)."""
        while True:
            await asyncio.sleep(responses.HEARTBEAT)
            try:
                await anyio.to_thread.run_sync(responses.touch, request)
            except SQLAlchemyError as exc:
                get_logger("zizhu.idempotency").warning("idempotency_touch_failed", error_type=type(exc).__name__)

    @staticmethod
    async def _claim(responses: idempotency.ResponseLog, request: idempotency.RequestKey) -> idempotency.Claim:
        deadline = time.monotonic() + WAIT
        while True:
            claim = await anyio.to_thread.run_sync(responses.claim, request)
            if claim != "running" or time.monotonic() >= deadline:
                return claim
            await anyio.sleep(POLL)

    @staticmethod
    async def _settle(responses: idempotency.ResponseLog, request: idempotency.RequestKey,
                      sent: _Recorder) -> None:
        try:
            if sent.complete and 200 <= sent.status < 300:
                kept = idempotency.KeptResponse(sent.status, sent.headers, b"".join(sent.body))
                await anyio.to_thread.run_sync(responses.keep, request, kept)
            elif sent.complete and 400 <= sent.status < 500:
                await anyio.to_thread.run_sync(responses.release, request)  # refused: nothing was stored
            else:
                # Failed, or cut short: it may have stored its event before. The retry takes the claim over at
                # once, and a case command then finds its key in its event.
                await anyio.to_thread.run_sync(responses.abandon, request)
        except SQLAlchemyError as exc:
            # The answer went out; its row stays `running` until the lease ends, and a retry then runs again.
            get_logger("zizhu.idempotency").warning("idempotency_keep_failed", error_type=type(exc).__name__)

    @staticmethod
    def _caller(scope: Scope, authorization: str) -> str | None:
        if not authorization.lower().startswith("bearer "):
            return None
        services: Any = getattr(scope["app"].state, "services", None)
        if services is None:
            return None
        try:
            return verify_token(services.settings.secret, authorization[7:].strip()).sub
        except InvalidToken:
            return None


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole request body; messages after it (a disconnect) are kept for the app to see."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), []


def _replaying(body: bytes, after: list[Message], receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *after]

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class _Recorder:
    """Passes a response through to the client and keeps a copy of it."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.complete = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            self.body.append(bytes(message.get("body", b"")))
            self.complete = not message.get("more_body", False)
        await self._send(message)
