"""The MAPPO correctness check: simple_spread_v3 (mpe2, N=3, max_cycles=25, discrete) vs two baselines.

    python -m benchmarks mappo_mpe

Scores every policy on the same seeded episodes (episode j reset with seed 10_000 + j): uniform
random play, the greedy landmark-assignment heuristic (velocity-aware, and the literal position-only
variant for reference), then trains MAPPO with the default budget (``benchmarks.mpe_harness``:
``SPREAD_CONFIG``, ``SPREAD_ENVS`` envs over ``SPREAD_WORKERS`` worker processes) and scores its actor,
greedy (argmax, the primary figure) and sampled. Prints the learning curve, the wall time and a table.
Figure: mean per-agent episode return (mean over agents of the 25-step reward sum), ± standard error.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import replace
from functools import partial

import torch

from benchmarks.mpe_harness import (
    SPREAD_CONFIG,
    SPREAD_ENVS,
    EvalResult,
    RandomPolicy,
    evaluate,
    greedy_landmark_policy,
    train_spread,
)

EPISODES = 1000
CURVE_EVERY = 25  # updates


def _row(name: str, r: EvalResult) -> str:
    return f"| {name} | {r.mean:.2f} ± {r.sem:.2f} |"


def main() -> None:
    torch.set_num_threads(1)  # the small MLPs gain nothing from threads; the env workers need the cores
    print(
        f"# MAPPO on simple_spread_v3 — {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    t0 = time.perf_counter()
    random = evaluate(RandomPolicy(0), EPISODES)
    heuristic = evaluate(greedy_landmark_policy, EPISODES)
    naive = evaluate(partial(greedy_landmark_policy, use_velocity=False), EPISODES)
    print(f"baselines scored on {EPISODES} episodes in {time.perf_counter() - t0:.0f} s")

    cfg = SPREAD_CONFIG
    print(
        f"training: {cfg.total_steps:,} env steps, {SPREAD_ENVS} envs × {cfg.rollout_steps} steps per update"
    )
    print("| env steps | wall s | train episode return | explained var | approx KL | entropy |")
    print("|---:|---:|---:|---:|---:|---:|")

    def curve(m: dict[str, float]) -> None:
        if int(m["update"]) % CURVE_EVERY == 0:
            row = (
                f"| {int(m['env_steps']):,} | {m['wall_s']:.0f} | {m['episode_return']:.2f} "
                f"| {m['explained_variance']:.2f} | {m['approx_kl']:.4f} | {m['entropy']:.2f} |"
            )
            print(row, flush=True)

    run = train_spread(replace(cfg, progress=False), callback=curve)  # the table is the progress report
    wall = run.result.wall_s
    greedy = evaluate(run.policy(deterministic=True), EPISODES)
    sampled = evaluate(run.policy(deterministic=False, seed=0), EPISODES)

    steps = run.result.env_steps
    print(f"\ntrained {steps:,} env steps in {wall:.0f} s ({steps / wall:.0f} steps/s)")
    print("\n| policy | mean per-agent episode return |\n|---|---:|")
    for name, r in [
        ("random", random),
        ("greedy heuristic, position-only", naive),
        ("greedy heuristic (the baseline)", heuristic),
        ("MAPPO, argmax", greedy),
        ("MAPPO, sampled", sampled),
    ]:
        print(_row(name, r))
    diff = greedy.returns - heuristic.returns  # paired: same episodes
    sem = diff.std(ddof=1) / len(diff) ** 0.5
    verdict = "beats" if diff.mean() > 0 else "does not beat"
    print(f"\nMAPPO (argmax) {verdict} the heuristic by {diff.mean():+.2f} ± {sem:.2f} per episode (paired)")


if __name__ == "__main__":
    main()
