"""``vigil`` command line: import, investigate, report, bench, serve, tokens."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from vigil import __version__
from vigil.errors import InputError, VigilError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Vigil: a self-hosted, autonomous on-call agent.")
console = Console()
err = Console(stderr=True, soft_wrap=True)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=err, transient=True)


def parse_time(text: str) -> datetime:
    t = text.strip()
    try:
        return datetime.fromtimestamp(float(t), UTC)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise VigilError(f"cannot read time {text!r}: use ISO 8601 (2023-01-29T08:43:04Z) or epoch seconds") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _app():
    from vigil.app import App
    return App()


@app.command("import")
def import_(paths: Annotated[list[Path], typer.Argument(help="Folders holding recordings (any supported layout).")],
            space: Annotated[str | None, typer.Option(help="Space to import into (default: from the dataset).")] = None,
            replace: Annotated[bool, typer.Option(help="Replace the space's telemetry if it exists.")] = False) -> None:
    """Import recorded incidents (Nezha, PetShop, RCD, RCAEval layouts) into the embedded store."""
    from vigil.app import space_name
    a = _app()
    recs = a.discover(paths)
    table = Table("space", "dataset", "alerts", "metrics", "logs", "spans", title="imported")
    with _progress() as p:
        task = p.add_task("importing", total=len(recs))
        for rec in recs:
            p.update(task, description=f"importing {rec.name}")
            target = space_name(space if space and len(recs) == 1 else (f"{space}-{rec.name}" if space else rec.name))
            res = a.import_recording(rec, target, replace=replace)
            for w in res.warnings:
                err.print(f"[yellow]warning:[/] {w}")
            table.add_row(res.space, res.dataset, str(res.cases), str(res.rows["metrics"]), str(res.rows["logs"]),
                          str(res.rows["spans"]))
            p.advance(task)
    console.print(table)
    a.close()


@app.command()
def spaces() -> None:
    """List spaces and what they hold."""
    a = _app()
    table = Table("space", "description", "metrics", "logs", "spans", "alerts")
    for s in a.services.spaces.list():
        c = a.services.telemetry.counts(s.id)
        table.add_row(s.id, s.description, str(c["metrics"]), str(c["logs"]), str(c["spans"]), str(c["alerts"]))
    console.print(table)
    a.close()


@app.command()
def alerts(space: Annotated[str, typer.Option(help="Space.")]) -> None:
    """List the alerts recorded in a space."""
    a = _app()
    table = Table("id", "time (UTC)", "title", "resource", "metric")
    for al in a.alerts(space):
        table.add_row(al.id, f"{al.at:%Y-%m-%d %H:%M:%S}", al.title, al.resource or "", al.metric or "")
    console.print(table)
    a.close()


@app.command()
def investigate(space: Annotated[str, typer.Option(help="Space to investigate in.")],
                at: Annotated[str | None, typer.Option(help="Incident time (ISO 8601 or epoch seconds).")] = None,
                alert: Annotated[str | None, typer.Option(help="Investigate this recorded alert.")] = None,
                latest: Annotated[bool, typer.Option(help="Investigate the latest alert.")] = False,
                report_format: Annotated[str, typer.Option("--format", help="Report format: html, md, json.")] = "html",
                out: Annotated[Path | None, typer.Option(help="Write the report here.")] = None) -> None:
    """Investigate a window: rank root-cause hypotheses with evidence and write a report."""
    from vigil.report import FORMATS
    if report_format not in FORMATS:
        raise VigilError(f"unknown format {report_format!r}: choose from {', '.join(FORMATS)}")
    a = _app()
    with console.status("investigating..."):
        inv, analysis = a.investigate(space, at=parse_time(at) if at else None, alert_id=alert, latest=latest)
    _print_result(inv, analysis.hypotheses)
    path = a.report(inv.id, report_format, out)
    console.print(f"report: {path}")
    a.close()


def _print_result(inv, hyps) -> None:
    console.print(f"[bold]{inv.status.value}[/]: {inv.summary}")
    table = Table("#", "resource", "fault kind", "confidence", "why", title=f"investigation {inv.id}")
    for h in hyps[:5]:
        table.add_row(str(h.rank), h.resource, h.fault_kind.value, f"{h.confidence:.0%}", h.why)
    console.print(table)
    if hyps:
        console.print(f"root cause: [bold red]{hyps[0].resource}[/] ({hyps[0].fault_kind.value}); "
                      f"path {' -> '.join(hyps[0].path)}")


@app.command()
def report(investigation: Annotated[str, typer.Argument(help="Investigation id.")],
           report_format: Annotated[str, typer.Option("--format", help="html, md or json.")] = "md",
           out: Annotated[Path | None, typer.Option(help="Write here instead of $VIGIL_HOME/reports.")] = None) -> None:
    """Write the report of an investigation (Markdown, JSON or self-contained HTML)."""
    from vigil.report import FORMATS
    if report_format not in FORMATS:
        raise VigilError(f"unknown format {report_format!r}: choose from {', '.join(FORMATS)}")
    a = _app()
    console.print(str(a.report(investigation, report_format, out)))
    a.close()


@app.command()
def bench(paths: Annotated[list[Path], typer.Argument(help="Folders with labeled recordings.")],
          json_out: Annotated[Path | None, typer.Option("--json", help="Write the results here.")] = None,
          alert_offset: Annotated[float, typer.Option(
              "--alert-offset", help="Move every alert by this many seconds (late: positive), to see how "
                                     "the answers hold up when the alert time is off the onset.")] = 0.0,
          peers: Annotated[str, typer.Option(
              "--peers", help="Also run these published methods by their own code (rcaeval), comma-separated: "
                              "baro, nsigma. Needs the peers extra: pip install -e '.[peers]'.")] = "",
          ablations: Annotated[str, typer.Option(
              "--ablations", help="Also run Vigil without some signals, comma-separated: metrics-only, "
                                  "no-topology, no-traces, no-logs, or all.")] = "",
          reference_gap: Annotated[float, typer.Option(
              "--reference-gap", help="Days: turn the history before each alert into a fault-free run recorded "
                                      "that long before (nothing precedes the alert any more).")] = 0.0,
          horizon: Annotated[float, typer.Option(
              "--horizon", help="Seconds: the recording ends this long after each alert.")] = 0.0,
          merged: Annotated[bool, typer.Option(
              "--merge", help="PATHS are --json files of runs over disjoint recordings (a bench split across "
                              "processes): score them as one run.")] = False,
          ) -> None:
    """Benchmark the engine (and, with --peers, published methods) on every labeled case found."""
    from vigil.bench import run_bench
    from vigil.bench.harness import ABLATIONS, markdown, merge
    from vigil.bench.peers import load_peers
    peer_names = [n.strip() for n in peers.split(",") if n.strip()]
    ablation_names = [n.strip() for n in ablations.split(",") if n.strip()]
    if ablation_names == ["all"]:
        ablation_names = list(ABLATIONS)
    for a in ablation_names:
        if a not in ABLATIONS:
            raise InputError(f"unknown ablation {a!r}: choose from {', '.join(ABLATIONS)} or all")
    if reference_gap < 0 or horizon < 0:
        raise InputError("--reference-gap and --horizon must be positive")
    if merged:
        rep = merge(paths)
    else:
        load_peers(peer_names)            # an unknown name or a missing rcaeval: one line, before any work
        with _progress() as p:
            task = p.add_task("bench", total=None)

            def progress(rec, i, n):
                p.update(task, total=n, completed=i, description=f"bench {rec.name}")

            rep = run_bench(paths, progress=progress, alert_offset_s=alert_offset, peers=peer_names,
                            ablations=ablation_names, reference_gap_s=reference_gap * 86400.0, horizon_s=horizon)
    for w in sorted(set(rep.warnings)):
        err.print(f"[yellow]warning:[/] {w}")
    print(markdown(rep))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rep.contract(), indent=1, default=str))
        console.print(f"results: {json_out}")


token_app = typer.Typer(no_args_is_help=True, help="API tokens: each is scoped to one space with a role.")
space_app = typer.Typer(no_args_is_help=True, help="Create Agent Spaces and configure their sources.")
app.add_typer(token_app, name="token")
app.add_typer(space_app, name="space")


@space_app.command("create")
def space_create(name: Annotated[str, typer.Argument(help="Space id: a-z, 0-9, '_', '.', '-'.")],
                 description: Annotated[str, typer.Option(help="What the space covers.")] = "") -> None:
    """Create an (empty) Agent Space, e.g. for telemetry that will arrive over OTLP."""
    a = _app()
    space = a.create_space(name, description)
    console.print(f"space {space.id} created")
    a.close()


@space_app.command("apply")
def space_apply(file: Annotated[Path, typer.Argument(help="YAML: space, description, sources [{name, kind, config}].")],
                check: Annotated[bool, typer.Option("--check/--no-check",
                                                    help="Reach every source's backend before storing.")] = True,
                prune: Annotated[bool, typer.Option(help="Remove the space's sources the file does not list.")]
                = False) -> None:
    """Create or update a space and its sources from a YAML file: all validated (and checked) first;
    nothing is stored unless every source passes."""
    from vigil.sources import spacefile
    spec = spacefile.load(file)
    a = _app()
    try:
        res = a.services.sources.apply(spec, "cli", check=check, prune=prune)
    finally:
        a.close()
    console.print(f"space {res.space} {'created' if res.created else 'updated'}; "
                  f"{len(res.sources)} source(s) stored" + (f", {len(res.pruned)} removed" if res.pruned else ""),
                  highlight=False)
    for src in res.sources:
        console.print(f"  {src['name']} ({src['kind']}): {res.checks.get(src['name'], 'not checked')}",
                      highlight=False, markup=False)


@space_app.command("sources")
def space_sources(space: Annotated[str, typer.Argument(help="Space.")]) -> None:
    """List a space's sources with their configuration (secrets are references) and last check."""
    a = _app()
    try:
        rows = a.services.sources.list(space)
    finally:
        a.close()
    table = Table("name", "kind", "config", "last check (UTC)", "ok", "message")
    for r in rows:
        last = r["last_check"]
        table.add_row(r["name"], r["kind"], json.dumps(r["config"], sort_keys=True),
                      f"{last['at']:%Y-%m-%d %H:%M:%S}" if last else "never",
                      ("yes" if last["ok"] else "NO") if last else "", last["message"] if last else "")
    console.print(table)


@token_app.command("create")
def token_create(space: Annotated[str, typer.Option(help="The space the token is for.")],
                 role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
                 name: Annotated[str, typer.Option(help="A name to recognise it by.")] = "") -> None:
    """Create a token and print it once (only a hash of it is kept)."""
    from vigil.model import Role
    if role not in [r.value for r in Role]:
        raise VigilError(f"unknown role {role!r}: choose viewer, operator or admin")
    a = _app()
    secret, tok = a.create_token(space, Role(role), name)
    err.print(f"token {tok.id} for space {tok.space_id} with role {tok.role.value} (shown once; store it now):")
    print(secret)
    a.close()


@token_app.command("list")
def token_list(space: Annotated[str, typer.Option(help="Space.")]) -> None:
    """List a space's tokens (never the secrets)."""
    a = _app()
    table = Table("id", "role", "name", "created (UTC)", "revoked")
    for t in a.services.tokens.list(space):
        table.add_row(t.id, t.role.value, t.name, f"{t.created_at:%Y-%m-%d %H:%M:%S}",
                      f"{t.revoked_at:%Y-%m-%d %H:%M:%S}" if t.revoked_at else "")
    console.print(table)
    a.close()


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="Token id (tok_...).")]) -> None:
    """Revoke a token (a running server stops accepting it within seconds)."""
    a = _app()
    tok = a.services.tokens.revoke(token_id, "cli")
    console.print(f"token {tok.id} revoked")
    a.close()


@app.command()
def serve(host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port.")] = 8080,
          workers: Annotated[int | None, typer.Option(help="Investigations run at once (default 2).")] = None,
          access_log: Annotated[bool, typer.Option(help="Log every request.")] = False) -> None:
    """Run the live server: REST API, live journal (SSE), OTLP ingestion, alert webhooks, and the
    workers that run queued investigations."""
    import uvicorn

    from vigil.api import create_app
    from vigil.app import App
    from vigil.server.runtime import Runtime
    from vigil.server.settings import ServerSettings

    if not 0 < port < 65536:
        raise VigilError(f"port {port} is out of range")
    settings = ServerSettings.from_env(host=host, port=port, workers=workers)
    a = App()
    _scaleout_check(a, settings)
    _ = a.services.spaces.list(), a.services.telemetry.open()     # a store in use is a clear error now
    rt = Runtime(a, settings)
    where = "investigations on `vigil worker`s" if settings.scaleout else f"{settings.workers} workers"
    err.print(f"vigil {__version__} serving on http://{host}:{port} (state {a.state_location()}, "
              f"telemetry {_telemetry_where(a)}, {where})", highlight=False)
    uvicorn.run(create_app(rt), host=host, port=port, log_level="warning", access_log=access_log,
                timeout_graceful_shutdown=10)


def _telemetry_where(a) -> str:
    if a.settings.telemetry_url:
        from sqlalchemy.engine import make_url
        return make_url(a.settings.telemetry_url).render_as_string()    # the password hidden
    return str(a.settings.telemetry_path)


def _scaleout_check(a, settings) -> None:
    """Scale-out mode shares state and telemetry between processes: they must be in PostgreSQL."""
    if settings.scaleout and not a.settings.database_url.startswith("postgresql"):
        raise VigilError("VIGIL_BROKER_URL is set (scale-out mode): keep state in PostgreSQL too, "
                         "VIGIL_DATABASE_URL=postgresql+psycopg://...")
    a.services.integrations.check_secret_key()      # a missing or wrong key is said now, not at the first signed webhook


@app.command()
def worker(concurrency: Annotated[int | None, typer.Option(help="Investigations this process runs at once "
                                                                "(default VIGIL_WORKERS, 2).")] = None,
           loglevel: Annotated[str, typer.Option(help="Celery's log level.")] = "warning") -> None:
    """Run investigations from the broker (scale-out mode: VIGIL_BROKER_URL, state and telemetry in
    PostgreSQL). Start any number of these next to any number of `vigil serve` replicas."""
    from vigil.app import App
    from vigil.server.broker import run_worker
    from vigil.server.runtime import Runtime
    from vigil.server.settings import ServerSettings

    settings = ServerSettings.from_env(workers=concurrency)
    if not settings.scaleout:
        raise VigilError("`vigil worker` takes investigations from a broker: set VIGIL_BROKER_URL "
                         "(amqp://... or redis://...); without one, `vigil serve` runs them itself")
    if loglevel.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise VigilError(f"unknown log level {loglevel!r}")
    a = App()
    _scaleout_check(a, settings)
    _ = a.services.spaces.list(), a.services.telemetry.open()
    rt = Runtime(a, settings)
    try:
        rt.dispatch.ping(timeout=5.0)
    except Exception as exc:
        rt.stop()
        raise VigilError(f"cannot reach the broker at {_broker_where(settings.broker_url)} "
                         f"({type(exc).__name__})") from None
    err.print(f"vigil {__version__} worker: {settings.workers} at once, broker "
              f"{_broker_where(settings.broker_url)}, state {a.state_location()}",
              highlight=False)
    try:
        run_worker(rt, settings.workers, loglevel.upper())
    finally:
        rt.stop()


def _broker_where(url: str) -> str:
    from urllib.parse import urlsplit
    u = urlsplit(url)
    return f"{u.scheme}://{u.hostname}:{u.port or ''}{u.path}"       # no credentials


@app.command("mcp")
def mcp_(transport: Annotated[str, typer.Option(help="stdio (token from VIGIL_TOKEN) or http (a bearer token "
                                                     "per request).")] = "stdio",
         host: Annotated[str, typer.Option(help="http: address to listen on.")] = "127.0.0.1",
         port: Annotated[int, typer.Option(help="http: port.")] = 8090,
         workers: Annotated[int | None, typer.Option(help="http: investigations run at once.")] = None) -> None:
    """Serve Vigil's tools to an agent over the Model Context Protocol, scoped to the token's space
    (`vigil serve` also serves them at /mcp)."""
    import os

    from vigil.mcp.run import serve_http, serve_stdio
    if transport == "stdio":
        serve_stdio(os.environ.get("VIGIL_TOKEN"))
    elif transport == "http":
        serve_http(host, port, workers)
    else:
        raise VigilError(f"unknown transport {transport!r}: choose stdio or http")


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


def main() -> None:
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    try:
        code = app(standalone_mode=False)
    except VigilError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except ValidationError as exc:
        first = exc.errors()[0]
        err.print(f"[red]error:[/] invalid {'.'.join(map(str, first['loc']))}: {first['msg']}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        _command_line_problem(exc)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)


def _command_line_problem(exc: Exception) -> None:
    """Exit the way a command-line problem should (typer ships its own copy of click, so its exceptions
    are recognised by name): a bad option or argument is one line, plain ``vigil`` shows the help,
    Ctrl-C at a prompt interrupts. Anything else returns, to be raised."""
    kinds = {c.__name__ for c in type(exc).__mro__}
    ctx = getattr(exc, "ctx", None)
    if "NoArgsIsHelpError" in kinds:
        console.print(ctx.get_help() if ctx else str(exc), highlight=False)
        sys.exit(0)
    if "UsageError" in kinds:
        hint = f" (see '{ctx.command_path} --help')" if ctx else ""
        err.print(f"[red]error:[/] {exc.format_message()}{hint}", highlight=False)
        sys.exit(2)
    if "Abort" in kinds:
        err.print("interrupted")
        sys.exit(130)
