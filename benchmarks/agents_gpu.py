"""The four agent networks on a GPU: batch-1 latency (eager and CUDA-graph replay) and batched throughput.

    python -m benchmarks agents_gpu          (needs CUDA; prints a note and exits where there is none)

Batch 1 is the serving shape; the batched forward (+ backward) throughput is what training on GPU
nodes pays per agent-step. The CPU figures of the same networks are in `python -m benchmarks agents`.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from marlops.agents.networks import build_network
from marlops.agents.specs import AgentSpec, load_specs
from marlops.agents.types import MESSAGE_DIM, PORTFOLIO_FEATURES, PROPOSAL_DIM
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL


def inputs(name: str, b: int, dev: torch.device) -> tuple[torch.Tensor, ...]:
    r = lambda *s: torch.randn(*s, device=dev)  # noqa: E731
    if name == "regime":
        return (r(b, *REGIME.shape),)
    if name == "structure":
        return r(b, *STRUCTURE.shape), r(b, 1, MESSAGE_DIM), torch.ones(b, 1, dtype=torch.bool, device=dev)
    if name == "tactical":
        return r(b, *TACTICAL.shape), r(b, 2, MESSAGE_DIM), torch.ones(b, 2, dtype=torch.bool, device=dev)
    return (
        r(b, *TACTICAL.shape),
        r(b, *STRUCTURE.shape),
        r(b, *REGIME.shape),
        r(b, len(PORTFOLIO_FEATURES)),
        r(b, PROPOSAL_DIM),
    )


def timed(fn, n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out[i] = (time.perf_counter() - t0) * 1e6
    return out


def bench_agent(name: str, spec: AgentSpec, dev: torch.device) -> str:
    net = build_network(spec, seed=0).to(dev).eval()
    x1 = inputs(name, 1, dev)
    with torch.inference_mode():
        for _ in range(50):
            net(*x1)
        eager = timed(lambda: net(*x1), 500)
    # CUDA graphs remove the per-kernel launch cost that dominates batch 1
    static = inputs(name, 1, dev)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(s):
        for _ in range(5):
            net(*static)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(g):
        net(*static)
    graph = timed(g.replay, 500)
    xb = inputs(name, 4096, dev)
    with torch.inference_mode():
        fwd = timed(lambda: net(*xb), 30)
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]

    def step() -> None:
        out = net(*xb)
        loss = sum(o.float().mean() for o in (out if isinstance(out, tuple) else (out,)))
        torch.autograd.grad(loss, params, allow_unused=True)

    for _ in range(3):
        step()
    bwd = timed(step, 20)
    return (
        f"| {name} | {np.percentile(eager, 50):.0f} / {np.percentile(eager, 99):.0f} | "
        f"{np.percentile(graph, 50):.0f} / {np.percentile(graph, 99):.0f} | "
        f"{4096 / np.median(fwd) * 1e6:,.0f} | {4096 / np.median(bwd) * 1e6:,.0f} |"
    )


def main() -> None:
    if not torch.cuda.is_available():
        print("agents_gpu: no CUDA device here; run it on a GPU node")
        return
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name()} · torch {torch.__version__}")
    print(
        "| agent | batch-1 eager p50 / p99 µs | batch-1 CUDA graph p50 / p99 µs | "
        "batch 4096 forward samples/s | batch 4096 fwd+bwd samples/s |"
    )
    print("|---|---|---|---:|---:|")
    for name, spec in load_specs().items():
        print(bench_agent(name, spec, dev))


if __name__ == "__main__":
    main()
