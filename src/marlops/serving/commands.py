"""``marlops serve …``: the serving entry points (what the containers run, and the local launcher), and
``marlops decide``, a tick replay through the decision engine here or through a decision server.

Light to import (the CLI imports it at start-up): KServe, ONNX Runtime and the agents are imported by
the commands themselves.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from marlops.agents.decision import RiskLimits
from marlops.console import console, print_error, tick_progress

serve_app = typer.Typer(
    help="Serve the agents and the decision transformer with KServe (V1, V2 REST, gRPC). Without a "
    "subcommand: start all five servers on localhost, wait for readiness, print the URLs, stop on Ctrl-C.",
    invoke_without_command=True,
)

HttpPort = Annotated[
    int,
    typer.Option("--http-port", "--http_port", min=1, max=65535, help="REST port (V1, V2, health, metrics)."),
]
GrpcPort = Annotated[int, typer.Option("--grpc-port", min=0, max=65535, help="gRPC port (V2); 0: no gRPC.")]
MaxBody = Annotated[
    int,
    typer.Option(
        "--max-body-bytes", min=1024, help="Larger requests are refused (400 / RESOURCE_EXHAUSTED)."
    ),
]
FeastRepo = Annotated[
    Path | None,
    typer.Option(
        "--feast-repo",
        help="Feast repo folder: requests naming only an instrument get its latest "
        "matrices from the online store.",
    ),
]
RequestLogDir = Annotated[
    Path | None,
    typer.Option(
        "--request-log",
        help="Append every decision to DIR/requests-YYYYMMDD.jsonl (default: "
        "$MARLOPS_REQUEST_LOG; unset: no log).",
    ),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise _fail(f"{what}: expected NAME=VALUE, got {item!r}")
        out[key] = value
    return out


@serve_app.callback()
def serve_local(
    ctx: typer.Context,
    model_uri: Annotated[
        str | None,
        typer.Option(
            "--model-uri",
            help="A training run or team folder, or a URI with {agent} "
            "(models:/marlops-{agent}@champion). Default: the untrained agents of models/*.yaml.",
        ),
    ] = None,
    feast_repo: FeastRepo = None,
    request_log: RequestLogDir = None,
    collocate: Annotated[
        list[str] | None,
        typer.Option(
            "--collocate",
            help="Run this agent inside the decision server instead of calling its "
            "server (repeatable; saves a network hop).",
        ),
    ] = None,
    agent_protocol: Annotated[
        str,
        typer.Option("--agent-protocol", help="How the decision server calls the agents: grpc | v2 | v1."),
    ] = "grpc",
    log_dir: Annotated[
        Path | None, typer.Option("--log-dir", help="Server logs (default: a temp folder).")
    ] = None,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from marlops.serving.launch import LaunchError, start_local

    typer.echo("starting the agent servers and the decision server …")
    try:
        srv = start_local(model_uri, feast_repo, request_log, collocate or (), None, agent_protocol, log_dir)
    except (LaunchError, OSError, ValueError) as e:
        raise _fail(str(e)) from None
    with srv:
        typer.echo("ready:")
        for a, s in srv.agents.items():
            typer.echo(f"  {a:<9} {s.url}/v1/models/{a}:predict   {s.url}/v2/models/{a}/infer   {s.grpc_url}")
        typer.echo("  (the risk server also serves the models risk-encode and risk-q: docs/serving.md)")
        typer.echo(f"  decision  {srv.decision_url}/v1/models/decision:predict   {srv.decision_grpc}")
        typer.echo(f"  logs      {srv.log_dir}")
        typer.echo("Ctrl-C stops them.")
        # Ctrl-C and SIGTERM set a flag (no KeyboardInterrupt in the middle of polling a server process);
        # a second Ctrl-C while the servers stop interrupts the stop itself
        stop: list[int] = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        while not stop:
            dead = [s.name for s in srv.servers() if s.process.poll() is not None]
            if dead:
                raise _fail(f"server(s) exited: {', '.join(dead)}; logs in {srv.log_dir}", 1)
            time.sleep(0.5)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    typer.echo("stopped")


@serve_app.command("agent")
def serve_agent(
    name: Annotated[str, typer.Argument(help="regime | structure | tactical | risk")],
    model_uri: Annotated[
        str,
        typer.Option(
            "--model-uri",
            help="models:/marlops-NAME@champion, models:/marlops-NAME/3, or a folder "
            "(agent, team or training run).",
        ),
    ],
    http_port: HttpPort = 8080,
    grpc_port: GrpcPort = 8081,
    max_body_bytes: MaxBody = 4 * 1024 * 1024,
    alias: Annotated[
        list[str] | None,
        typer.Option(
            "--alias",
            help="Also serve the model under this name (the InferenceGraph calls an "
            "agent by its InferenceService name).",
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            envvar="MARLOPS_AGENT_PRECISION",
            help="fp32 | int8: the INT8 graphs `marlops agents quantize` accepted (an error without them).",
        ),
    ] = "fp32",
) -> None:
    """One KServe ModelServer hosting one agent (a model per entry: the risk agent is risk, risk-encode
    and risk-q); ready once its graphs are loaded."""
    from marlops.serving.server import isolate_argv

    isolate_argv()
    from marlops.precision import PRECISION_ENV, Int8Error
    from marlops.registry.folders import RegistryError
    from marlops.serving.agent_model import AgentPredictor
    from marlops.serving.model_source import ModelSourceError
    from marlops.serving.server import serve
    from marlops.team import AGENTS

    if name not in AGENTS:
        raise _fail(f"NAME: {name!r}; expected one of {', '.join(AGENTS)}")
    if precision not in ("fp32", "int8"):
        raise _fail(f"--precision: {precision!r}; expected fp32 or int8")
    model = AgentPredictor(name, model_uri, precision=precision)
    try:
        model.load()
    except Int8Error as e:
        raise _fail(f"--precision int8 (${PRECISION_ENV}): {e}") from None
    except (ModelSourceError, RegistryError, OSError, ValueError) as e:
        raise _fail(f"--model-uri: {e}") from None
    models = [model, *model.siblings()]  # one model per entry (risk: risk, risk-encode, risk-q), one runner
    served = ", ".join(m.name for m in models)
    where = f"http {http_port}, grpc {grpc_port}"
    typer.echo(f"{name} {model.version} ({precision}) from {model_uri} as {served}: {where}")
    serve(models, http_port, grpc_port, max_body_bytes, {name: alias or []})


@serve_app.command("decision")
def serve_decision(
    agent: Annotated[
        list[str],
        typer.Option(
            "--agent",
            help="NAME=WHERE for each agent: grpc://HOST:PORT, http://HOST:PORT (V2), "
            "http://HOST:PORT/v1, or a model URI to run it in-process.",
        ),
    ],
    http_port: HttpPort = 8080,
    grpc_port: GrpcPort = 8081,
    feast_repo: FeastRepo = None,
    request_log: RequestLogDir = None,
    agent_timeout_ms: Annotated[
        list[str] | None,
        typer.Option(
            "--agent-timeout-ms",
            help="NAME=MS: deadline of that agent's calls (default regime and "
            "structure 100, tactical and risk 50); a late agent fails the decision closed.",
        ),
    ] = None,
    max_body_bytes: MaxBody = 1024 * 1024,
    alias: Annotated[
        list[str] | None, typer.Option("--alias", help="Also serve the model under this name.")
    ] = None,
    model_name: Annotated[
        str | None, typer.Option("--model_name", hidden=True, help="Added by KServe: the InferenceService.")
    ] = None,
    predictor_host: Annotated[
        str | None,
        typer.Option("--predictor_host", hidden=True, help="Added by KServe (NAME=predictor)."),
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", hidden=True, help="Added by KServe.")] = None,
) -> None:
    """The aggregation transformer: a KServe ModelServer named `decision`.

    As an InferenceService transformer, KServe appends --model_name, --predictor_host and --http_port:
    the model also answers under --model_name, and `--agent NAME=predictor` means that predictor host."""
    from marlops.serving.server import isolate_argv

    isolate_argv()
    from marlops.registry.folders import RegistryError
    from marlops.serving.decision_model import DecisionModel
    from marlops.serving.model_source import ModelSourceError
    from marlops.serving.server import serve
    from marlops.team import AGENTS

    agents = _pairs(agent, "--agent")
    unknown = sorted(set(agents) - set(AGENTS))
    if unknown:
        raise _fail(f"--agent: unknown agent {unknown[0]!r}; expected {', '.join(AGENTS)}")
    for name, where in agents.items():
        if where == "predictor":
            if not predictor_host:
                raise _fail(f"--agent {name}=predictor needs --predictor_host (KServe adds it)")
            agents[name] = f"http://{predictor_host}"  # the predictor Service: KServe's HTTP port, V2
    try:
        timeouts = {k: float(v) for k, v in _pairs(agent_timeout_ms, "--agent-timeout-ms").items()}
    except ValueError:
        raise _fail("--agent-timeout-ms: expected NAME=MILLISECONDS") from None
    if any(not 0 < v < 60_000 for v in timeouts.values()):
        raise _fail("--agent-timeout-ms: between 0 and 60000 ms")
    try:
        model = DecisionModel(agents, timeouts, feast_repo, request_log)
        model.load()
    except (ModelSourceError, RegistryError, OSError, ValueError) as e:
        raise _fail(str(e)) from None
    typer.echo(f"decision: http {http_port}, grpc {grpc_port}; agents {agents}")
    names = [*(alias or []), *([model_name] if model_name and model_name != model.name else [])]
    serve([model], http_port, grpc_port, max_body_bytes, {model.name: names})


def decide_cmd(
    replay: Annotated[
        Path, typer.Option(exists=True, help="Tick file (CSV/Parquet) or a dataset folder with ticks.")
    ],
    models: Annotated[
        Path | None,
        typer.Option(help="Folder of saved agents; default: untrained agents built from models/*.yaml."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the untrained agents' weights.")] = 0,
    audit: Annotated[Path | None, typer.Option(help="Append one JSON line per decision here.")] = None,
    columns: Annotated[
        str, typer.Option(help="Column mapping of a tick file, e.g. 'ts=time,price=px'.")
    ] = "",
    tz: Annotated[str, typer.Option(help="Time zone of a tick file's timestamps without an offset.")] = "UTC",
    max_position_equity: Annotated[
        float, typer.Option(help="Hard limit: |position| × price / equity, either side.")
    ] = RiskLimits.max_position_equity,
    max_leverage: Annotated[
        float, typer.Option(help="Hard limit: gross notional / equity.")
    ] = RiskLimits.max_leverage,
    max_position: Annotated[
        float | None, typer.Option(help="Optional hard cap in instrument units, either side (default: none).")
    ] = None,
    kill_switch: Annotated[bool, typer.Option(help="Flatten and trade nothing.")] = False,
    url: Annotated[
        str | None,
        typer.Option(
            help="Send every decision to this decision server (`marlops serve`) over HTTP instead "
            "of running the engine here; the server's agents and limits decide."
        ),
    ] = None,
    instrument: Annotated[
        str | None, typer.Option(help="With --url: the instrument id sent (default: a fresh replay-<hex>).")
    ] = None,
) -> None:
    """Replay ticks through the market feed and the decision engine (all four agents on their clocks)
    and print a decision summary: actions, overrides, fail-closed reasons, PnL and latency."""
    from marlops.market.data_files import DataFileError
    from marlops.market.dataset import replay_ticks_of

    try:
        ticks = replay_ticks_of(replay, columns, tz)
        limits = RiskLimits(
            max_position_equity=max_position_equity,
            max_leverage=max_leverage,
            max_position=max_position,
            kill_switch=kill_switch,
        )
    except (DataFileError, ValueError, FileNotFoundError) as err:
        print_error(err, "error:")
        raise typer.Exit(2) from err
    if url:
        _decide_over_http(ticks, url, instrument, audit, replay)
        return
    from marlops.agents.audit import AuditLog
    from marlops.agents.replay import replay_ticks
    from marlops.agents.runtime import AgentSet  # torch: only for the commands that run agents

    agents = AgentSet.load(models) if models else AgentSet.untrained(seed=seed)
    log = AuditLog(audit) if audit else None
    progress, advance = tick_progress(len(ticks), "replaying ticks through the engine")
    try:
        with progress:
            res = replay_ticks(ticks, agents, limits, audit=log, progress=advance)
    finally:
        if log:
            log.close()
    _print_decisions(f"decisions over {replay}", agents.versions, res.summary)
    if audit:
        console.print(f"audit log: {audit}")


def _print_decisions(title: str, versions: dict[str, str], summary: dict[str, object]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in {"models": ", ".join(f"{a}={v}" for a, v in versions.items()), **summary}.items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else str(v))
    console.print(table)


def _decide_over_http(
    ticks: object, url: str, instrument: str | None, audit: Path | None, replay: Path
) -> None:
    import httpx

    from marlops.serving.http_replay import DecisionServerError, replay_http

    progress, advance = tick_progress(len(ticks), f"replaying ticks through {url}")  # type: ignore[arg-type]
    try:
        with progress:
            res = replay_http(ticks, url, instrument, progress=advance, audit=audit)  # type: ignore[arg-type]
    except (DecisionServerError, httpx.HTTPError) as err:
        print_error(err, "error:")
        raise typer.Exit(1) from err
    versions = res.decisions[-1].model_versions if res.decisions else {}
    _print_decisions(f"decisions over {replay} via {url} ({res.instrument})", versions, res.summary)
    if audit:
        console.print(f"decisions as returned: {audit}")
