"""Drift (Evidently), signed webhooks, the retrain trigger and metrics (docs/monitoring.md).

- config: the drift job's configuration (monitoring/drift.yaml); sources: request log, Feast, dataset, table
- drift: Evidently reports with calibrated thresholds; job: the whole drift job (``marlops drift``)
- alerts, signing, webhooks: alert formats, HMAC signatures, the sender with retries
- receiver, trigger_state: the retrain trigger (``marlops webhook serve``) and its sqlite state;
  auth: who may post (HMAC, bearer, basic); alertmanager: Alertmanager's webhook notifications
- metrics: the drift job's Prometheus metrics; scenarios, calibrate: synthetic shifts, FP/TP measurement
- commands: the CLI commands (registered by marlops.cli)

Importing this package is cheap: Evidently, FastAPI and Feast load inside the functions that need them.
"""
