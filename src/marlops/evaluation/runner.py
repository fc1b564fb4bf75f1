"""Run policies through full, deterministic evaluation episodes and collect their metrics.

- :func:`run_policy` plays one policy over one market from the first warm bar to the end (one
  environment, no random start), with the environment's own costs, gates and limits, and records
  every step.
- :func:`evaluate` plays every policy on every held-out market with and without costs; the metrics of
  each run and their mean over markets make an :class:`EvaluationResult`.
- :func:`walk_forward_splits` / :func:`evaluate_walk_forward` do the same over time folds of one
  imported history: policies that must be fitted (the HMM) are built per fold by a factory that only
  sees the fold's training part.

Data helper: :func:`market_data_from_dataset` (a dataset folder loaded by ``MarketDataset.load``); the
reference synthetic market comes from :func:`marlops.env.market_env.synthetic_market_data`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from marlops.agents.types import STRUCTURE_BIAS_LEVELS
from marlops.env.market_env import (  # noqa: F401
    EnvConfig,
    MarketData,
    VecMarketEnv,
    market_data_from_dataset,  # re-exported: the evaluation's data helper
)
from marlops.env.market_slice import slice_market
from marlops.evaluation import metrics as M
from marlops.market.calendar import REFERENCE_CLOCK, BarClock

if TYPE_CHECKING:  # the protocol only types the arguments
    from marlops.env.policy import TeamPolicy

PolicyFactory = Callable[[MarketData], "TeamPolicy"]
MIN_EPISODE_BARS = 24  # steps: shorter is not an evaluation (two hours of 5-minute bars, a day of hourly)
MIN_TRAIN_DAYS = 7.0  # a walk-forward fold's first training part, in trading days of the market's clock
COST_LABEL = {True: "with_costs", False: "without_costs"}


# --------------------------------------------------------------------------------------------------
# data


def has_labels(data: MarketData) -> bool:
    lab = data.regime_label[data.warm_from :]
    return bool(len(lab)) and bool((lab >= 0).all())


# --------------------------------------------------------------------------------------------------
# one episode


@dataclass
class EpisodeRecord:
    """Every step of one full episode. N steps; ``position[k]`` is held from close k to close k+1.

    ``price``, ``equity`` and ``drawdown`` have N + 1 points (the closes from the first decision to the
    last mark); the rest are per step. ``regime_pred`` is -1 where the policy states no belief,
    ``regime_label`` -1 where the market has no labels.
    """

    market: str
    policy: str
    costs: bool
    start: int  # base index of the first step in the market's data
    price: np.ndarray
    equity: np.ndarray
    position: np.ndarray
    traded: np.ndarray
    cost: np.ndarray
    structure: np.ndarray
    size: np.ndarray
    tactical: np.ndarray
    risk: np.ndarray
    regime_pred: np.ndarray
    regime_label: np.ndarray
    slow: np.ndarray  # the step closes a higher (30-minute) bar: the regime agent's clock
    day: np.ndarray
    # the market's bars per day / year (per-day and annualised figures) and each step's bar end (ns, UTC;
    # the report's dates); constructed records without them are on the reference 24/7 5-minute clock
    clock: BarClock = REFERENCE_CLOCK
    end_ns: np.ndarray | None = None

    @property
    def n_steps(self) -> int:
        return len(self.position)

    @property
    def drawdown(self) -> np.ndarray:
        return M.drawdown_curve(self.equity)

    def metrics(self) -> dict[str, float | None]:
        return episode_metrics(self)


def full_episode_config(data: MarketData, config: EnvConfig | None = None) -> EnvConfig:
    """``config`` with an episode from the first warm bar to the end of the data.

    ``VecMarketEnv.reset`` draws a start in ``[warm_from, len − episode_bars − 1)``; with
    ``episode_bars = len − warm_from − 2`` that range holds ``warm_from`` only: no randomness left.
    """
    if len(data) == 0:
        raise ValueError("data: empty market (no base bars)")
    bars = len(data) - data.warm_from - 2
    if bars < MIN_EPISODE_BARS:
        raise ValueError(
            f"data: {len(data)} base bars leave {max(bars, 0)} bars after the warm-up (warm_from "
            f"{data.warm_from}); an evaluation needs at least {MIN_EPISODE_BARS}"
        )
    return dataclasses.replace(config or EnvConfig(), episode_bars=bars)


def without_costs(config: EnvConfig) -> EnvConfig:
    return dataclasses.replace(config, commission_bps=0.0, half_spread_bps=0.0, slippage_coef=0.0)


def run_policy(
    data: MarketData,
    policy: TeamPolicy,
    env_config: EnvConfig | None = None,
    market: str = "",
    name: str | None = None,
) -> EpisodeRecord:
    """One deterministic full-length episode of ``policy`` on ``data`` (one environment).

    ``env_config``'s costs and limits apply; its ``episode_bars`` is replaced by the full length.
    """
    key = name or getattr(policy, "name", type(policy).__name__)
    return run_policies(data, {key: policy}, env_config, market)[key]


_ACTION_KEYS = ("structure", "size", "tactical", "risk")
# Optional keys VecMarketEnv.step reads, and their value for a policy that does not send them.
_OPTIONAL_KEYS: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
    "bias": lambda a: np.asarray(STRUCTURE_BIAS_LEVELS)[np.asarray(a["structure"]).reshape(-1)],
    "fail": lambda a: np.zeros(1, bool),
    "structure_now": lambda a: np.zeros(1, bool),
}


def run_policies(
    data: MarketData,
    policies: Mapping[str, TeamPolicy],
    env_config: EnvConfig | None = None,
    market: str = "",
) -> dict[str, EpisodeRecord]:
    """Full-length episodes of several policies side by side: environment i is policy i's alone.

    One batched environment steps them together (the environments never interact and all start at
    ``warm_from``), which is the same as separate runs — a test checks it — at a fraction of the
    per-step overhead. Each policy sees its own row of the observation as a batch of one. Besides the
    four actions, the optional keys ``VecMarketEnv.step`` reads ("bias", "fail", "structure_now") are
    passed on when a policy sends them (the others get the neutral value).
    """
    if not policies:
        raise ValueError("policies: no policy to run")
    cfg = full_episode_config(data, env_config)
    names, pols = list(policies), list(policies.values())
    k_pol = len(pols)
    env = VecMarketEnv(data, k_pol, cfg, seed=0)
    obs = env.reset()
    start = int(env.t[0])
    if not (env.t == data.warm_from).all():
        raise AssertionError(f"full-length episode started at {env.t}, not warm_from {data.warm_from}")
    n = cfg.episode_bars
    flt = {k: np.zeros((k_pol, n)) for k in ("position", "traded", "cost", "size")}
    ints = {k: np.full((k_pol, n), -1, np.int64) for k in ("structure", "tactical", "risk", "regime_pred")}
    equity = np.empty((k_pol, n + 1))
    equity[:, 0] = cfg.initial_equity
    for p in pols:
        p.reset(1)
        prepare = getattr(p, "prepare", None)  # optional: batch work over the whole market up front
        if prepare is not None:
            prepare(data)
    for k in range(n):
        acts = [p.act({key: v[i : i + 1] for key, v in obs.items()}) for i, p in enumerate(pols)]
        batch = {key: np.concatenate([np.asarray(a[key]).reshape(-1) for a in acts]) for key in _ACTION_KEYS}
        for key, default in _OPTIONAL_KEYS.items():  # passed on when any policy sends them
            if any(key in a for a in acts):
                batch[key] = np.concatenate(
                    [np.asarray(a[key]).reshape(-1) if key in a else default(a) for a in acts]
                )
        for key in ("structure", "tactical", "risk"):
            ints[key][:, k] = batch[key]
        flt["size"][:, k] = batch["size"]
        for i, a in enumerate(acts):
            if "regime_pred" in a:
                ints["regime_pred"][i, k] = int(np.asarray(a["regime_pred"]).reshape(-1)[0])
        obs, _, done, info = env.step(batch)
        flt["position"][:, k] = info["target"]
        flt["traded"][:, k] = info["traded"]
        flt["cost"][:, k] = info["cost"]
        equity[:, k + 1] = info["equity"]
        if bool(done.any()) != (k == n - 1):
            raise AssertionError(f"episode ended at step {k} of {n}")
    idx = np.arange(start, start + n)
    costs = cfg.commission_bps + cfg.half_spread_bps + cfg.slippage_coef > 0
    return {
        name: EpisodeRecord(
            market=market,
            policy=name,
            costs=costs,
            start=start,
            price=data.close[start : start + n + 1].copy(),
            equity=equity[i],
            regime_label=data.regime_label[idx].astype(np.int64),
            slow=data.slow_step[idx].astype(bool),
            day=data.day[idx].astype(np.int64),
            clock=data.clock,
            end_ns=data.end_ns[idx].astype(np.int64),
            **{key: v[i] for key, v in flt.items()},
            **{key: v[i] for key, v in ints.items()},
        )
        for i, name in enumerate(names)
    }


def episode_metrics(r: EpisodeRecord) -> dict[str, float | None]:
    """Every metric of one episode (docs/evaluation.md): the figures the report and the goals read.

    Trip accounting: ``round_trips`` closed trips (``round_trips_per_day`` over the episode's days),
    ``entries`` trips opened, ``limit_exits`` trips closed by a stop, take profit, halt, kill switch or
    the risk agent rather than by the policy's own exit (:func:`~marlops.evaluation.metrics.trip_steps`).
    """
    eq, clock = r.equity, r.clock
    trips = M.trip_steps(r.position, r.tactical)
    days = clock.days(r.n_steps)  # trading days: a weekend without bars is not a day
    return {
        "sharpe": M.sharpe_ratio(eq, clock.bars_per_year),
        "sortino": M.sortino_ratio(eq, clock.bars_per_year),
        "max_drawdown": M.max_drawdown(eq),
        "total_return": M.total_return(eq),
        "annualized_return": M.annualized_return(eq, clock.bars_per_year),
        "turnover_per_day": M.turnover_per_day(r.traded, r.price[:-1], eq, clock.bars_per_day),
        "hit_rate": M.hit_rate(r.position, r.price, r.cost),
        "round_trips": float(len(M.round_trips(r.position, r.price, r.cost))),
        "round_trips_per_day": trips.closes / days,
        "entries": float(trips.entries),
        "limit_exits": float(trips.limit_exits),
        "cost_share": M.cost_share(eq, r.cost),
        "total_cost": float(r.cost.sum()),
        "exposure": float(np.mean(r.position != 0)),
        "regime_balanced_accuracy": M.regime_balanced_accuracy(r.regime_label[r.slow], r.regime_pred[r.slow]),
        "days": days,
    }


# --------------------------------------------------------------------------------------------------
# many episodes


@dataclass
class EvaluationResult:
    """Records and metrics of every (market, policy, cost setting) run, plus means over markets."""

    markets: list[str]
    policies: list[str]
    records: dict[tuple[str, str, bool], EpisodeRecord] = field(default_factory=dict)
    metrics: dict[tuple[str, str, bool], dict[str, float | None]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    env_config: EnvConfig | None = None
    goals: dict[str, Any] = field(default_factory=dict)
    # walk-forward markets: their fold's bar-end times (ns, UTC), ``{"train": (first, last), "test": …}``
    folds: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)

    def aggregate(self, costs: bool = True) -> dict[str, dict[str, float | None]]:
        """Mean of every metric over the markets a policy ran on, per policy (``None`` if never scored)."""
        out: dict[str, dict[str, float | None]] = {}
        for p in self.policies:
            runs = [m for (_, pol, c), m in self.metrics.items() if pol == p and c == costs]
            if not runs:
                continue
            agg: dict[str, float | None] = {}
            for key in runs[0]:
                vals = [float(v) for m in runs if (v := m[key]) is not None and np.isfinite(v)]
                agg[key] = float(np.mean(vals)) if vals else None
            agg["markets"] = float(len(runs))
            out[p] = agg
        return out

    def cost_settings(self) -> list[bool]:
        return sorted({c for (_, _, c) in self.metrics}, reverse=True)

    def pooled_confusion(self, policy: str, costs: bool = True) -> np.ndarray | None:
        """Regime confusion matrix of ``policy`` summed over markets (None without predictions)."""
        mats = [
            M.regime_confusion(r.regime_label[r.slow], r.regime_pred[r.slow])
            for (_, p, c), r in self.records.items()
            if p == policy and c == costs
        ]
        total = sum(mats) if mats else None
        return None if total is None or int(np.sum(total)) == 0 else np.asarray(total)


def _progress(enabled: bool) -> Any:
    """A transient rich progress bar (disabled: renders nothing)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=True,
    )


def evaluate(
    datasets: Mapping[str, MarketData],
    policies: Mapping[str, TeamPolicy],
    with_costs: Iterable[bool] = (True, False),
    env_config: EnvConfig | None = None,
    progress: bool = True,
    result: EvaluationResult | None = None,
) -> EvaluationResult:
    """Every policy on every market, once per cost setting (``True``: ``env_config``'s costs, default
    :class:`EnvConfig`; ``False``: commission, spread and slippage 0), full deterministic episodes.

    A policy with ``needs_labels = True`` (the oracle) is skipped, with a note in ``result.skipped``, on
    markets without regime labels. Pass ``result`` to accumulate (walk-forward folds).
    """
    if not datasets:
        raise ValueError("datasets: no market to evaluate on")
    if not policies:
        raise ValueError("policies: no policy to evaluate")
    settings = list(dict.fromkeys(bool(c) for c in with_costs))
    if not settings:
        raise ValueError("with_costs: give at least one cost setting (True and/or False)")
    base = env_config or EnvConfig()
    for name, d in datasets.items():
        full_episode_config(d, base)  # fail early, naming the market, before any long run
        if not isinstance(d, MarketData):
            raise ValueError(f"datasets[{name!r}]: expected MarketData, got {type(d).__name__}")
    res = result or EvaluationResult([], [], env_config=base)
    res.markets += [m for m in datasets if m not in res.markets]
    res.policies += [p for p in policies if p not in res.policies]
    total = len(datasets) * len(settings)
    with _progress(progress) as bar:
        task = bar.add_task("evaluating", total=total)
        for mname, data in datasets.items():
            labelled = has_labels(data)
            runnable = {}
            for pname, pol in policies.items():
                if getattr(pol, "needs_labels", False) and not labelled:
                    res.skipped.append({"market": mname, "policy": pname, "reason": "needs regime labels"})
                else:
                    runnable[pname] = pol
            for costs in settings:
                bar.update(task, description=f"{mname} · {COST_LABEL[costs]}")
                cfg = base if costs else without_costs(base)
                for pname, rec in run_policies(data, runnable, cfg, market=mname).items():
                    rec.costs = costs
                    res.records[(mname, pname, costs)] = rec
                    res.metrics[(mname, pname, costs)] = episode_metrics(rec)
                bar.advance(task)
    return res


# --------------------------------------------------------------------------------------------------
# walk-forward


@dataclass(frozen=True)
class Split:
    """Base-bar index ranges ``[start, end)`` of one fold: train strictly before test."""

    fold: int
    train: tuple[int, int]
    test: tuple[int, int]


def walk_forward_splits(
    n_bars: int,
    n_folds: int,
    test_fraction: float = 0.5,
    gap: int = 0,
    expanding: bool = True,
    min_train: int = round(MIN_TRAIN_DAYS * M.BARS_PER_DAY),
) -> list[Split]:
    """Time-ordered folds over ``n_bars`` base bars.

    The last ``test_fraction`` of the history is cut into ``n_folds`` contiguous, non-overlapping test
    blocks; fold i trains on the bars before its test block, minus ``gap`` bars of embargo (from the
    start of the history when ``expanding``, else a window as long as the first fold's). No fold's
    training part reaches its test block, and the test blocks together cover the held-out tail once.
    """
    if n_bars <= 0:
        raise ValueError(f"n_bars: must be > 0, got {n_bars}")
    if n_folds < 1:
        raise ValueError(f"n_folds: must be >= 1, got {n_folds}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction!r}")
    if gap < 0:
        raise ValueError(f"gap: must be >= 0, got {gap}")
    test_start = n_bars - round(n_bars * test_fraction)
    edges = np.linspace(test_start, n_bars, n_folds + 1).round().astype(int)
    if np.any(np.diff(edges) < MIN_EPISODE_BARS):
        raise ValueError(
            f"n_folds: {n_folds} folds over {n_bars - test_start} held-out bars leave test blocks shorter "
            f"than {MIN_EPISODE_BARS} bars"
        )
    first_train = test_start - gap
    if first_train < min_train:
        raise ValueError(
            f"n_bars: the first fold trains on {first_train} bars, fewer than min_train={min_train}"
        )
    out = []
    for i in range(n_folds):
        t0, t1 = int(edges[i]), int(edges[i + 1])
        tr_end = t0 - gap
        tr_start = 0 if expanding else max(0, tr_end - first_train)
        out.append(Split(i, (tr_start, tr_end), (t0, t1)))
    return out


def _time_range(data: MarketData, span: tuple[int, int]) -> tuple[int, int]:
    """The bar-end times (ns) of the first and last bar of ``[start, end)``: what a reader dates a fold by."""
    return int(data.end_ns[span[0]]), int(data.end_ns[span[1] - 1])


def evaluate_walk_forward(
    data: MarketData,
    splits: Sequence[Split],
    policies: Mapping[str, TeamPolicy | PolicyFactory],
    with_costs: Iterable[bool] = (True, False),
    env_config: EnvConfig | None = None,
    market: str = "market",
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate on every fold's test block; a factory in ``policies`` (a callable without ``act``) is
    called with the fold's training slice and its policy plays that fold only.

    The test slice keeps its real history for the matrices (see :func:`slice_market`), so the first
    test bar is tradable; market names are ``"{market} fold {i}"``.
    """
    if not splits:
        raise ValueError("splits: no fold to evaluate")
    res: EvaluationResult | None = None
    for sp in splits:
        if sp.train[1] > sp.test[0]:
            raise ValueError(f"splits: fold {sp.fold} trains past its test start ({sp.train} vs {sp.test})")
        train = slice_market(data, *sp.train)
        test = slice_market(data, *sp.test)
        # the test block's own warm-up: bars before the full history's warm_from are not tradable
        pols = {
            name: (p if hasattr(p, "act") else p(train))  # type: ignore[operator]
            for name, p in policies.items()
        }
        name = f"{market} fold {sp.fold}"
        res = evaluate({name: test}, pols, with_costs, env_config, progress, res)
        res.folds[name] = {"train": _time_range(data, sp.train), "test": _time_range(data, sp.test)}
    assert res is not None
    return res
