"""The monitoring commands: ``marlops drift`` and ``marlops webhook serve`` (registered by marlops.cli).

Cheap to import: Evidently, FastAPI and uvicorn load inside the commands.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from marlops.console import console, err_console
from marlops.monitoring.config import ConfigError, load_config

EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


def drift_cmd(
    reference: Annotated[
        Path,
        typer.Option(
            help="Reference rows: a Feast feature store folder (the training window, offline store), "
            "a market dataset folder, a request log (folder of requests-*.jsonl or one file), "
            "or a Parquet/CSV table."
        ),
    ],
    current: Annotated[
        Path, typer.Option(help="Current rows, same kinds as --reference (usually the serving request log).")
    ],
    out: Annotated[
        Path, typer.Option(help="Folder for summary.json, index.html, the Evidently reports.")
    ] = Path("runs/drift"),
    config: Annotated[
        Path | None,
        typer.Option(help="Drift config (default: monitoring/drift.yaml if present, else defaults)."),
    ] = None,
    webhook: Annotated[
        list[str] | None,
        typer.Option(
            help="Alert this URL on drift (repeatable; 'slack:' or 'alertmanager:' before the URL picks the "
            "format). Replaces the config's URLs; $MARLOPS_WEBHOOK_URLS adds to either."
        ),
    ] = None,
    current_last: Annotated[
        str | None, typer.Option(help="Current window: the last span of --current, e.g. 1d, 12h (config).")
    ] = None,
    instrument: Annotated[str | None, typer.Option(help="Instrument (Feast entity / request log).")] = None,
    pushgateway: Annotated[
        str | None, typer.Option(help="Push the drift metrics to this Pushgateway.")
    ] = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift/--no-fail-on-drift", help="Exit 1 on drift (the CronJob: no).")
    ] = True,
) -> None:
    """Compare the current window of the agents' inputs and outputs with the reference (Evidently), write
    the reports and metrics, and alert the webhooks on drift. Exit 0: no drift; 1: drift (only with
    --fail-on-drift, the default); 2: bad input or a failed alert delivery."""
    from marlops.monitoring.job import run_drift_job
    from marlops.monitoring.signing import SignatureError
    from marlops.monitoring.sources import SourceError

    try:
        cfg = load_config(config, instrument=instrument)
        if current_last is not None:
            cfg = cfg.model_copy(update={"current": cfg.current.model_validate({"last": current_last})})
        urls = None
        if webhook:
            env = [u.strip() for u in os.environ.get("MARLOPS_WEBHOOK_URLS", "").split(",") if u.strip()]
            urls = list(dict.fromkeys([*webhook, *env]))
        with console.status("drift: loading both windows and running Evidently"):
            job = run_drift_job(reference, current, out, cfg, webhook_urls=urls, pushgateway=pushgateway)
    except (ConfigError, SourceError, SignatureError, ValueError) as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(EXIT_ERROR) from None
    r = job.result
    table = Table(title=f"drift: {r.verdict}", show_header=True)
    for col in ("dataset", "state", "drifted columns", "rows ref / cur", "highest score / threshold"):
        table.add_column(col)
    for d in r.datasets:
        top = max(d.columns, key=lambda c: c.score / c.threshold, default=None)
        table.add_row(
            d.name,
            f"skipped: {d.skipped}" if d.skipped else ("[red]DRIFT[/red]" if d.drifted else "ok"),
            f"{d.drifted_columns}/{len(d.columns)} (share {d.share:.2f}, drifts at {d.drift_share:g})",
            f"{d.rows_reference} / {d.rows_current}",
            f"{top.column} {top.score:.3f} / {top.threshold:.3f}" if top else "",
        )
    console.print(table)
    for dl in r.deliveries:
        state = "[green]delivered[/green]" if dl["ok"] else f"[red]failed[/red] ({dl['error']})"
        console.print(f"alert → {dl['target']} ({dl['format']}): {state} after {dl['attempts']} attempt(s)")
    console.print(f"reports: {(Path(out) / 'index.html')} · summary: {job.summary}")
    if job.delivery_failed:
        err_console.print("[red]error:[/red] an alert or the metrics push could not be delivered")
        raise typer.Exit(EXIT_ERROR)
    if r.drift and fail_on_drift:
        raise typer.Exit(EXIT_DRIFT)


TriggerFactory = Callable[[str | None, dict[str, str]], Callable[[Any], Any]]


def webhook_app(trigger_factory: TriggerFactory) -> typer.Typer:
    """The ``webhook`` command group; ``trigger_factory(kfp_host, params)`` returns the retraining
    trigger (a callable taking the alert)."""
    app = typer.Typer(
        help="The retrain trigger: receive drift alerts (signed, or from Alertmanager), start retraining.",
        no_args_is_help=True,
    )

    @app.command("serve")
    def serve_cmd(
        host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",
        port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 8080,
        kfp_host: Annotated[
            str | None,
            typer.Option(help="Kubeflow Pipelines host (cluster mode); default: kfp.local on this machine."),
        ] = None,
        cooldown: Annotated[
            float, typer.Option(min=0, help="Seconds after a retraining during which alerts start none.")
        ] = 3600.0,
        state: Annotated[Path, typer.Option(help="State folder (sqlite): replays, alert ids, runs.")] = Path(
            "data/webhook"
        ),
        tolerance: Annotated[
            float, typer.Option(min=1, help="Accepted clock skew of a signed alert, s.")
        ] = 300.0,
        max_body: Annotated[int, typer.Option(min=256, help="Largest accepted body, bytes.")] = 64 * 1024,
        rate_limit: Annotated[int, typer.Option(min=1, help="Requests per minute over all callers.")] = 30,
        param: Annotated[
            list[str] | None,
            typer.Option("--param", "-p", help="Retraining pipeline parameter KEY=VALUE (repeatable)."),
        ] = None,
    ) -> None:
        """Serve POST /alerts (the drift job's alerts, Alertmanager's notifications), GET /runs, /healthz,
        /metrics.

        Authentication, at least one scheme on (NAME_FILE: a file holding the value):

        hmac (the drift job's signature): $MARLOPS_WEBHOOK_SECRET[_FILE]

        bearer (Alertmanager's authorization): $MARLOPS_WEBHOOK_BEARER_TOKEN[_FILE]

        basic (Alertmanager's basic_auth): $MARLOPS_WEBHOOK_BASIC_USER, $MARLOPS_WEBHOOK_BASIC_PASSWORD[_FILE]
        """
        from marlops.monitoring.auth import Credentials
        from marlops.monitoring.receiver import ReceiverSettings, serve

        logging.getLogger("marlops").setLevel(logging.INFO)
        try:
            credentials = Credentials.from_env()
        except ValueError as e:  # SecretSettingError too: both name the variable, never the value
            err_console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(EXIT_ERROR) from None
        params: dict[str, str] = {}
        for kv in param or []:
            key, sep, value = kv.partition("=")
            if not sep or not key:
                err_console.print(f"[red]error:[/red] --param {kv!r}: expected KEY=VALUE")
                raise typer.Exit(EXIT_ERROR)
            params[key] = value
        settings = ReceiverSettings(
            credentials=credentials, state_dir=state, cooldown_s=cooldown, tolerance_s=tolerance,
            max_body_bytes=max_body, rate_limit=rate_limit,
        )  # fmt: skip
        mode = f"Kubeflow at {kfp_host}" if kfp_host else "kfp.local"
        console.print(
            f"retrain trigger on http://{host}:{port}/alerts → retraining via {mode}; "
            f"auth: {', '.join(credentials.schemes)}; state {state}"
        )
        serve(settings, trigger_factory(kfp_host, params), host=host, port=port)

    return app
