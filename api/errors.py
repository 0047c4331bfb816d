"""Every error leaves as application/problem+json (RFC 9457) with a stable `code`, mapped here once."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.auth import InvalidToken
from adapters.logs import get_logger
from domain import errors as e

PROBLEM = "application/problem+json"

STATUS_OF: list[tuple[type[e.DomainError], int]] = [
    (e.CaseNotFound, 404),
    (e.UnknownObjection, 404),
    (e.Forbidden, 403),
    (e.VersionMismatch, 412),
    (e.Conflict, 409),
    (e.ValidationFailed, 422),
    (e.InvalidTransition, 409),
    (e.RuleViolated, 409),
    (e.DomainError, 409),
]
TITLES = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
          412: "Precondition Failed", 413: "Payload Too Large", 415: "Unsupported Media Type",
          422: "Unprocessable Content", 429: "Too Many Requests", 500: "Internal Server Error",
          503: "Service Unavailable"}


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    """A problem+json response; `extra` members never overwrite the standard ones."""
    body = {"type": f"https://zizhu.example/problems/{code}", "title": TITLES.get(status, "Error"),
            "status": status, "detail": detail, "code": code}
    body.update({k: v for k, v in extra.items() if v is not None and k not in body})
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def status_for(error: e.DomainError) -> int:
    for cls, status in STATUS_OF:
        if isinstance(error, cls):
            return status
    return 409


def install_error_handlers(app: FastAPI) -> None:
    log = get_logger("zizhu.api")

    @app.exception_handler(e.DomainError)
    async def _domain(_: Request, exc: e.DomainError) -> JSONResponse:
        context: dict[str, Any] = {k: v for k, v in exc.context.items() if k not in {"field", "headers"}}
        field = getattr(exc, "field", None) or exc.context.get("field") or None
        return problem(status_for(exc), exc.code, exc.detail, field=field, **context)

    @app.exception_handler(InvalidToken)
    async def _token(_: Request, exc: InvalidToken) -> JSONResponse:
        return problem(401, "unauthorized", f"missing or invalid bearer token: {exc}",
                       headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            if err.get("type") == "json_invalid":
                # pydantic puts the character offset where the field would be; the field is the whole body.
                reason = (err.get("ctx") or {}).get("error", "")
                errors.append({"field": "body", "message": f"malformed JSON at character {loc[-1]}: {reason}"})
                continue
            errors.append({"field": _field_of(loc), "message": err.get("msg", "invalid")})
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        return problem(422, "validation_failed", f"{first['field'] or 'request'}: {first['message']}",
                       field=first["field"] or None, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                415: "unsupported_media_type", 429: "rate_limited"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if _is_database_unavailable(exc):
            log.warning("database_unavailable", error_type=type(exc).__name__)
            return problem(503, "unavailable", "the store is not answering; try again shortly",
                           headers={"Retry-After": "2"})
        log.exception("unhandled_error", error_type=type(exc).__name__, path=request.url.path)
        return problem(500, "internal_error", "an unexpected error occurred; it has been logged")


def _field_of(loc: tuple[Any, ...]) -> str:
    """pydantic's location as the domain names fields: `household.members[0].age`; the section (`body`,
    `query`, …) alone when the error is about the section itself."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else f"{'.' if name else ''}{part}"
    return name or (str(loc[0]) if loc else "")


def _is_database_unavailable(exc: BaseException) -> bool:
    import psycopg
    from eventsourcing.persistence import InterfaceError, OperationalError
    from sqlalchemy import exc as sa

    # The store (eventsourcing wraps psycopg and sqlite3 errors, pool timeouts included), the read-model engine
    # (SQLAlchemy: lost or refused connections, its own pool's timeout) and psycopg used directly.
    if isinstance(exc, (OperationalError, InterfaceError, sa.OperationalError, sa.InterfaceError, sa.TimeoutError,
                        psycopg.OperationalError, psycopg.InterfaceError)):
        return True
    return (isinstance(exc, sa.DBAPIError) and exc.connection_invalidated) or type(exc).__name__ in {
        "OperationalError", "PoolTimeout", "ConnectionUnavailableError"}
