"""The local launcher: the four agent servers and the decision server as processes on localhost.

Each process is started through the package's own entry point (``python -m marlops.cli serve agent …`` /
``serve decision …``), exactly what the containers run, on free ports; :func:`start_local` returns once every
server answers ``/v2/health/ready``. Use it as a context manager, or call ``stop()``::

    with start_local(model_uri="runs/train") as srv:
        httpx.post(f"{srv.decision_url}/v1/models/decision:predict", json=request)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from marlops.serving.model_source import agent_uri
from marlops.team import AGENTS


class LaunchError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def untrained_team(seed: int = 0) -> Path:
    """The untrained team built from models/*.yaml, exported once into the agent cache (as ``marlops
    decide`` without --models uses it); returns its folder (``<agent>/`` for each agent)."""
    from marlops.agents.runtime import AgentSet, export_cache_path

    agents = AgentSet.untrained(seed=seed)
    return export_cache_path(agents.versions)


def serve_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # one thread per process: five servers share the cores, a thread pool per process would fight them
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(k, "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    log: Path
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class LocalServing:
    """Running servers; ``decision_url`` and ``agent_urls`` are HTTP base URLs (V1/V2), the ``*_grpc``
    ones gRPC targets."""

    agents: dict[str, Server]
    decision: Server
    log_dir: Path
    stopped: bool = field(default=False)

    @property
    def decision_url(self) -> str:
        return self.decision.url

    @property
    def decision_grpc(self) -> str:
        return self.decision.grpc_url

    @property
    def agent_urls(self) -> dict[str, str]:
        return {a: s.url for a, s in self.agents.items()}

    @property
    def agent_grpc(self) -> dict[str, str]:
        return {a: s.grpc_url for a, s in self.agents.items()}

    def servers(self) -> list[Server]:
        return [*self.agents.values(), self.decision]

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        stop_servers(self.servers(), timeout_s)

    def __enter__(self) -> LocalServing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_servers(servers: Iterable[Server], timeout_s: float = 10.0) -> None:
    servers = list(servers)
    for s in servers:
        if s.process.poll() is None:
            s.process.send_signal(signal.SIGCONT)  # in case a test paused it
            s.process.terminate()
    deadline = time.monotonic() + timeout_s
    for s in servers:
        try:
            s.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            s.process.kill()
            s.process.wait(5)


def _cli() -> list[str]:
    return [sys.executable, "-m", "marlops.cli"]


def start_process(
    name: str,
    args: list[str],
    log_dir: Path,
    http_port: int,
    grpc_port: int,
    env: Mapping[str, str] | None,
    host: str = "127.0.0.1",
) -> Server:
    log = log_dir / f"{name}.log"
    fh = log.open("wb")
    proc = subprocess.Popen([*_cli(), *args], stdout=fh, stderr=subprocess.STDOUT, env=serve_env(env))
    fh.close()
    return Server(name, proc, http_port, grpc_port, log, host)


def wait_ready(servers: Iterable[Server], timeout_s: float = 180.0) -> None:
    """Poll ``/v2/health/ready`` until every server answers 200; a server that exits fails at once."""
    pending = list(servers)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while pending:
            for s in list(pending):
                if s.process.poll() is not None:
                    raise LaunchError(
                        f"{s.name} server exited with code {s.process.returncode}:\n{s.log_tail()}"
                    )
                try:
                    if client.get(f"{s.url}/v2/health/ready").status_code == 200:
                        pending.remove(s)
                except httpx.HTTPError:
                    pass
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(s.name for s in pending)
                raise LaunchError(f"not ready after {timeout_s:.0f} s: {names}\n{pending[0].log_tail()}")
            time.sleep(0.2)


def start_agent(
    agent: str, model_uri: str, log_dir: Path, env: Mapping[str, str] | None = None, host: str = "127.0.0.1"
) -> Server:
    hp, gp = free_port(host), free_port(host)
    args = ["serve", "agent", agent, "--model-uri", agent_uri(model_uri, agent),
            "--http-port", str(hp), "--grpc-port", str(gp)]  # fmt: skip
    return start_process(agent, args, log_dir, hp, gp, env, host)


def start_local(
    model_uri: str | os.PathLike[str] | None = None,
    feast_repo: str | os.PathLike[str] | None = None,
    request_log: str | os.PathLike[str] | None = None,
    collocate: Iterable[str] = (),
    timeouts_ms: Mapping[str, float] | None = None,
    agent_protocol: str = "grpc",
    log_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 180.0,
    seed: int = 0,
) -> LocalServing:
    """Start the four agent servers and the decision server; returns once all are ready.

    ``model_uri``: a run/team folder, or a URI with ``{agent}`` (``models:/marlops-{agent}@champion``);
    default: the untrained team of models/*.yaml. ``collocate``: agents the decision server runs in-process
    instead of calling their server. ``agent_protocol``: how the decision server calls the others (grpc,
    v2 = REST binary, v1 = REST JSON).
    """
    uri = str(model_uri) if model_uri is not None else str(untrained_team(seed))
    logs = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="marlops-serve-"))
    logs.mkdir(parents=True, exist_ok=True)
    collocated = set(collocate)
    unknown = collocated - set(AGENTS)
    if unknown:
        raise LaunchError(f"collocate: unknown agents {sorted(unknown)}")
    if agent_protocol not in ("grpc", "v2", "v1"):
        raise LaunchError(f"agent_protocol: {agent_protocol!r}; expected grpc, v2 or v1")
    agents: dict[str, Server] = {}
    started: list[Server] = []
    try:
        for a in AGENTS:
            agents[a] = start_agent(a, uri, logs, env)
            started.append(agents[a])
        wait_ready(started, ready_timeout_s)

        def where(a: str) -> str:
            if a in collocated:
                return agent_uri(uri, a)
            s = agents[a]
            return {"grpc": s.grpc_url, "v2": f"{s.url}/v2", "v1": f"{s.url}/v1"}[agent_protocol]

        hp, gp = free_port(), free_port()
        args = ["serve", "decision", "--http-port", str(hp), "--grpc-port", str(gp)]
        for a in AGENTS:
            args += ["--agent", f"{a}={where(a)}"]
        for a, ms in (timeouts_ms or {}).items():
            args += ["--agent-timeout-ms", f"{a}={ms:g}"]
        if feast_repo is not None:
            args += ["--feast-repo", str(feast_repo)]
        if request_log is not None:
            args += ["--request-log", str(request_log)]
        decision = start_process("decision", args, logs, hp, gp, env)
        started.append(decision)
        wait_ready([decision], ready_timeout_s)
    except BaseException:
        stop_servers(started)
        raise
    return LocalServing(agents, decision, logs)
