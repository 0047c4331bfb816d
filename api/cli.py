"""The `zizhu` command line: serve, token, schools import (more commands join as capabilities land)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from adapters.settings import Settings

cli = typer.Typer(help="zizhu: 家庭经济困难学生认定与精准资助 case system", no_args_is_help=True,
                  pretty_exceptions_enable=False)
schools_cli = typer.Typer(help="The school registry", no_args_is_help=True)
cli.add_typer(schools_cli, name="schools")


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


@cli.command()
def serve(host: Annotated[str, typer.Option()] = "127.0.0.1",
          port: Annotated[int, typer.Option()] = 8000) -> None:
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


def main() -> None:
    cli()
