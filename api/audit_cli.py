"""Audit commands of the `zizhu` CLI: `verify-log`, `seal` and `seals export` (registered by api/cli.py).

`zizhu verify-log` exits 0 when every case's stored events match the hash chain and the seals, and 1 printing one
line per damaged case (naming the case and its first damaged version, then what is wrong at each version). With
`--seals FILE` it also checks the store's seals against a copy exported earlier and kept outside the system.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

seals_cli = typer.Typer(help="Seals over the hash chains of the event log", no_args_is_help=True)


def _store() -> Any:
    from adapters.store import CaseStore
    from api.cli import _settings

    return CaseStore(_settings())


def verify_log(seals: Annotated[Path | None, typer.Option(
                   help="a JSON export of seals kept outside the system, checked against the store's",
                   exists=True, dir_okay=False, readable=True)] = None,
               as_json: Annotated[bool, typer.Option("--json", help="print the whole report as JSON")] = False,
               ) -> None:
    """Checks the event log is untampered: exit 0 clean, 1 with one line per damaged case."""
    from adapters.integrity import verify_store

    kept: list[dict[str, Any]] = []
    if seals is not None:
        try:
            loaded = json.loads(seals.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            typer.echo(f"refused: {seals} is not a JSON export of seals ({exc})", err=True)
            raise typer.Exit(2) from None
        kept = loaded if isinstance(loaded, list) else [loaded]
    store = _store()
    try:
        report = verify_store(store, external_seals=kept)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=1))
    elif report.clean:
        typer.echo(f"log verified: {report.events} events in {report.cases} cases up to position "
                   f"{report.position}, {report.seals} seals")
    else:
        for line in report.lines():
            typer.echo(line)
    if not report.clean:
        sys.exit(1)


def seal() -> None:
    """Seals the chain heads that moved since the last seal and prints the seal (JSON)."""
    from adapters.integrity import LogIntegrity
    from api.app import build_services
    from api.cli import _settings

    services = build_services(_settings())
    try:
        made = LogIntegrity(services.store.recorder).seal(services.clock.now().isoformat())
    finally:
        services.store.close()
        services.engine.dispose()
    typer.echo(json.dumps(made.as_dict() if made else None, ensure_ascii=False))
    if made is None:
        typer.echo("nothing new to seal", err=True)


@seals_cli.command("export")
def seals_export(out: Annotated[Path | None, typer.Option(help="write here instead of standard output")] = None,
                 ) -> None:
    """Prints every seal as JSON, to keep outside the system (`zizhu verify-log --seals FILE` checks it)."""
    from adapters.integrity import LogIntegrity

    store = _store()
    try:
        text = json.dumps([s.as_dict() for s in LogIntegrity(store.recorder).seals()], ensure_ascii=False,
                          indent=1)
    finally:
        store.close()
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")


def register(cli: typer.Typer) -> None:
    cli.command("verify-log")(verify_log)
    cli.command("seal")(seal)
    cli.add_typer(seals_cli, name="seals")
