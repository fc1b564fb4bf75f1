"""The drift job's configuration (``monitoring/drift.yaml``): windows, thresholds, webhooks, metrics.

Validated with pydantic; an unknown key or a bad value fails at load time with the file and the field
(``drift.yaml: thresholds.quantile: Input should be less than 1``). docs/monitoring.md explains every
threshold and how its default was measured.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DATASETS: tuple[str, ...] = ("tactical", "structure", "regime", "predictions")
"""What the job compares: the three agents' input matrices (one row per bar of their clock) and the
agents' outputs (one row per decision)."""

WEBHOOK_URLS_ENV = "MARLOPS_WEBHOOK_URLS"
WEBHOOK_SECRET_ENV = "MARLOPS_WEBHOOK_SECRET"
PUSHGATEWAY_ENV = "MARLOPS_PUSHGATEWAY"
DEFAULT_CONFIG = Path("monitoring") / "drift.yaml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


class ConfigError(ValueError):
    """The drift configuration is missing or invalid; the message names the file and the field."""


def parse_duration(value: str | float | int | timedelta) -> timedelta:
    """``"2d"``, ``"12h"``, ``"30m"``, ``"90s"``, ``"1w"`` or seconds → timedelta (> 0)."""
    if isinstance(value, timedelta):
        td = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        td = timedelta(seconds=float(value))
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        td = timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    else:
        raise ValueError(f"expected a duration such as '2d', '12h', '30m' or seconds, got {value!r}")
    if td <= timedelta(0):
        raise ValueError(f"must be > 0, got {value!r}")
    return td


def parse_time(value: str | datetime | int) -> datetime:
    """ISO-8601 (naive = UTC), a datetime, or int ns since the epoch → aware UTC datetime."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1e9, tz=UTC)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as e:
            raise ValueError(f"expected an ISO-8601 time such as 2025-03-01T00:00:00Z, got {value!r}") from e
    else:
        raise ValueError(f"expected an ISO-8601 time, got {value!r}")
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
    """Which rows of a source to use: ``[start, end]``, or the ``last`` span before ``end`` (or before
    the source's newest row). Nothing set: every row."""

    start: datetime | None = None
    end: datetime | None = None
    last: timedelta | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, v: object) -> object:
        return None if v is None else parse_time(v)  # type: ignore[arg-type]

    @field_validator("last", mode="before")
    @classmethod
    def _duration(cls, v: object) -> object:
        return None if v is None else parse_duration(v)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _consistent(self) -> Window:
        if self.start is not None and self.last is not None:
            raise ValueError("give either start or last, not both")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be before end ({self.end})")
        return self


Unit = Annotated[float, Field(gt=0, le=1)]


class Thresholds(_Strict):
    """How a column and a dataset are judged (docs/monitoring.md, "Thresholds")."""

    num_method: str = "wasserstein"
    """Evidently stattest for numerical columns (Wasserstein distance normed by the reference std)."""
    cat_method: str = "jensenshannon"
    """Evidently stattest for categorical columns (Jensen-Shannon distance of the category shares)."""
    num_floor: Annotated[float, Field(gt=0)] = 0.1
    """A numerical column never drifts below this score (Evidently's default threshold)."""
    cat_floor: Annotated[float, Field(gt=0)] = 0.1
    """A categorical column never drifts below this score (Evidently's default threshold)."""
    calibrate: bool = True
    """Raise each column's threshold to what the reference itself shows between windows as long as
    the current one (market features are autocorrelated: a week of one regime is not drift)."""
    quantile: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    """Which quantile of the reference's own window-to-window scores is the calibrated threshold."""
    margin: Annotated[float, Field(ge=1)] = 1.25
    """The calibrated threshold is the quantile times this margin."""
    windows: Annotated[int, Field(ge=4, le=200)] = 24
    """How many reference windows (evenly spaced, overlapping if need be) calibrate a column."""
    drift_share: Unit = 0.5
    """A dataset drifts when at least this share of its columns drift (Evidently's DriftedColumnsCount)."""
    per_column: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    """Fixed thresholds for named columns (``regime.vol_level: 0.8``); these skip the calibration."""


class WebhookSettings(_Strict):
    urls: list[str] = Field(default_factory=list)
    """Where alerts go; ``slack:``/``alertmanager:``/``generic:`` before a URL picks the format
    (default generic; hooks.slack.com URLs are Slack). $MARLOPS_WEBHOOK_URLS (comma separated) adds."""
    timeout_s: Annotated[float, Field(gt=0)] = 5.0
    attempts: Annotated[int, Field(ge=1, le=10)] = 4
    backoff_s: Annotated[float, Field(ge=0)] = 0.5
    """First retry after this, doubling (with jitter) up to ``max_backoff_s``."""
    max_backoff_s: Annotated[float, Field(ge=0)] = 8.0


class MetricsSettings(_Strict):
    textfile: bool = True
    """Write ``drift.prom`` (Prometheus text format) beside the summary (node-exporter textfile)."""
    pushgateway: str | None = None
    """Push the drift metrics to this Pushgateway (also $MARLOPS_PUSHGATEWAY)."""
    job: str = "marlops-drift"


class DriftConfig(_Strict):
    instrument: str = "SYNTH"
    """The Feast entity, when a source is a feature store folder."""
    reference: Window = Window()
    """The reference window (the training window). When reference and current are the same source
    and no end is set, the reference ends where the current window starts."""
    current: Window = Window(last=timedelta(days=2))
    datasets: list[Literal["tactical", "structure", "regime", "predictions"]] = list(DATASETS)
    min_rows: Annotated[int, Field(ge=5)] = 30
    """A dataset with fewer rows than this in either window is skipped (and says so)."""
    key_columns: list[str] = Field(default_factory=lambda: ["regime.vol_level", "predictions.regime"])
    """Columns whose drift alone means drift (measured: the agents' inputs are normalized by trailing
    volatility, so a volatility shift shows mainly in regime.vol_level and in the regime mix)."""
    thresholds: Thresholds = Thresholds()
    webhooks: WebhookSettings = WebhookSettings()
    metrics: MetricsSettings = MetricsSettings()

    @field_validator("datasets")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"must be distinct names among {DATASETS}, got {v}")
        return v

    @field_validator("key_columns")
    @classmethod
    def _qualified(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c.split(".", 1)[0] not in DATASETS or "." not in c]
        if bad:
            raise ValueError(f"columns are '<dataset>.<column>' with a dataset among {DATASETS}: {bad}")
        return v

    def webhook_urls(self) -> list[str]:
        """Configured URLs plus $MARLOPS_WEBHOOK_URLS (comma separated), without duplicates."""
        env = [u.strip() for u in os.environ.get(WEBHOOK_URLS_ENV, "").split(",") if u.strip()]
        return list(dict.fromkeys([*self.webhooks.urls, *env]))

    def pushgateway(self) -> str | None:
        return self.metrics.pushgateway or os.environ.get(PUSHGATEWAY_ENV) or None


def _field_path(loc: tuple[object, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def load_config(path: str | os.PathLike[str] | None = None, **overrides: object) -> DriftConfig:
    """Read a drift config (``path``; None: the defaults, or monitoring/drift.yaml if it exists here).

    ``overrides`` replace top-level keys (the CLI's flags). Errors name the file and the field.
    """
    p = Path(path) if path is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    raw: dict[str, object] = {}
    name = str(p) if p else "defaults"
    if p is not None:
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level, got {type(loaded).__name__}")
        raw = dict(loaded or {})
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return DriftConfig.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ConfigError(f"{name}: {_field_path(first['loc'])}: {first['msg']}{more}") from e
