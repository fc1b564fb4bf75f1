"""Decision latency through the KServe servers on loopback, against a naive client in the same run.

    python -m benchmarks serving                                  # default: ~3 min
    python -m benchmarks.serving --load-clients 32 --load-seconds 60

One run starts the four agent servers and three decision servers (`marlops serve agent|decision`, real
processes on free ports) on the untrained agents of models/*.yaml, and replays one synthetic market's
decision stream (ticks, 5-minute and 30-minute closes, in order) through each path:

- ``transformer, gRPC to agents``: the decision server calls the agent servers over gRPC, on their
  clocks (context caching), tactical and risk at once (the risk agent scores every possible proposal);
- ``transformer, risk collocated``: the same, with the risk agent's graphs inside the decision server
  (every tick's only agent call stays in-process);
- ``transformer, all collocated``: all four agents inside the decision server;
- ``naive baseline``: the client calls every agent on every request, sequentially, with V1 JSON
  (regime → structure → tactical → risk encode → risk Q), no caching. Its timing leaves out the
  decision logic, so it is a lower bound on a naive transformer;
- ``floor``: the same client and bodies against a KServe model that returns its input: what one HTTP
  round trip through KServe costs here, whatever the model does (the "hop");
- ``in-process``: the decision server's own code (``DecisionService`` over collocated agents) called in
  this process, no HTTP: what the servers cost without any hop.

Goals (issue 18), checked at the end: a 30-minute decision's HTTP p99 within the in-process p99 plus
3 hop p99s with the agents on their own servers, plus 1 hop p99 with them collocated.

Latency is the client's wall time per request over HTTP (V1 JSON to the decision server; the agent calls
behind it are inside that time), and over gRPC for the best path. The first days warm the context up and
are not measured. Then ``--load-clients`` concurrent clients (one instrument each) send the same stream
for ``--load-seconds`` to the gRPC path and to the collocated one: decisions/s, errors, p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from marlops.market.synthetic import SyntheticMarketConfig, generate_market
from marlops.serving.http_replay import decision_requests
from marlops.serving.launch import (
    LocalServing,
    Server,
    free_port,
    start_local,
    start_process,
    stop_servers,
    untrained_team,
    wait_ready,
)

GOALS_MS = {"tick": 2.0, "5m": 4.0, "30m": 10.0}  # p99 over HTTP (the goals)
AGENTS = ("regime", "structure", "tactical", "risk")
CLOCKS = ("tick", "5m", "30m")


def stream(days: float, warm_days: float, seed: int = 0) -> tuple[list[dict], int]:
    """A market's decision requests (instrument ``X``) and the index where measuring starts."""
    ticks = generate_market(days, seed=seed, config=SyntheticMarketConfig(ticks_per_bar=2.0)).ticks
    reqs = list(decision_requests(ticks, "X"))
    t_from = int(ticks["ts"].iloc[0]) + int(warm_days * 86_400e9)
    start = next(i for i, r in enumerate(reqs) if r["ts"] >= t_from)
    return reqs, start


def encode(reqs: list[dict], instrument: str) -> list[bytes]:
    return [orjson.dumps({**r, "instrument": instrument}) for r in reqs]


def run_http(url: str, bodies: list[bytes], clocks: list[str], start: int) -> dict[str, np.ndarray]:
    """One client, one request at a time; ms per measured request, by clock."""
    out: dict[str, list[float]] = {c: [] for c in CLOCKS}
    with httpx.Client(timeout=30.0, headers={"content-type": "application/json"}) as c:
        endpoint = f"{url}/v1/models/decision:predict"
        for i, body in enumerate(bodies):
            t = time.perf_counter()
            r = c.post(endpoint, content=body)
            dt = time.perf_counter() - t
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
            if i >= start:
                out[clocks[i]].append(dt * 1e3)
    return {k: np.asarray(v) for k, v in out.items()}


def run_grpc(target: str, bodies: list[bytes], clocks: list[str], start: int) -> dict[str, np.ndarray]:
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    async def go() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {c: [] for c in CLOCKS}
        async with InferenceGRPCClient(target, retries=0, timeout=30) as g:
            for i, body in enumerate(bodies):
                inp = InferInput("request", [1], "BYTES")
                inp.set_data_from_numpy(np.array([body], dtype=np.object_))
                t = time.perf_counter()
                await g.infer(InferRequest("decision", [inp]))
                if i >= start:
                    out[clocks[i]].append((time.perf_counter() - t) * 1e3)
        return out

    return {k: np.asarray(v) for k, v in asyncio.run(go()).items()}


def run_naive(
    agent_urls: dict[str, str], reqs: list[dict], start: int, every: int = 1
) -> dict[str, np.ndarray]:
    """Every agent on every request, one after another, V1 JSON; the latest matrices held client-side.
    Its work is the same on every clock, so only every ``every``-th measured request is timed."""
    out: dict[str, list[float]] = {c: [] for c in CLOCKS}
    mats: dict[str, Any] = {}
    with httpx.Client(timeout=30.0, headers={"content-type": "application/json"}) as c:

        def call(agent: str, inst: dict, model: str | None = None) -> dict:
            r = c.post(
                f"{agent_urls[agent]}/v1/models/{model or agent}:predict",
                content=orjson.dumps({"instances": [inst]}),
            )
            if r.status_code != 200:
                raise RuntimeError(f"{agent}: HTTP {r.status_code}: {r.text[:300]}")
            return orjson.loads(r.content)["predictions"][0]

        for i, req in enumerate(reqs):
            mats.update(req.get("matrices") or {})
            if i < start or (i - start) % every:
                continue
            t = time.perf_counter()
            reg = call("regime", {"x": mats["regime"]})
            st = call("structure", {"x": mats["structure"], "msgs": [reg["message"]], "mask": [True]})
            tac = call(
                "tactical",
                {"x": mats["tactical"], "msgs": [reg["message"], st["message"]], "mask": [True, True]},
            )
            enc = call(
                "risk",
                {"tactical": mats["tactical"], "structure": mats["structure"], "regime": mats["regime"]},
                "risk-encode",
            )
            proposal = [0.0] * 7
            proposal[int(np.argmax(tac["probs"]))] = 1.0
            call("risk", {"cache": enc["cache"], "portfolio": [0.0] * 8, "proposal": proposal}, "risk-q")
            out[req["clock"]].append((time.perf_counter() - t) * 1e3)
    return {k: np.asarray(v) for k, v in out.items()}


async def _load(url: str, streams: list[list[bytes]], seconds: float) -> tuple[int, int, int, list[float]]:
    """(decisions, non-200 answers, decisions failed closed by a late or unreachable agent, latencies)."""
    lat: list[float] = []
    errors = agent_faults = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=len(streams), max_keepalive_connections=len(streams))
    async with httpx.AsyncClient(
        timeout=30.0, limits=limits, headers={"content-type": "application/json"}
    ) as c:

        async def client(bodies: list[bytes]) -> None:
            nonlocal errors, agent_faults
            i = 0
            while time.perf_counter() < deadline and i < len(bodies):
                t = time.perf_counter()
                try:
                    r = await c.post(f"{url}/v1/models/decision:predict", content=bodies[i])
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                lat.append((time.perf_counter() - t) * 1e3)
                if ok and any(
                    x.endswith((":timeout", ":unavailable")) for x in orjson.loads(r.content)["reasons"]
                ):
                    agent_faults += 1
                errors += not ok
                i += 1

        await asyncio.gather(*(client(b) for b in streams))
    return len(lat), errors, agent_faults, lat


ECHO_SERVER = """
import sys
from marlops.serving.server import isolate_argv, serve
port = int(sys.argv[1])
isolate_argv()
from kserve import Model

class Echo(Model):
    def __init__(self):
        super().__init__("echo")
        self.ready = True

    async def predict(self, payload, headers=None, response_headers=None):
        return payload

serve([Echo()], port, 0)
"""


def run_echo(url: str, bodies: list[bytes], clocks: list[str], start: int) -> dict[str, np.ndarray]:
    """The floor: the same client and request bodies against a KServe model that returns its input."""
    out: dict[str, list[float]] = {c: [] for c in CLOCKS}
    with httpx.Client(timeout=30.0, headers={"content-type": "application/json"}) as c:
        for i in range(start, len(bodies)):
            t = time.perf_counter()
            r = c.post(f"{url}/v1/models/echo:predict", content=bodies[i])
            dt = time.perf_counter() - t
            if r.status_code != 200:
                raise RuntimeError(f"echo: HTTP {r.status_code}")
            out[clocks[i]].append(dt * 1e3)
    return {k: np.asarray(v) for k, v in out.items()}


def run_inprocess(team: Path, bodies: list[bytes], clocks: list[str], start: int) -> dict[str, np.ndarray]:
    """The decision server's code without HTTP: DecisionService over the agents in this process."""
    from marlops.serving.clients import LocalEndpoint
    from marlops.serving.decision_request import parse_request
    from marlops.serving.decision_service import DecisionService

    svc = DecisionService({a: LocalEndpoint(a, str(team)) for a in AGENTS})

    async def go() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {c: [] for c in CLOCKS}
        for i, body in enumerate(bodies):
            t = time.perf_counter()
            await svc.decide(parse_request(orjson.loads(body), svc.clocks))
            if i >= start:
                out[clocks[i]].append((time.perf_counter() - t) * 1e3)
        return out

    return {k: np.asarray(v) for k, v in asyncio.run(go()).items()}


def pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


def start_decision(name: str, srv: LocalServing, where: dict[str, str], logs: Path) -> Server:
    hp, gp = free_port(), free_port()
    args = ["serve", "decision", "--http-port", str(hp), "--grpc-port", str(gp)]
    for a in AGENTS:
        args += ["--agent", f"{a}={where[a]}", "--agent-timeout-ms", f"{a}=2000"]
    return start_process(name, args, logs, hp, gp, None)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=float, default=4.5, help="synthetic market length")
    p.add_argument("--warm-days", type=float, default=2.5, help="sent first, not measured")
    p.add_argument("--load-clients", type=int, default=8)
    p.add_argument("--load-seconds", type=float, default=10.0)
    p.add_argument("--naive-every", type=int, default=3, help="time every n-th request of the naive client")
    args = p.parse_args(argv if argv is not None else [])
    t_start = time.perf_counter()
    team = untrained_team(0)
    reqs, start = stream(args.days, args.warm_days)
    clocks = [r["clock"] for r in reqs]
    logs = Path(tempfile.mkdtemp(prefix="marlops-bench-serving-"))
    print(f"{len(reqs):,} requests ({start:,} to warm up), cpu cores: {os.cpu_count()}, logs {logs}")
    srv = start_local(model_uri=team, log_dir=logs, timeouts_ms={a: 2000.0 for a in AGENTS})
    extra: list[Server] = []
    try:
        extra = [
            start_decision("decision-risk-collocated", srv, {**srv.agent_grpc, "risk": str(team)}, logs),
            start_decision("decision-collocated", srv, {a: str(team) for a in AGENTS}, logs),
        ]
        echo_port = free_port()
        fh = (logs / "echo.log").open("wb")
        echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(echo_port)], stdout=fh, stderr=fh)
        extra.append(Server("echo", echo, echo_port, 0, logs / "echo.log"))
        wait_ready(extra)
        paths = {
            "transformer, gRPC to agents": srv.decision_url,
            "transformer, risk collocated": extra[0].url,
            "transformer, all collocated": extra[1].url,
        }
        hop_name, inproc_name = "floor: KServe model returning its input (HTTP)", "in-process (no HTTP)"
        rows: dict[str, dict[str, np.ndarray]] = {
            hop_name: run_echo(extra[2].url, encode(reqs, "echo"), clocks, start),
            inproc_name: run_inprocess(team, encode(reqs, "inproc"), clocks, start),
        }
        for i, (name, url) in enumerate(paths.items()):
            rows[name + " (HTTP)"] = run_http(url, encode(reqs, f"bench-{i}"), clocks, start)
        rows["transformer, all collocated (gRPC)"] = run_grpc(
            extra[1].grpc_url.removeprefix("grpc://"), encode(reqs, "bench-g"), clocks, start
        )
        rows["naive baseline (client, sequential V1 JSON to every agent)"] = run_naive(
            srv.agent_urls, reqs, start
        )

        print("\n| path | clock | n | p50 ms | p99 ms | goal p99 (HTTP) |")
        print("|---|---|---:|---:|---:|---|")
        for name, lat in rows.items():
            for c in CLOCKS:
                x = lat[c]
                goal = GOALS_MS[c]
                mine = "HTTP" in name and name.startswith("transformer")
                met = "" if not mine else (" met" if pct(x, 99) <= goal else " missed")
                print(f"| {name} | {c} | {len(x)} | {pct(x, 50):.2f} | {pct(x, 99):.2f} | ≤ {goal:g}{met} |")
        naive = rows["naive baseline (client, sequential V1 JSON to every agent)"]
        print("\nspeedup against the naive baseline (p50 / p99):")
        for name, lat in rows.items():
            if not name.startswith("transformer"):
                continue
            cells = ", ".join(
                f"{c} {pct(naive[c], 50) / pct(lat[c], 50):.1f}× / {pct(naive[c], 99) / pct(lat[c], 99):.1f}×"
                for c in CLOCKS
            )
            print(f"  {name}: {cells}")

        inproc, hop = pct(rows[inproc_name]["30m"], 99), pct(rows[hop_name]["30m"], 99)
        print(f"\n30m goals: in-process p99 {inproc:.2f} ms, hop p99 {hop:.2f} ms")
        for name, hops in (
            ("transformer, gRPC to agents (HTTP)", 3),
            ("transformer, all collocated (HTTP)", 1),
        ):
            got, limit = pct(rows[name]["30m"], 99), inproc + hops * hop
            verdict = "met" if got <= limit else "missed"
            print(f"  {name}: p99 {got:.2f} ms vs in-process + {hops} hop = {limit:.2f} ms: {verdict}")

        measured = list(range(start, len(reqs)))
        first30 = next(i for i in measured if clocks[i] == "30m")
        for j, name in enumerate(("transformer, gRPC to agents", "transformer, all collocated")):
            streams = [encode(reqs[first30:], f"load{j}-{k}") for k in range(args.load_clients)]
            n, errors, agent_faults, lat = asyncio.run(_load(paths[name], streams, args.load_seconds))
            x = np.asarray(lat)
            print(
                f"\nload: {args.load_clients} concurrent clients × {args.load_seconds:g} s on '{name}' "
                f"(HTTP, 2 s agent deadlines): {n:,} decisions, {n / args.load_seconds:,.0f}/s, "
                f"errors {errors}, failed closed by a late/unreachable agent {agent_faults}, "
                f"p50 {pct(x, 50):.1f} ms, p99 {pct(x, 99):.1f} ms"
            )
        print(f"\nwall time {time.perf_counter() - t_start:.0f} s")
    finally:
        stop_servers(extra)
        srv.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
