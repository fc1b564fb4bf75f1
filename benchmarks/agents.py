"""Decision latency: one synthetic market replayed tick by tick through the engine, batch 1.

    python -m benchmarks agents

Two runs over the same ticks, in this process:
- served: the engine as shipped — ONNX Runtime sessions (1 intra-op thread), the risk agent's
  matrix encoding cached per bar close so a tick only pays the small per-tick part;
- naive baseline: the same networks in eager torch (default threads, no_grad), every call building
  tensors from scratch, and the risk agent's full encoder over all matrices on every tick, one call
  after another (the engine's ``parallel=False``).
Latency is data-to-decision per timeframe: for a 30-minute decision it includes regime + structure
(+ tactical + risk + the engine); for a 5-minute one tactical + risk + engine; for a tick risk + engine.

The floor is each agent call's own p50, measured alone in the same run (``measure_latency``: the same
ONNX Runtime sessions, hot caches). The goals (issue 18) are ratios against it: a 30-minute decision's p99
within 1.1 × the sum of all five calls' p50, a 5-minute one's within 1.1 × (tactical + risk encoding +
risk) p50, and a tick's p99 under 100 µs.
"""

from __future__ import annotations

import numpy as np
import torch

from marlops.agents.engine import EngineConfig
from marlops.agents.replay import replay_ticks
from marlops.agents.runtime import AgentSet, measure_latency
from marlops.agents.types import RegimeOutput, RiskOutput, StructureOutput, TacticalOutput
from marlops.market.synthetic import generate_market

DAYS = 5  # four days warm the regime matrix up; the last one is measured
LEVELS = np.asarray((-1.0, -0.5, 0.0, 0.5, 1.0))


class NaiveEager:
    """The straightforward implementation: eager modules, fresh tensors each call, no caching."""

    def __init__(self, agents: AgentSet) -> None:
        self.n = agents.networks
        self.versions = dict(agents.versions)

    @staticmethod
    def _t(*arrays: np.ndarray) -> list[torch.Tensor]:
        return [torch.tensor(np.asarray(a)).unsqueeze(0) for a in arrays]

    def regime(self, m):
        with torch.no_grad():
            o = self.n["regime"](*self._t(m))
        return RegimeOutput(
            torch.softmax(o.logits, -1)[0].numpy(), float(o.volatility[0]), o.message[0].numpy()
        )

    def structure(self, m, msgs, mask):
        with torch.no_grad():
            o = self.n["structure"](*self._t(m, msgs, mask))
        p = torch.softmax(o.logits, -1)[0].numpy()
        return StructureOutput(
            p,
            float(p @ LEVELS),
            float(o.size[0]),
            float(o.confidence[0]),
            float(o.value[0]),
            o.message[0].numpy(),
        )

    def tactical(self, m, msgs, mask):
        with torch.no_grad():
            o = self.n["tactical"](*self._t(m, msgs, mask))
        return TacticalOutput(torch.softmax(o.logits, -1)[0].numpy(), float(o.value[0]), o.message[0].numpy())

    def risk_cache(self, t, s, r):
        return np.concatenate([t.ravel(), s.ravel(), r.ravel()])  # nothing cached: the matrices themselves

    def risk(self, cache, portfolio, proposal):
        t, s, r = np.split(cache, [60 * 7, 60 * 7 + 48 * 8])
        with torch.no_grad():
            q = self.n["risk"](
                *self._t(t.reshape(60, 7), s.reshape(48, 8), r.reshape(96, 11), portfolio, proposal)
            )
        return RiskOutput(q[0].numpy())


def run(agents, ticks, t_from: int, parallel: bool = True) -> dict[str, np.ndarray]:
    res = replay_ticks(ticks, agents, engine_config=EngineConfig(agent_budget_us={}), parallel=parallel)
    out: dict[str, list[float]] = {}
    for d in res.decisions:
        if d.ts >= t_from:
            out.setdefault(d.timeframe, []).append(d.latency_us["total"])
    return {k: np.asarray(v) for k, v in out.items()}


def main() -> None:
    ticks = generate_market(DAYS, seed=0).ticks
    t_from = int(ticks["ts"].iloc[-1]) - 86_400 * 10**9
    served = AgentSet.untrained(seed=0, backend="onnx", threads=1)
    naive = NaiveEager(AgentSet.untrained(seed=0, backend="eager", threads=None))
    torch.set_num_threads(torch.get_num_threads())
    floor = measure_latency(served)
    rows = {
        "served (ONNX Runtime, cached risk encoding)": run(served, ticks, t_from),
        "naive eager torch": run(naive, ticks, t_from, parallel=False),  # one call after another
    }
    print("per-agent floor (each call alone, batch 1), µs:")
    print("| call | p50 | p99 |")
    print("|---|---:|---:|")
    for call, (p50, p99) in floor.items():
        print(f"| {call} | {p50:.0f} | {p99:.0f} |")
    print(f"decision latency over the last synthetic day ({len(ticks):,} ticks replayed, batch 1), µs:")
    print("| implementation | timeframe | n | p50 | p99 | max |")
    print("|---|---|---:|---:|---:|---:|")
    for name, lat in rows.items():
        for tf in ("tick", "5m", "30m"):
            x = lat[tf]
            print(
                f"| {name} | {tf} | {len(x)} | {np.percentile(x, 50):.0f} | {np.percentile(x, 99):.0f} "
                f"| {x.max():.0f} |"
            )
    a, b = rows
    f50 = {call: p50 for call, (p50, _) in floor.items()}
    goals = {
        "30m": sum(f50.values()),
        "5m": f50["tactical"] + f50["risk_cache"] + f50["risk"],
    }
    for tf, base in goals.items():
        p99 = np.percentile(rows[a][tf], 99)
        print(f"goal {tf}: p99 {p99:.0f} / floor {base:.0f} = {p99 / base:.2f} (goal <= 1.10)")
    print(f"goal tick: p99 {np.percentile(rows[a]['tick'], 99):.0f} µs (goal <= 100)")
    for tf in ("tick", "5m", "30m"):
        print(
            f"speedup {tf}: p50 {np.median(rows[b][tf]) / np.median(rows[a][tf]):.1f}x, "
            f"p99 {np.percentile(rows[b][tf], 99) / np.percentile(rows[a][tf], 99):.1f}x"
        )


if __name__ == "__main__":
    main()
