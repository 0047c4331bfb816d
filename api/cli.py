"""The `zizhu` command line: serve, token, schools import (more commands join as capabilities land)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from adapters.settings import Settings
from api import audit_cli

cli = typer.Typer(help="zizhu: 家庭经济困难学生认定与精准资助 case system", no_args_is_help=True,
                  pretty_exceptions_enable=False)
schools_cli = typer.Typer(help="The school registry", no_args_is_help=True)
cli.add_typer(schools_cli, name="schools")
calendar_cli = typer.Typer(help="The official working-day calendar", no_args_is_help=True)
cli.add_typer(calendar_cli, name="calendar")
deadlines_cli = typer.Typer(help="Public-notice deadlines", no_args_is_help=True)
cli.add_typer(deadlines_cli, name="deadlines")
registry_cli = typer.Typer(help="Registry lists of other departments (data matching)", no_args_is_help=True)
cli.add_typer(registry_cli, name="registry")
batch_cli = typer.Typer(help="Batch commands of a school (adapters/batches.py), under the caller's token",
                        no_args_is_help=True)
cli.add_typer(batch_cli, name="batch")


def _settings() -> Settings:
    from adapters.logs import configure_logging

    try:
        settings = Settings()
        configure_logging(settings.log_level)
        return settings
    except ValueError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


@cli.command()
def serve(host: Annotated[str, typer.Option()] = "127.0.0.1",
          port: Annotated[int, typer.Option()] = 8000,
          fd: Annotated[int | None, typer.Option(help="serve on this already-listening socket (inherited file "
                                                 "descriptor, e.g. socket activation) instead of --host/--port")]
          = None) -> None:
    """Runs the whole service in one process: HTTP API, projection runner and deadline scheduler."""
    import uvicorn

    from adapters.policies import ProfileFileError
    from api.app import create_app

    settings = _settings()
    try:
        from adapters.policies import Profiles

        Profiles.load(settings.policy_dir)
    except ProfileFileError as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(2) from None
    store = "SQLite " + str(settings.sqlite_path) if settings.is_sqlite else "PostgreSQL"
    if fd is not None:
        # Whoever bound the socket keeps the address across restarts: no window in which another process takes it.
        typer.echo(f"zizhu listening on file descriptor {fd} (store: {store})")
        uvicorn.run(create_app(settings), fd=fd, log_config=None, access_log=False)
        return
    typer.echo(f"zizhu listening on http://{host}:{port} (store: {store}; API docs: http://{host}:{port}/docs)")
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)


@cli.command()
def token(sub: Annotated[str, typer.Option(help="who the token is for")],
          role: Annotated[str, typer.Option(help="applicant, evaluator, school, bureau or auditor")],
          school: Annotated[str | None, typer.Option()] = None,
          class_id: Annotated[str | None, typer.Option("--class")] = None,
          region: Annotated[str | None, typer.Option()] = None,
          student: Annotated[str | None, typer.Option(help="the student's resident ID number")] = None,
          ttl: Annotated[int, typer.Option()] = 3600) -> None:
    """Prints a signed bearer token for local use and tests (HS256 with ZIZHU_SECRET)."""
    from adapters.auth import issue_token
    from domain.values import Role

    if role not in {r.value for r in Role} - {"system"}:
        typer.echo("role must be applicant, evaluator, school, bureau or auditor", err=True)
        raise typer.Exit(2)
    needs = {"applicant": ("--student", student), "evaluator": ("--school and --class", school and class_id),
             "school": ("--school", school), "bureau": ("--region", region)}
    if role in needs and not needs[role][1]:
        typer.echo(f"a {role} token needs {needs[role][0]}", err=True)
        raise typer.Exit(2)
    typer.echo(issue_token(_settings().secret, sub=sub, role=role, school=school, class_id=class_id,
                           region=region, student=student, ttl=ttl))


@cli.command()
def project() -> None:
    """Runs only the projection runner (for deployments that separate it from `zizhu serve`)."""
    from adapters.logs import configure_logging
    from adapters.notifications import Dispatcher, DispatcherThread, LoggingNotifier
    from api.app import build_services
    from projections.runner import RunnerThread

    settings = _settings()
    configure_logging(settings.log_level)
    services = build_services(settings)
    typer.echo("zizhu projection runner started; Ctrl-C stops it")
    # Outbound notifications follow the notifications view, so they go with the runner when it runs apart.
    dispatcher = DispatcherThread(Dispatcher(services.projections, LoggingNotifier()),
                                  settings.projection_poll_interval)
    dispatcher.start()
    try:
        RunnerThread(services.projections, settings.projection_poll_interval).run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        dispatcher.stop()
        services.store.close()
        services.engine.dispose()


@cli.command()
def rebuild(projection: Annotated[str | None, typer.Option(help="one view; default every view")] = None,
            batch_size: Annotated[int, typer.Option(min=1, help="events per transaction")] = 20_000) -> None:
    """Rebuilds read models from the event log into fresh tables, switching over when caught up."""
    from api.app import build_services
    from projections.runner import Progress

    services = build_services(_settings())
    names = [projection] if projection else list(services.projections.views)
    unknown = [n for n in names if n not in services.projections.views]
    if unknown:
        typer.echo(f"unknown projection {unknown[0]}; known: {', '.join(services.projections.views)}", err=True)
        raise typer.Exit(2)

    def show(p: Progress) -> None:
        typer.echo(f"\r{p.view}: {p.position}/{p.head} events, {p.rate:,.0f}/s, "
                   f"about {p.eta_seconds:,.0f}s left   ", nl=False, err=True)

    try:
        for name in names:
            final = services.projections.rebuild(name, on_progress=show, batch_size=batch_size)
            typer.echo(f"\r{name}: rebuilt to position {final.position} ({final.done} events, "
                       f"{final.rate:,.0f}/s) as generation {final.generation}          ")
    finally:
        services.store.close()
        services.engine.dispose()


@schools_cli.command("import")
def schools_import(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]) -> None:
    """Loads or updates the school registry from a CSV (school_id,name,region_code,stage; UTF-8 or GBK)."""
    from api.app import build_services

    services = build_services(_settings())
    try:
        result = services.schools.import_file(
            file, known_provinces={p.province_code for p in services.profiles.all()})
    except ValueError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        services.store.close()
        services.engine.dispose()
    typer.echo(f"inserted {result.inserted}, updated {result.updated}, rejected {len(result.rejected)}")
    for line, reason in result.rejected:
        typer.echo(f"  line {line}: {reason}")
    if result.rejected:
        sys.exit(1 if not (result.inserted or result.updated) else 0)


@calendar_cli.command("load")
def calendar_load(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                                      help="JSON or CSV schedule of one year")]) -> None:
    """Loads (or replaces) one year's official holidays and adjusted workdays (README: Public notice)."""
    from adapters.calendar import ScheduleFileError, WorkingCalendar, package_years
    from adapters.db import create_db_engine, create_tables

    engine = create_db_engine(_settings())
    try:
        create_tables(engine)
        schedule = WorkingCalendar(engine).load_file(file)
    except ScheduleFileError as exc:
        typer.echo(f"refused: {file.name}: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    note = " (takes precedence over the built-in data)" if schedule.year in package_years() else ""
    typer.echo(f"calendar {schedule.year} loaded{note}: {len(schedule.holidays)} holidays, "
               f"{len(schedule.workdays)} adjusted workdays; source: {schedule.source}")


@deadlines_cli.command("run")
def deadlines_run() -> None:
    """Runs the notice-deadline job once now (what `zizhu serve` does every ZIZHU_DEADLINE_INTERVAL seconds)."""
    from api.app import build_services

    services = build_services(_settings())
    try:
        assert services.deadlines is not None
        run = services.deadlines.run_once()
    finally:
        services.store.close()
        services.engine.dispose()
    typer.echo(f"{run.today}: confirmed {len(run.confirmed)}, held by open objections "
               f"{len(run.held_by_objection)}, refused {len(run.refused)}")


@registry_cli.command("import")
def registry_import(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                                         help="CSV (UTF-8 or GBK) or .xlsx registry list")],
                    source: Annotated[str, typer.Option(help="civil_affairs, rural_revitalisation, trade_union, "
                                                             "disability_federation or veterans_affairs")],
                    by: Annotated[str | None, typer.Option(help="who imports (recorded); default: the OS user")]
                    = None) -> None:
    """Imports a registry list; prints rows accepted and each rejected row with its reason (adapters/registries)."""
    import getpass

    from adapters.clock import Clock, parse_instant
    from adapters.db import create_db_engine, create_tables
    from adapters.registries import Importer, RegistryStore, SubjectKeys
    from domain.errors import ValidationFailed

    settings = _settings()
    engine = create_db_engine(settings)
    try:
        create_tables(engine)
        clock = Clock(start=parse_instant(settings.now) if settings.now else None)
        store = RegistryStore(engine, SubjectKeys(settings.secret))
        record = store.import_file(file.read_bytes(), source=source, by=Importer(by or f"cli:{getpass.getuser()}",
                                                                                 "operator"), now=clock.now())
    except ValidationFailed as exc:
        typer.echo(f"refused: {file.name}: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    if record.already_imported:
        typer.echo(f"already imported ({record.imported_at:%Y-%m-%d %H:%M} by {record.imported_by.sub}, import "
                   f"{record.import_id}); nothing changed")
        return
    typer.echo(f"import {record.import_id} ({source}, sha256 {record.file_sha256[:12]}…): {record.rows_total} rows, "
               f"accepted {record.rows_accepted} ({record.rows_stored} new), rejected {record.rows_rejected}")
    for rejection in record.rejections:
        typer.echo(f"  line {rejection['line']}: {rejection['reason']}: {rejection['detail']}")
    if record.rows_accepted == 0:
        raise typer.Exit(1)


TokenOption = Annotated[str, typer.Option(envvar="ZIZHU_TOKEN", help="the caller's bearer token (zizhu token)")]


def _run_batch(token: str, work: Callable[[Any, Any], dict[str, Any]]) -> None:
    """Runs one batch as the token's holder (the same scope and role checks as over HTTP) and prints its result:
    counts, then every case or row not done; exit 1 when the batch was refused, 0 otherwise."""
    from adapters.auth import InvalidToken, verify_token
    from api.app import build_services
    from domain.errors import DomainError

    settings = _settings()
    try:
        principal = verify_token(settings.secret, token)
    except InvalidToken as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None
    services = build_services(settings)
    try:
        answer = work(services.batches, principal)
    except DomainError as exc:
        typer.echo(f"refused ({exc.code}): {exc.detail}", err=True)
        raise typer.Exit(1) from None
    finally:
        services.store.close()
        services.engine.dispose()
    items = answer.get("applications") or answer.get("cases") or []
    typer.echo(f"considered {answer['considered']}: ok {answer['ok']}, unchanged {answer.get('unchanged', 0)}, "
               f"skipped {answer['skipped']}")
    for item in items:
        if item["outcome"] == "skipped":
            where = f"row {item['row']}" if "row" in item else f"case {item['case_id']}"
            typer.echo(f"  {where}: {item['code']}{' (' + item['field'] + ')' if item.get('field') else ''}")


@batch_cli.command("apply")
def batch_apply(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                                     help='JSON: {"applications": [form, ...]} or a list of forms')],
                school: Annotated[str, typer.Option(help="the school's ID")], token: TokenOption) -> None:
    """Bulk application entry by a school (as POST /v1/schools/{id}/applications)."""
    import json

    from api.routes.batches import application_shape

    raw = json.loads(file.read_text(encoding="utf-8"))
    forms = raw.get("applications") if isinstance(raw, dict) else raw
    if not isinstance(forms, list):
        typer.echo('refused: the file holds {"applications": [...]} or a list of forms', err=True)
        raise typer.Exit(2)
    _run_batch(token, lambda batches, who: batches.apply_many(who, school, forms, shape=application_shape))


@batch_cli.command("assess")
def batch_assess(school: Annotated[str, typer.Option(help="the school's ID")], token: TokenOption,
                 academic_year: Annotated[str | None, typer.Option()] = None,
                 class_id: Annotated[str | None, typer.Option("--class")] = None) -> None:
    """Assesses every verified case of the school (as POST /v1/schools/{id}/assess-verified)."""
    _run_batch(token, lambda batches, who: batches.assess_school(who, school, academic_year=academic_year,
                                                                 class_id=class_id))


@batch_cli.command("rate")
def batch_rate(school: Annotated[str, typer.Option(help="the school's ID")], token: TokenOption,
               academic_year: Annotated[str | None, typer.Option()] = None,
               class_id: Annotated[str | None, typer.Option("--class")] = None) -> None:
    """Rates every evaluated case at its class group's recommendation (as POST /v1/schools/{id}/rate-evaluated)."""
    _run_batch(token, lambda batches, who: batches.rate_school(who, school, academic_year=academic_year,
                                                               class_id=class_id))


audit_cli.register(cli)


def main() -> None:
    cli()
