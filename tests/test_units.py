"""Figures in the data's own units: the bar clock (timeframe and calendar), equity-relative limits,
per-dataset costs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from marlops.agents.types import TacticalAction
from marlops.env.market_env import synthetic_market_data
from marlops.evaluation.intervals import compute_intervals
from marlops.evaluation.runner import EpisodeRecord, EvaluationResult, episode_metrics, slice_market
from marlops.market.calendar import DAY_NS, REFERENCE_CLOCK, BarClock, bar_clock

HOUR_NS = 3_600 * 10**9
MONDAY = np.datetime64("2024-01-01T00:00", "ns").astype(np.int64)  # a Monday


def _weekday_hours(weeks: int, start_ns: int = int(MONDAY), first_hour: int = 0) -> np.ndarray:
    """Bar ends of hourly bars, Monday 00:00 to Friday 24:00 UTC, no weekend bars."""
    ends = []
    for w in range(weeks):
        for d in range(5):
            day0 = start_ns + (7 * w + d) * DAY_NS
            ends += [day0 + (h + 1) * HOUR_NS for h in range(24)]
    return np.asarray(ends[first_hour:], np.int64)


# --------------------------------------------------------------------------------------------------
# the clock


def test_hourly_bars_with_weekend_gaps_have_24_a_day_and_5_days_a_week() -> None:
    clock = bar_clock(_weekday_hours(8))
    assert clock.bars_per_day == 24.0
    assert clock.bars_per_year == pytest.approx(24 * 5 * 365 / 7)  # 6,257.1: 260.7 trading days
    assert clock.days_per_year == pytest.approx(5 * 365 / 7)
    # a start mid-week and mid-day changes nothing: the window is whole weeks from the first bar
    later = bar_clock(_weekday_hours(9)[24 * 2 + 7 :])
    assert later.bars_per_year == pytest.approx(clock.bars_per_year) and later.bars_per_day == 24.0
    # FX hours: Sunday 22:00 to Friday 22:00 — Sunday's two bars do not make a trading day
    fx = [
        int(MONDAY) - 2 * HOUR_NS + k * HOUR_NS + HOUR_NS
        for w in range(6)
        for k in range(7 * w * 24, 7 * w * 24 + 120)
    ]
    fx_clock = bar_clock(np.asarray(fx, np.int64))
    assert fx_clock.bars_per_day == 24.0
    assert fx_clock.bars_per_year == pytest.approx(24 * 5 * 365 / 7)


def test_a_complete_24_7_history_is_exactly_the_reference_clock() -> None:
    five = 300 * 10**9
    assert bar_clock(int(MONDAY) + five * np.arange(1, 288 * 30 + 1)) == REFERENCE_CLOCK  # exact, no rounding
    assert bar_clock(int(MONDAY) + five * np.arange(1, 288 * 3 + 1)) == REFERENCE_CLOCK  # under a week
    hourly = bar_clock(int(MONDAY) + HOUR_NS * np.arange(1, 24 * 40))
    assert hourly == BarClock(24.0, 24.0 * 365)
    assert bar_clock(np.zeros(1, np.int64)) == REFERENCE_CLOCK  # one bar has no calendar
    with pytest.raises(ValueError, match="end_ns"):
        bar_clock(np.array([3, 2, 1]))
    with pytest.raises(ValueError, match="bars_per_day"):
        BarClock(0.0, 1.0)


def test_the_synthetic_market_keeps_the_reference_clock_and_a_slice_keeps_its_markets() -> None:
    data = synthetic_market_data(seed=12, days=7)
    assert data.clock == REFERENCE_CLOCK
    assert slice_market(data, 100, 400).clock == REFERENCE_CLOCK  # 300 bars have no calendar of their own


# --------------------------------------------------------------------------------------------------
# metrics on the clock: an hourly market with weekend gaps, by hand


def _hourly_record(weeks: int = 4) -> EpisodeRecord:
    end = _weekday_hours(weeks)
    n = len(end)
    rng = np.random.default_rng(3)
    r = 0.001 + 0.004 * rng.standard_normal(n)
    equity = 1e5 * np.r_[1.0, np.cumprod(1 + r)]
    price = np.full(n + 1, 1.2)
    position = np.where(np.arange(n) % 10 < 5, 50_000.0, 0.0)  # in and out every 5 bars
    traded = np.diff(np.r_[0.0, position])
    zeros = np.zeros(n, np.int64)
    return EpisodeRecord(
        "fx", "p", True, 0, price, equity, position, traded, np.zeros(n), zeros, np.zeros(n),
        np.full(n, int(TacticalAction.HOLD)), zeros, np.full(n, -1), np.full(n, -1), np.zeros(n, bool),
        (end - 1) // DAY_NS, bar_clock(end), end,
    )  # fmt: skip


def test_sharpe_days_and_turnover_of_hourly_bars_with_weekend_gaps_by_hand() -> None:
    rec = _hourly_record(weeks=4)
    met = episode_metrics(rec)
    n = rec.n_steps
    assert n == 4 * 5 * 24
    r = rec.equity[1:] / rec.equity[:-1] - 1
    bars_per_year = 24 * 5 * 365 / 7  # 24 bars a trading day, 5 trading days a week
    assert met["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(bars_per_year))
    assert met["days"] == pytest.approx(20.0)  # four weeks of five trading days, not 480 / 288 = 1.67
    notional = np.sum(np.abs(rec.traded) * 1.2)
    assert met["turnover_per_day"] == pytest.approx(notional / rec.equity.mean() / 20.0)
    years = n / bars_per_year
    assert met["annualized_return"] == pytest.approx((rec.equity[-1] / 1e5) ** (1 / years) - 1)
    # what the 5-minute 24/7 assumption reported: Sharpe √(105,120 / 6,257) ≈ 4.1× too high, turnover 12×
    old = episode_metrics(dataclasses.replace(rec, clock=REFERENCE_CLOCK))
    assert old["sharpe"] / met["sharpe"] == pytest.approx(math.sqrt(288 * 365 / bars_per_year))
    assert old["turnover_per_day"] / met["turnover_per_day"] == pytest.approx(12.0)


def test_daily_sharpe_intervals_annualise_by_the_markets_trading_days() -> None:
    rec = _hourly_record(weeks=6)
    res = EvaluationResult(["fx"], ["p"])
    res.records[("fx", "p", True)] = rec
    res.metrics[("fx", "p", True)] = episode_metrics(rec)
    iv = compute_intervals(res, team="p")
    assert iv.config.days_per_year == pytest.approx(5 * 365 / 7)
    daily = iv.daily_returns["p"]["fx"]
    assert len(daily) == 30  # one per trading day: weekends have no bars, so no day
    want = daily.mean() / daily.std(ddof=1) * math.sqrt(5 * 365 / 7)
    assert iv.policies["p"].sharpe.point == pytest.approx(want)
    assert iv.policies["p"].round_trips_per_day.point == pytest.approx(rec.n_steps / 10 / 30, rel=0.05)
    other = dataclasses.replace(rec, market="crypto", clock=REFERENCE_CLOCK)
    res.markets.append("crypto")
    res.records[("crypto", "p", True)] = other
    with pytest.raises(ValueError, match="days_per_year"):
        compute_intervals(res, team="p")


# --------------------------------------------------------------------------------------------------
# risk limits relative to equity


def _full_entry(price: float, limits):
    """An entry sized far beyond every limit (a tiny ATR stop), at 100,000 equity."""
    from marlops.agents.decision import DecisionInputs, Portfolio, decide
    from marlops.agents.hub import ConsensusConfig, ConsensusRule
    from marlops.agents.types import MESSAGE_DIM, TacticalOutput

    pf = Portfolio()
    pf.roll_day(0, price)
    probs = np.zeros(5, np.float32)
    probs[int(TacticalAction.ENTER_LONG)] = 1.0
    tac = TacticalOutput(probs, 0.0, np.zeros(MESSAGE_DIM, np.float32))
    inp = DecisionInputs(price, price * 1e-6, tac, None, None)
    return pf, decide(inp, pf, limits, consensus=ConsensusConfig(ConsensusRule.NONE))


@pytest.mark.parametrize("max_position_equity", [0.5, 2.0])
def test_the_same_limits_mean_the_same_equity_fraction_on_any_instrument(max_position_equity: float) -> None:
    from marlops.agents.decision import BatchInputs, RiskLimits, decide_batch
    from marlops.agents.hub import ConsensusConfig, ConsensusRule

    limits = RiskLimits(max_position_equity=max_position_equity, max_leverage=5.0)
    fractions, features = [], []
    for price in (1.2, 1_800.0):
        pf, d = _full_entry(price, limits)
        fractions.append(abs(d.target) * price / pf.equity(price))
        assert "limit:max_position_equity" in d.overrides  # (the proposal broke max_leverage too)
        pf.fill(d.target, price)
        features.append(pf.state_vector(price, limits)[0])  # the risk agent's "position" feature
        one = np.ones(1)
        vec = decide_batch(
            BatchInputs(
                np.array([price]), one * price * 1e-6, np.array([int(TacticalAction.ENTER_LONG)]), one,
                np.zeros(1, bool), 0 * one, 0 * one, -one.astype(int), np.zeros(1, bool), 0 * one,
                one * 1e5, one * 1e5, np.zeros(1, bool), one * np.nan, one * np.nan,
            ),
            limits,
            ConsensusConfig(ConsensusRule.NONE),
        )  # fmt: skip
        assert vec.target[0] == pytest.approx(d.target, rel=1e-12)
    assert fractions == pytest.approx([max_position_equity] * 2, rel=1e-9)
    assert features == pytest.approx([1.0, 1.0], rel=1e-9)
    # the former unit limit, kept as an optional cap: 2,000 units is 2.4 % of equity at 1.2, 36x at 1,800
    capped = RiskLimits(max_position_equity=50.0, max_leverage=50.0, max_position=2_000.0)
    for price, frac in ((1.2, 0.024), (1_800.0, 36.0)):
        pf, d = _full_entry(price, capped)
        assert abs(d.target) * price / 1e5 == pytest.approx(frac, rel=1e-9)
        assert "limit:max_position" in d.overrides


def test_the_default_limits_are_what_2000_units_meant_on_the_reference_market() -> None:
    from marlops.agents.decision import RiskLimits, position_cap

    lim = RiskLimits()
    assert (lim.max_position, lim.max_exposure) == (None, None)  # unit and currency caps are off
    assert position_cap(100.0, 100_000.0, lim) == pytest.approx(2_000.0)


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_position_equity", -1.0),
        ("max_position_equity", math.nan),
        ("max_position_equity", 0.0),
        ("max_leverage", math.inf),
        ("max_position", 0.0),
        ("max_exposure", -5.0),
        ("max_exposure", math.nan),
    ],
)
def test_bad_limits_name_the_field(field: str, value: float) -> None:
    from marlops.agents.decision import RiskLimits

    with pytest.raises(ValueError, match=f"^{field}: must be finite and > 0"):
        RiskLimits(**{field: value})


# --------------------------------------------------------------------------------------------------
# costs per dataset


def test_costs_come_from_the_datasets_meta_or_stay_the_defaults(tmp_path) -> None:
    from marlops.env.market_env import EnvConfig, VecMarketEnv, costs_from_meta, env_config_for_dataset
    from marlops.market.dataset import MarketDataset, dataset_from_ticks
    from marlops.market.feed import FeedConfig
    from marlops.market.synthetic import generate_market

    default = EnvConfig()
    assert costs_from_meta({}, 100.0) == default  # nothing recorded: today's costs
    cfg = costs_from_meta({"commission_bps": 0.5, "spread_bps": 0.8}, 1.1)
    assert (cfg.commission_bps, cfg.half_spread_bps) == (0.5, 0.4)
    # a coarse tick floors the spread: 0.5 on a 2,000-priced instrument is 2.5 bps, above the default 2
    assert costs_from_meta({"tick_size": 0.5}, 2_000.0).half_spread_bps == pytest.approx(1.25)
    assert costs_from_meta({"tick_size": 1e-5}, 1.1) == default  # a fine tick changes nothing
    for key, bad in (("commission_bps", -1), ("spread_bps", "2"), ("tick_size", math.nan)):
        with pytest.raises(ValueError, match=f"^{key}: meta.json"):
            costs_from_meta({key: bad}, 100.0)

    m = generate_market(days=2, seed=3)
    meta = {"source": "import", "commission_bps": 0.25, "spread_bps": 1.0, "tick_size": 0.01}
    ds_path = dataset_from_ticks(tmp_path / "ds", m.ticks, FeedConfig(), meta).path
    ds = MarketDataset.load(ds_path)
    cfg = env_config_for_dataset(ds)
    assert (cfg.commission_bps, cfg.half_spread_bps) == (0.25, 0.5)  # a 0.01 tick at ~100 is 1 bp: no floor
    # the environment charges them: (commission + half spread) on the traded notional, plus impact
    from marlops.env.market_env import market_data_from_dataset

    data = market_data_from_dataset(ds)
    env = VecMarketEnv.__new__(VecMarketEnv)
    env.data, env.cfg = data, dataclasses.replace(cfg, slippage_coef=0.0)
    t = np.array([len(data) - 1])
    cost = env._costs(np.array([10.0]), data.close[t], t)
    assert cost[0] == pytest.approx(10.0 * data.close[t][0] * 0.75e-4)


def test_the_volume_unit_of_an_import_scales_what_slippage_reads(tmp_path) -> None:
    """Slippage reads |qty| / bar volume: an import records how many instrument units one unit of its
    volume is (a contract multiplier, or the synthetic tape's 1,000), so impact means the same on any file."""
    from typer.testing import CliRunner

    from marlops.cli import app
    from marlops.env.market_env import SYNTHETIC_VOLUME_UNITS, market_data_from_dataset, volume_multiplier
    from marlops.market.dataset import MarketDataset

    synth = tmp_path / "synth"
    runner = CliRunner()
    assert (
        runner.invoke(app, ["data", "synth", "--days", "9", "--seed", "3", "--out", str(synth)]).exit_code
        == 0
    )
    b = MarketDataset.load(synth).base
    csv = tmp_path / "bars.csv"
    b[["start", "open", "high", "low", "close", "volume"]].rename(columns={"start": "ts"}).to_csv(
        csv, index=False
    )
    plain, scaled = tmp_path / "plain", tmp_path / "scaled"
    for out, extra in ((plain, []), (scaled, ["--volume-multiplier", "1000"])):
        res = runner.invoke(app, ["data", "import", str(csv), "--kind", "bars", "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
    synthetic = market_data_from_dataset(MarketDataset.load(synth)).volume
    np.testing.assert_allclose(market_data_from_dataset(MarketDataset.load(plain)).volume * 1000, synthetic)
    np.testing.assert_allclose(market_data_from_dataset(MarketDataset.load(scaled)).volume, synthetic)
    assert volume_multiplier({"source": "synthetic"}) == SYNTHETIC_VOLUME_UNITS
    for bad in (0, -2.0, math.inf, "3", True):
        with pytest.raises(ValueError, match=r"^volume_multiplier: meta\.json"):
            volume_multiplier({"volume_multiplier": bad})
    for bad in ("0", "-1", "nan"):
        res = runner.invoke(app, ["data", "import", str(csv), "--kind", "bars", "--out", str(tmp_path / "x"),
                                  "--volume-multiplier", bad])  # fmt: skip
        assert res.exit_code == 2 and "--volume-multiplier" in res.output, res.output
