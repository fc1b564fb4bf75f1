"""monitoring/: the PrometheusRule against the Prometheus Operator CRD schema (and promtool where installed),
the Alertmanager snippet (amtool where installed), the Grafana dashboard, and that they only use the
metrics and alert names the serving and drift contracts name. promtool and amtool are Debian's
``prometheus`` and ``prometheus-alertmanager``; with ``MARLOPS_REQUIRE_ALERTMANAGER=1`` (.ci/run) a missing
one fails the test instead of skipping it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO.parent / "shared" / "crds"
RULES = REPO / "monitoring" / "alerts.yaml"
DASHBOARD = REPO / "monitoring" / "grafana-dashboard.json"
ALERTMANAGER = REPO / "monitoring" / "alertmanager.yaml"


def _tool(name: str) -> str:
    """The tool's path; skip without it, unless CI requires it (then fail)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("MARLOPS_REQUIRE_ALERTMANAGER") == "1":
            pytest.fail(f"MARLOPS_REQUIRE_ALERTMANAGER=1 but {name} is not on PATH", pytrace=False)
        pytest.skip(f"{name} not installed (Debian: prometheus / prometheus-alertmanager)")
    return path


# The contract's metric names (docs/monitoring.md): serving side, drift job, retrain trigger.
CONTRACT = {
    "marlops_decision_latency_seconds",
    "marlops_agent_latency_seconds",
    "marlops_risk_overrides_total",
    "marlops_fail_closed_total",
    "marlops_model_info",
    "marlops_model_loaded_timestamp_seconds",
    "marlops_drift_share",
    "marlops_drift_score",
    "marlops_drift_threshold",
    "marlops_drift_detected",
    "marlops_drift_last_run_timestamp_seconds",
    "marlops_webhook_requests_total",
    "marlops_retrain_triggers_total",
}
_METRIC = re.compile(r"\bmarlops_[a-z_]+")


def _base(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name.removesuffix(suffix) in CONTRACT:
            return name.removesuffix(suffix)
    return name


def _exprs(obj: object) -> list[str]:
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == "expr" and isinstance(v, str)] + [
            e for v in obj.values() for e in _exprs(v)
        ]
    if isinstance(obj, list):
        return [e for v in obj for e in _exprs(v)]
    return []


def test_prometheus_rule_matches_the_crd_schema() -> None:
    crd = yaml.safe_load((CRDS / "monitoring.coreos.com_prometheusrules.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    rule = yaml.safe_load(RULES.read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", crd["spec"]["names"]["kind"])
    # no check_schema: the CRD's patterns are Go regexps ('^(?i)…'), which Python's re rejects; the
    # patterns this rule's values meet (durations) are plain
    validator = jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])
    assert [e.message for e in validator.iter_errors(rule)] == []
    broken = json.loads(json.dumps(rule))
    broken["spec"]["groups"][0]["rules"][3]["for"] = "ten minutes"  # the CRD's duration pattern
    broken["spec"]["groups"][1]["rules"][0]["labels"] = ["severity"]
    errors = sorted(e.message for e in validator.iter_errors(broken))
    assert (
        len(errors) == 2
        and "'ten minutes' does not match" in errors[0]
        and "is not of type 'object'" in errors[1]
    )


def test_rules_cover_the_issue_and_use_contract_metrics() -> None:
    rule = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    # latency, override rate, drift, stale models (the issue), plus the job and trigger themselves
    names = ("MarlopsDecisionLatencyHigh", "MarlopsAgentLatencyHigh", "MarlopsRiskOverrideRateHigh")
    names += ("MarlopsDataDrift", "MarlopsModelStale", "MarlopsDriftJobStale", "MarlopsFailingClosed")
    for name in names:
        assert name in alerts and alerts[name]["labels"]["severity"]
    used = {_base(m) for e in _exprs(rule) for m in _METRIC.findall(e)}
    assert used <= CONTRACT, used - CONTRACT
    records = {r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    assert all(re.fullmatch(r"[a-z_]+:[a-z_0-9]+:[a-z_0-9]+", r) for r in records)


def test_promtool_checks_and_unit_tests_the_rules(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    groups = {"groups": yaml.safe_load(RULES.read_text())["spec"]["groups"]}
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(groups))
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    ann = {r["alert"]: r["annotations"] for g in groups["groups"] for r in g["rules"] if "alert" in r}
    fired = {"severity": "warning", "service": "marlops"}
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {  # the drift job said drift; the run before said no drift
                "interval": "1m",
                "input_series": [
                    {"series": 'marlops_drift_detected{dataset="all"}', "values": "0 1 1 1"},
                    {"series": "marlops_drift_last_run_timestamp_seconds", "values": "0 60 120 180"},
                ],
                "alert_rule_test": [
                    {"eval_time": "0m", "alertname": "MarlopsDataDrift", "exp_alerts": []},
                    {
                        "eval_time": "2m",
                        "alertname": "MarlopsDataDrift",
                        "exp_alerts": [{"exp_labels": fired, "exp_annotations": ann["MarlopsDataDrift"]}],
                    },
                ],
            },
            {  # 60 % of decisions overridden for 20 minutes
                "interval": "1m",
                "input_series": [
                    {"series": 'marlops_risk_overrides_total{kind="block_entry"}', "values": "0+6x40"},
                    {"series": 'marlops_decision_latency_seconds_count{clock="tick"}', "values": "0+10x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "MarlopsRiskOverrideRateHigh", "exp_alerts": []},
                    {
                        "eval_time": "35m",
                        "alertname": "MarlopsRiskOverrideRateHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": fired,
                                "exp_annotations": {
                                    **ann["MarlopsRiskOverrideRateHigh"],
                                    "summary": "The risk agent overrides 60% of decisions",
                                },
                            }
                        ],
                    },
                ],
            },
            {  # the drift job stopped pushing three days ago
                "interval": "1m",
                "input_series": [{"series": "marlops_drift_last_run_timestamp_seconds", "values": "0x4400"}],
                "alert_rule_test": [
                    {"eval_time": "24h", "alertname": "MarlopsDriftJobStale", "exp_alerts": []},
                    {
                        "eval_time": "72h",
                        "alertname": "MarlopsDriftJobStale",
                        "exp_alerts": [
                            {
                                "exp_labels": fired,
                                "exp_annotations": {
                                    **ann["MarlopsDriftJobStale"],
                                    "summary": "The drift job last ran 3d 0h 0m 0s ago",
                                },
                            }
                        ],
                    },
                ],
            },
        ],
    }
    spec = tmp_path / "tests.yml"
    spec.write_text(yaml.safe_dump(tests))
    run = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_alertmanager_snippet_routes_the_drift_rules_to_the_trigger(tmp_path: Path) -> None:
    from marlops.monitoring.alerts import DRIFT_RULES

    rule = yaml.safe_load(RULES.read_text())
    drift_group = next(g for g in rule["spec"]["groups"] if g["name"] == "marlops.drift")
    assert set(DRIFT_RULES) <= {r.get("alert") for r in drift_group["rules"]}
    cfg = yaml.safe_load(ALERTMANAGER.read_text())
    (route,) = [r for r in cfg["route"]["routes"] if r["receiver"] == "marlops-retrain"]
    assert route["matchers"] == [f'alertname=~"{"|".join(DRIFT_RULES)}"'] and route["continue"] is True
    (hook,) = next(r for r in cfg["receivers"] if r["name"] == "marlops-retrain")["webhook_configs"]
    assert hook["send_resolved"] is True and hook["url"].endswith(":8080/alerts")
    assert hook["http_config"]["authorization"]["credentials_file"].startswith("/etc/alertmanager/secrets/")
    amtool = _tool("amtool")
    check = subprocess.run([amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    broken = tmp_path / "broken.yaml"  # amtool does check: a route to a receiver that does not exist
    broken.write_text(ALERTMANAGER.read_text().replace("- receiver: marlops-retrain", "- receiver: nobody"))
    check = subprocess.run([amtool, "check-config", str(broken)], capture_output=True, text=True)
    assert check.returncode != 0 and "nobody" in check.stdout + check.stderr


def test_grafana_dashboard() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "marlops-overview" and dash["schemaVersion"] >= 36
    assert dash["templating"]["list"][0] == {
        **dash["templating"]["list"][0],
        "type": "datasource",
        "query": "prometheus",
    }
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
    used = {_base(m) for e in _exprs(dash) for m in _METRIC.findall(e)}
    assert used <= CONTRACT, used - CONTRACT
    # every serving and drift metric of the contract has a panel
    assert {
        "marlops_decision_latency_seconds", "marlops_agent_latency_seconds", "marlops_risk_overrides_total",
        "marlops_fail_closed_total", "marlops_model_info", "marlops_model_loaded_timestamp_seconds",
        "marlops_drift_share", "marlops_drift_score", "marlops_drift_detected",
        "marlops_drift_last_run_timestamp_seconds",
    } <= used  # fmt: skip
