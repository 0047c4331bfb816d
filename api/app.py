"""create_app(settings): builds the whole service (store, read-model engine, clock, profiles, routes) at start-up.

Nothing is built at import time; the lifespan opens the store once and closes it on shutdown.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from adapters.batches import BatchCommands
from adapters.calendar import WorkingCalendar
from adapters.cases import CaseService
from adapters.clock import Clock, parse_instant
from adapters.db import PlannerStatistics, create_db_engine, create_tables
from adapters.exports import ExportService
from adapters.idempotency import RequestLog, ResponseLog
from adapters.logs import configure_logging, get_logger
from adapters.matching import IdentificationEngine
from adapters.model_review import PublishedProfiles
from adapters.notifications import Dispatcher, DispatcherThread, LoggingNotifier
from adapters.policies import Profiles
from adapters.publicity import PublicityService
from adapters.rounds import RoundService
from adapters.scheduler import DeadlineJob, DeadlineScheduler
from adapters.schools import SchoolRegistry
from adapters.settings import Settings
from adapters.store import CaseStore
from api.deps import Services
from api.errors import install_error_handlers
from api.hardening import install_security
from api.idempotency import IdempotencyMiddleware
from api.routes import (
    aftercare,
    audit,
    batches,
    cases,
    evaluation,
    model_review,
    notifications,
    plans,
    publicity,
    queries,
    registries,
    rounds,
    session,
)
from api.web import install_web
from projections import all_views
from projections.case_versions import AsOfIndex
from projections.runner import Projections, RunnerThread


def newest_event_time(store: CaseStore) -> datetime | None:
    last_id = store.recorder.max_notification_id()
    if not last_id:
        return None
    notification = store.recorder.select_notifications(last_id, 1)[0]
    domain_event = store.mapper.to_domain_event(notification)
    return domain_event.timestamp  # type: ignore[attr-defined, no-any-return]


def build_services(settings: Settings) -> Services:
    """Opens the store and read-model database and loads profiles; shared by the API and the CLI."""
    profiles = Profiles.load(settings.policy_dir)
    store = CaseStore(settings)
    engine = create_db_engine(settings)
    create_tables(engine)
    store.statistics = PlannerStatistics(engine)
    schools = SchoolRegistry(engine)
    if settings.demo_schools and settings.demo_schools.exists() and schools.count() == 0:
        schools.import_file(settings.demo_schools, known_provinces={p.province_code for p in profiles.all()})
    start = parse_instant(settings.now) if settings.now else None
    clock = Clock(start=start, not_before=newest_event_time(store))
    projections = Projections(store, engine, all_views(settings.secret), batch_size=settings.projection_batch_size)
    projections.ensure()
    cases = CaseService(store, clock, profiles, schools, RequestLog(store, engine))
    # Published profile versions (model review) and the round admission rule (adapters/rounds.py).
    profiles.use_published(PublishedProfiles(store))
    cases.admission_checks.append(RoundService(store, clock, profiles, schools, projections).admit)
    cases.as_of_index = AsOfIndex(projections)
    calendar = WorkingCalendar(engine)
    identification = IdentificationEngine.build(secret=settings.secret, engine=engine, cases=cases,
                                                projections=projections, schools=schools, profiles=profiles,
                                                clock=clock)
    return Services(settings=settings, store=store, engine=engine, clock=clock, profiles=profiles,
                    schools=schools, cases=cases, projections=projections, calendar=calendar,
                    publicity=PublicityService(cases, calendar, projections, settings.secret),
                    deadlines=DeadlineJob(cases, projections), exports=ExportService(cases, projections),
                    identification=identification, matcher=identification.matching.matcher,
                    batches=BatchCommands(cases, projections), responses=ResponseLog(engine, store.mapper.cipher))


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level)
    log = get_logger("zizhu.api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = services or build_services(settings)
        app.state.services = built
        runner = RunnerThread(built.projections, settings.projection_poll_interval)
        if settings.run_projections:
            runner.start()
        # Outbound notifications follow the notifications view (adapters/notifications.py).
        dispatcher = DispatcherThread(Dispatcher(built.projections, LoggingNotifier()),
                                      settings.projection_poll_interval)
        if settings.run_projections:
            dispatcher.start()
        # Deadlines are derived from the notices view each run, so starting (or restarting) here concludes
        # every window that ended while the service was down.
        deadlines = DeadlineScheduler(built.deadlines, settings.deadline_interval) if built.deadlines else None
        if deadlines is not None and settings.run_deadlines:
            deadlines.start()
        log.info("service_started", store="sqlite" if settings.is_sqlite else "postgresql",
                 env=settings.env, clock_start=built.clock.now().isoformat())
        try:
            yield
        finally:
            if deadlines is not None:
                deadlines.stop()
            dispatcher.stop()
            runner.stop()
            if services is None:
                built.store.close()
                built.engine.dispose()
            log.info("service_stopped")

    app = FastAPI(title="zizhu — 家庭经济困难学生认定与精准资助", version="1.0.0", lifespan=lifespan,
                  description="Event-sourced case management for identifying and supporting students from "
                              "economically disadvantaged families. See API.md for the contract.")
    install_error_handlers(app)
    install_security(app, settings)
    app.add_middleware(IdempotencyMiddleware)

    @app.middleware("http")
    async def request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        log.info("request_handled", method=request.method, route=_route_of(request),
                 status=response.status_code, ms=round((time.perf_counter() - started) * 1000, 2))
        return response

    @app.get("/healthz", tags=["health"])
    def healthz(request: Request) -> JSONResponse:
        built: Services = request.app.state.services
        checks: dict[str, Any] = {}
        try:
            checks["events"] = built.store.recorder.max_notification_id() or 0
            with built.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any store failure means "not healthy", which is this endpoint's answer
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "store": "sqlite" if built.settings.is_sqlite else "postgresql",
                             "log_position": checks["events"], "now": built.clock.now().isoformat(),
                             "views": built.projections.positions()})

    app.include_router(cases.router)
    app.include_router(audit.router)
    app.include_router(queries.router)
    app.include_router(publicity.router)
    app.include_router(aftercare.router)
    app.include_router(rounds.router)
    app.include_router(plans.router)
    app.include_router(notifications.router)
    app.include_router(model_review.router)
    app.include_router(registries.router)
    app.include_router(evaluation.router)
    app.include_router(session.router)
    app.include_router(batches.router)
    install_web(app)  # the zh-CN pages at / and their static files (api/web)
    return app


def _route_of(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", request.url.path)
