"""How readily the trained risk agent intervenes, chosen on markets it did not learn from.

The greedy risk agent acts where an action's estimated value beats ``allow``'s. Its estimates are noisy
(:func:`marlops.training.risk.calibrate_allow_margin` measures that noise), and even a real edge in the
Q-learning objective need not survive the trip to a desk's measure — return and drawdown over whole
episodes. So after training the margin by which an intervention must beat ``allow`` is chosen by trying
it: the frozen team and its risk agent play the same episodes once per candidate margin (0, multiples of
the measured noise, and "never intervene"), side by side in one batched environment. A margin qualifies
only if it earns its interventions in the desk's own terms against "never": mean max drawdown cut by at
least ``min_drawdown_cut`` at a return cost of at most ``max_return_cost`` (the issue's 30 % / 20 % goal
asks for the first, a validation market is noisy enough that a smaller cut is not evidence). Of those the
best ``return − drawdown_weight × max drawdown`` (mean over episodes) wins; none qualifying, the agent
never intervenes — a risk agent that cannot help is made harmless instead of shipped harmful. The log
says which margin won and what each scored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from marlops.agents.types import RiskAction
from marlops.env.market_env import EnvConfig, MarketData, VecMarketEnv
from marlops.training.dqn import flatten_risk_obs, risk_q_fn
from marlops.training.risk import proposal
from marlops.training.team import TeamModels, TrainedTeam

NEVER = 1e3  # a margin no Q-value difference reaches: the agent always allows
NOISE_MULTIPLES = (0.0, 1.0, 2.0, 4.0, 8.0)


@dataclass
class MarginChoice:
    margin: float
    scores: dict[float, dict[str, float]] = field(default_factory=dict)  # margin → mean figures


def _max_drawdown(equity: np.ndarray) -> np.ndarray:
    """(n,) largest peak-to-trough fraction of each row of an (n, T) equity array."""
    peak = np.maximum.accumulate(equity, axis=1)
    return ((peak - equity) / peak).max(axis=1)


@torch.no_grad()
def choose_allow_margin(
    models: TeamModels,
    markets: Sequence[MarketData],
    noise: float,
    episode_bars: int,
    episodes_per_market: int = 4,
    drawdown_weight: float = 2.0,
    seed: int = 0,
    min_drawdown_cut: float = 0.10,
    max_return_cost: float = 0.20,
    env_config: EnvConfig | None = None,
) -> MarginChoice:
    """Play every candidate margin on the same episodes (see the module docstring); the margin is the one to
    *add* to ``allow``'s output (the network is left unchanged here)."""
    candidates = sorted({round(noise * k, 9) for k in NOISE_MULTIPLES} | {NEVER})
    c = len(candidates)
    margins = np.asarray(candidates)
    rng = np.random.default_rng(seed)
    totals: dict[float, list[np.ndarray]] = {m: [] for m in candidates}
    team = TrainedTeam(models, use_risk=False)
    for data in markets:
        bars = min(episode_bars, len(data) - data.warm_from - 2)
        if bars < 12:
            continue
        starts = rng.integers(data.warm_from, len(data) - bars - 1, episodes_per_market)
        n = episodes_per_market * c
        cfg = dataclasses.replace(env_config or EnvConfig(), episode_bars=bars)
        env = VecMarketEnv(data, n, cfg, seed=seed)
        obs = env.reset(starts=np.repeat(starts, c))  # row i: episode i // c, candidate i % c
        row_margin = np.tile(margins, episodes_per_market)
        team.reset(n)
        team.prepare(data)
        equity = np.empty((n, bars + 1))
        equity[:, 0] = env.cfg.initial_equity
        interventions = np.zeros(n)
        for k in range(bars):
            a = team.act(obs)
            flat = flatten_risk_obs(
                obs["tactical"],
                obs["structure"],
                obs["regime"],
                obs["portfolio"],
                proposal(a["tactical"], a["bias"], a["size"]),
            )
            q = risk_q_fn(models.risk, (torch.as_tensor(flat),)).numpy()
            adv = q - q[:, [RiskAction.ALLOW]]
            act = np.where(adv.max(1) > row_margin, q.argmax(1), int(RiskAction.ALLOW))
            interventions += act != RiskAction.ALLOW
            a["risk"] = act
            obs, _, _, info = env.step(a)
            equity[:, k + 1] = info["equity"]
        ret = equity[:, -1] / equity[:, 0] - 1.0
        mdd = _max_drawdown(equity)
        for j, m in enumerate(candidates):
            rows = slice(j, n, c)
            totals[m].append(np.stack([ret[rows], mdd[rows], interventions[rows] / bars], 1))
    scores: dict[float, dict[str, float]] = {}
    for m in candidates:
        if not totals[m]:
            continue
        r, d, i = np.concatenate(totals[m]).mean(0)
        scores[m] = {
            "return": float(r),
            "max_drawdown": float(d),
            "interventions_per_step": float(i),
            "utility": float(r - drawdown_weight * d),
        }
    return MarginChoice(pick_margin(scores, min_drawdown_cut, max_return_cost), scores)


def pick_margin(
    scores: dict[float, dict[str, float]], min_drawdown_cut: float = 0.10, max_return_cost: float = 0.20
) -> float:
    """The rule of the module docstring over measured ``scores`` (margin → mean figures, NEVER included)."""
    base = scores.get(NEVER)
    if base is None:
        return NEVER

    def earns(s: dict[str, float]) -> bool:
        cut = 1.0 - s["max_drawdown"] / base["max_drawdown"] if base["max_drawdown"] > 0 else 0.0
        cost = (base["return"] - s["return"]) / abs(base["return"]) if base["return"] != 0 else 0.0
        return cut >= min_drawdown_cut and cost <= max_return_cost

    qualified = [m for m in scores if m != NEVER and earns(scores[m])]
    return max(qualified, key=lambda m: (scores[m]["utility"], m), default=NEVER)


def add_allow_margin(models: TeamModels, margin: float) -> None:
    """Raise ``allow``'s Q-output by ``margin`` (the exported model then acts on it unchanged)."""
    if not math.isfinite(margin):
        raise ValueError(f"margin: must be finite, got {margin}")
    with torch.no_grad():
        models.risk.q_mlp[-1].bias[RiskAction.ALLOW] += margin
