"""The drift job: config, sources (request log, dataset, table, Feast), Evidently scores and calibrated
thresholds, outputs (reports, summary, chart, metrics), the `marlops drift` command and its exit codes.

Data: the synthetic market for 20 days, then 2 days from another seed, unshifted or with a regime/volatility
shift (vol ×3, volatile segments longer and more frequent), written as request logs in the decision
server's format (marlops.monitoring.scenarios).
"""

from __future__ import annotations

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats
from typer.testing import CliRunner

from marlops.cli import app
from marlops.monitoring.config import ConfigError, DriftConfig, Thresholds, load_config
from marlops.monitoring.drift import DriftResult, calibrate
from marlops.monitoring.job import run_drift_job
from marlops.monitoring.metrics import DRIFT_METRICS, drift_registry
from marlops.monitoring.scenarios import RegimeShift, drift_data, scenario_frames, write_request_log
from marlops.monitoring.sources import FEATURE_COLUMNS, SourceError, load_source, read_request_records

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Request logs: reference (20 days), current unshifted (2 days), current shifted (2 days)."""
    root = tmp_path_factory.mktemp("logs")
    calm = scenario_frames(20, 2, seed=0)
    shifted = scenario_frames(20, 2, seed=0, shift=RegimeShift(vol_mult=3.0))
    write_request_log(calm.window("reference"), root / "reference", seed=1)
    write_request_log(calm.window("current"), root / "calm", seed=2)
    write_request_log(shifted.window("current"), root / "shifted", seed=2)
    return {"reference": root / "reference", "calm": root / "calm", "shifted": root / "shifted", "root": root}


@pytest.fixture(scope="module")
def results(logs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, DriftResult]:
    out = tmp_path_factory.mktemp("out")
    cfg = DriftConfig()
    return {
        name: run_drift_job(logs["reference"], logs[name], out / name, cfg, webhook_urls=[]).result
        for name in ("calm", "shifted")
    }


# ------------------------------------------------------------------------------------------- config


def test_committed_config_is_the_defaults() -> None:
    assert load_config(REPO / "monitoring" / "drift.yaml") == DriftConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("thresholds: {quantile: 1.5}", "thresholds.quantile"),
        ("current: {last: soon}", "current.last"),
        ("datasets: [tactical, prices]", "datasets.1"),
        ("key_columns: [vol_level]", "key_columns"),
        ("threshold: {}", "threshold: Extra inputs"),
        ("current: {start: 2025-01-02T00:00:00Z, last: 1d}", "either start or last"),
        ("- a list", "expected a mapping"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "drift.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(p)


# ------------------------------------------------------------------------------------------ sources


def _write(path: Path, lines: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "requests-20250101.jsonl").write_text("\n".join(lines) + "\n")
    return path


def _record(**over: object) -> dict:
    feats = {c: 0.5 for m in FEATURE_COLUMNS.values() for c in m}
    rec = {
        "ts": "2025-01-01T00:05:00Z", "instrument": "SYNTH", "clock": "5m", "features": feats, "regime": 1,
        "regime_probs": [0, 1, 0, 0], "structure_bias": 0.1, "tactical_action": "hold",
        "risk_action": "allow",
        "overridden": False, "fail_closed": False, "reason": None, "latency_ms": 1.0,
    }  # fmt: skip
    rec.update(over)
    return rec


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"requests-20250101.jsonl:2: field '\(line\)': Invalid JSON"),
        (json.dumps({k: v for k, v in _record().items() if k != "ts"}), r":2: field 'ts': Field required"),
        (json.dumps(_record(features=[1, 2])), r":2: field 'features': Input should be an object"),
        (json.dumps(_record(features={"tactical.foo": 1.0})), r"unknown feature keys \['tactical.foo'\]"),
        (json.dumps(_record(regime=7)), "field 'regime' must be -1 .* or 0..3, got 7"),
        (json.dumps(_record(ts="yesterday")), "yesterday"),
    ],
)
def test_request_log_errors_name_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    d = _write(tmp_path / "log", [json.dumps(_record()), line])
    with pytest.raises(SourceError, match=message):
        load_source(d, DriftConfig())


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    d = _write(tmp_path / "log", [json.dumps(_record()), json.dumps(_record(ts="2025-01-01T00:10:00Z"))])
    f = d / "requests-20250101.jsonl"
    f.write_text(f.read_text() + json.dumps(_record())[:40])  # a server killed mid-write
    assert load_source(d, DriftConfig()).rows()["predictions"] == 2


def test_infinite_features_are_errors_missing_ones_drop_the_row(tmp_path: Path) -> None:
    rec = _record()
    rec["features"] = {**rec["features"], "regime.vol_level": math.inf}
    d = _write(tmp_path / "inf", [json.dumps(rec).replace("Infinity", "1e999")])
    with pytest.raises(SourceError, match=r"column 'regime.vol_level' has 1 infinite value"):
        load_source(d, DriftConfig())
    rec = _record()
    del rec["features"]["tactical.rsi"]
    d = _write(tmp_path / "missing", [json.dumps(rec), json.dumps(_record(ts="2025-01-01T00:10:00Z"))])
    data = load_source(d, DriftConfig())  # the server leaves non-finite values out: that row is dropped
    assert data.rows()["tactical"] == 1 and data.dropped["tactical"] == 1 and data.rows()["regime"] == 1
    table = tmp_path / "t.csv"
    pd.DataFrame({"ts": [1, 2], "tactical.ret": [0.1, 0.2]}).to_csv(table, index=False)
    with pytest.raises(SourceError, match=r"missing feature column\(s\) \['tactical.range'"):
        load_source(table, DriftConfig())


def test_not_a_source(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a drift source"):
        load_source(tmp_path, DriftConfig())
    with pytest.raises(SourceError, match="no such file"):
        load_source(tmp_path / "nope.parquet", DriftConfig())


def test_request_log_rows_are_one_per_bar(logs: dict[str, Path]) -> None:
    records = read_request_records(logs["calm"])
    data = load_source(logs["calm"], DriftConfig())
    # one decision per 5-minute bar, from the first bar after the first 30-minute close of the window
    assert len(records) == data.rows()["predictions"] == data.rows()["tactical"] == 2 * 288 - 5
    # structure/regime rows repeat in every decision until the next 30-minute close: kept once
    assert data.rows()["structure"] == data.rows()["regime"] == 2 * 48
    assert set(data.frames["predictions"]["predictions.regime"]) <= {
        "trending",
        "ranging",
        "volatile",
        "transition",
    }


def test_windows_and_same_source_split(logs: dict[str, Path]) -> None:
    cfg = DriftConfig.model_validate({"current": {"last": "12h"}})
    from marlops.monitoring.job import load_windows

    ref, cur = load_windows(logs["reference"], logs["reference"], cfg)
    assert cur.rows()["tactical"] == 144 and ref.span()[1] < cur.span()[0]  # type: ignore[index]
    assert ref.rows()["tactical"] + 144 == load_source(logs["reference"], cfg).rows()["tactical"]


def test_dataset_and_table_sources_match_the_request_log(tmp_path: Path) -> None:
    sf = scenario_frames(10, 1, seed=3)
    data = drift_data(sf)
    table = tmp_path / "features.parquet"
    sf.base.merge(sf.higher, on="ts", how="left").to_parquet(table)  # dataset naming: tactical_ret, …
    got = load_source(table, DriftConfig.model_validate({"datasets": ["tactical"]}))
    pd.testing.assert_frame_equal(got.frames["tactical"], data.frames["tactical"])


# ----------------------------------------------------------------------------------- drift, verdict


def test_unshifted_window_is_no_drift(results: dict[str, DriftResult]) -> None:
    r = results["calm"]
    assert r.drift is False and r.verdict == "no drift"
    assert [d.skipped for d in r.datasets] == [None] * 4
    assert all(c.score < c.threshold for d in r.datasets for c in d.columns)


def test_shifted_window_is_drift(results: dict[str, DriftResult]) -> None:
    r = results["shifted"]
    assert r.drift is True and r.verdict.startswith("drift:")
    assert "predictions.regime" in r.drifted_key_columns  # the regime mix moved to volatile
    pred = r.dataset("predictions")
    assert pred.drifted and pred.share >= pred.drift_share
    # the shift moved the volatility-level input more than the unshifted window did
    assert r.column("regime.vol_level").score > 1.5 * results["calm"].column("regime.vol_level").score


def test_scores_are_evidentlys_normed_wasserstein(
    logs: dict[str, Path], results: dict[str, DriftResult]
) -> None:
    cfg = DriftConfig()
    ref = load_source(logs["reference"], cfg).frames["tactical"]["tactical.ret"]
    cur = load_source(logs["shifted"], cfg, cfg.current).frames["tactical"]["tactical.ret"]
    expected = stats.wasserstein_distance(ref, cur) / np.std(ref)
    assert results["shifted"].column("tactical.ret").score == pytest.approx(expected, rel=1e-9)


def test_calibrated_thresholds() -> None:
    rng = np.random.default_rng(0)
    # an AR(1) series: windows of it differ far more than i.i.d. samples would
    x = np.zeros(3000)
    for i in range(1, 3000):
        x[i] = 0.98 * x[i - 1] + rng.normal()
    ref = pd.DataFrame({"tactical.ret": x})
    th = Thresholds()
    cal, why = calibrate(ref, {"tactical.ret": "num"}, 200, th)
    thr, src, q = cal["tactical.ret"]
    assert why is None and src == "calibrated" and q is not None
    assert thr == pytest.approx(q * th.margin) and thr > 5 * th.num_floor
    cal, why = calibrate(ref.iloc[:300], {"tactical.ret": "num"}, 200, th)
    assert cal["tactical.ret"] == (th.num_floor, "floor", None) and "shorter than two" in (why or "")
    fixed = th.model_copy(update={"per_column": {"tactical.ret": 0.7}})
    assert calibrate(ref, {"tactical.ret": "num"}, 200, fixed)[0]["tactical.ret"] == (0.7, "fixed", None)


def test_too_few_rows_skip_a_dataset_or_fail(logs: dict[str, Path], tmp_path: Path) -> None:
    cfg = DriftConfig.model_validate({"current": {"last": "1h"}, "min_rows": 10})
    r = run_drift_job(logs["reference"], logs["calm"], tmp_path / "a", cfg, webhook_urls=[]).result
    skipped = {d.name: d.skipped for d in r.datasets}
    assert skipped["tactical"] is None and skipped["predictions"] is None  # 12 five-minute rows
    assert re.fullmatch(r"too few rows \(reference \d+, current 2; min_rows 10\)", skipped["regime"] or "")
    cfg = DriftConfig.model_validate({"current": {"last": "30m"}, "min_rows": 10})
    with pytest.raises(ValueError, match="no dataset could be compared"):
        run_drift_job(logs["reference"], logs["calm"], tmp_path / "b", cfg, webhook_urls=[])


# ----------------------------------------------------------------------------------------- outputs


def test_outputs(logs: dict[str, Path], results: dict[str, DriftResult]) -> None:
    out = next(p for p in logs["root"].parent.glob("out*/shifted"))
    summary = DriftResult.model_validate_json((out / "summary.json").read_text())
    assert summary.run_id == results["shifted"].run_id and summary.drift
    for d in ("tactical", "structure", "regime", "predictions"):
        html = (out / f"drift-{d}.html").read_text()  # Evidently's report, one widget per column
        assert html.lstrip().lower().startswith("<!doctype html") and len(html) > 10_000
        assert all(f'"column_name": "{c.column}"' in html for c in summary.dataset(d).columns)
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "drift-predictions.html" in (out / "index.html").read_text()
    families = {f.name: f for f in text_string_to_metric_families((out / "drift.prom").read_text())}
    assert set(DRIFT_METRICS) <= set(families)
    detected = {s.labels["dataset"]: s.value for s in families["marlops_drift_detected"].samples}
    assert detected["all"] == 1.0 and detected["predictions"] == 1.0
    scores = {s.labels["feature"]: s.value for s in families["marlops_drift_score"].samples}
    assert scores["regime.vol_level"] == pytest.approx(summary.column("regime.vol_level").score)


def test_metrics_push_to_a_pushgateway(results: dict[str, DriftResult]) -> None:
    got: list[tuple[str, str, bytes]] = []

    class Gateway(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            got.append(("PUT", self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            return None

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        from marlops.monitoring.metrics import push

        push(results["calm"], f"http://127.0.0.1:{srv.server_address[1]}", job="marlops-drift")
    finally:
        srv.shutdown()
    assert got[0][:2] == ("PUT", "/metrics/job/marlops-drift")
    names = {f.name for f in text_string_to_metric_families(got[0][2].decode())}
    assert set(DRIFT_METRICS) <= names
    reg = drift_registry(results["calm"])
    assert reg.get_sample_value("marlops_drift_detected", {"dataset": "all"}) == 0.0


# -------------------------------------------------------------------------------------------- CLI


def test_cli_exit_codes(logs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARLOPS_WEBHOOK_URLS", raising=False)
    monkeypatch.delenv("MARLOPS_WEBHOOK_SECRET", raising=False)
    base = [
        "drift",
        "--reference",
        str(logs["reference"]),
        "--config",
        str(REPO / "monitoring" / "drift.yaml"),
    ]
    calm = runner.invoke(app, [*base, "--current", str(logs["calm"]), "--out", str(tmp_path / "c")])
    assert calm.exit_code == 0, calm.output
    assert "no drift" in calm.output
    shifted = [*base, "--current", str(logs["shifted"]), "--out", str(tmp_path / "s")]
    r = runner.invoke(app, shifted)
    assert r.exit_code == 1 and "DRIFT" in r.output
    assert runner.invoke(app, [*shifted, "--no-fail-on-drift"]).exit_code == 0
    bad = runner.invoke(app, [*base, "--current", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "no such file" in bad.output
    unsigned = runner.invoke(app, [*shifted, "--webhook", "http://127.0.0.1:9/alerts"])
    assert unsigned.exit_code == 2
    assert "$MARLOPS_WEBHOOK_SECRET (or $MARLOPS_WEBHOOK_SECRET_FILE, a file holding it) is not set" in (
        unsigned.output
    )
    monkeypatch.setenv("MARLOPS_WEBHOOK_SECRET", "k" * 32)
    monkeypatch.setenv("MARLOPS_WEBHOOK_URLS", "http://127.0.0.1:9/refused")
    undelivered = runner.invoke(app, [*shifted, "--no-fail-on-drift"])
    assert undelivered.exit_code == 2 and "could not be delivered" in undelivered.output
    assert "k" * 32 not in undelivered.output


def test_feast_offline_store_source_equals_the_dataset(tmp_path: Path) -> None:
    """The reference read point-in-time from the Feast offline store holds the dataset's warm rows."""
    from marlops.features import build_features
    from marlops.market.dataset import dataset_from_ticks
    from marlops.market.feed import FeedConfig
    from marlops.market.synthetic import generate_market

    m = generate_market(days=12, seed=5)
    ds = dataset_from_ticks(tmp_path / "ds", m.ticks, FeedConfig(), {"source": "synthetic"}, m.labels)
    build_features(ds, "SYNTH", tmp_path / "feast")
    cfg = DriftConfig.model_validate({"datasets": ["tactical", "regime"]})
    window = DriftConfig.model_validate({"current": {"last": "3d"}}).current
    from_feast = load_source(tmp_path / "feast", cfg, window)
    from_dataset = load_source(tmp_path / "ds", cfg, window)
    assert from_feast.kind == "feast" and from_dataset.kind == "dataset"
    for m_ in ("tactical", "regime"):
        a, b = from_feast.frames[m_], from_dataset.frames[m_]
        assert len(a) == len(b) > 50  # 3 days: 864 five-minute rows, 144 thirty-minute rows
        pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=1e-6)
    with pytest.raises(SourceError, match="no rows for instrument 'OTHER'"):
        load_source(tmp_path / "feast", cfg.model_copy(update={"instrument": "OTHER"}))
