"""HMAC-SHA256 signatures of alert webhooks (sender and receiver agree on this module only).

A signed request carries two headers:

- ``X-Marlops-Timestamp``: Unix time in whole seconds when the request was signed;
- ``X-Marlops-Signature``: ``sha256=<hex of HMAC-SHA256(key, timestamp + "." + body)>``.

The timestamp is inside the MAC, so a captured request cannot be re-dated; the receiver accepts it only
within a window around its clock and only once (replays inside the window are caught by remembering
signatures). The key comes from ``$MARLOPS_WEBHOOK_SECRET`` or the file ``$MARLOPS_WEBHOOK_SECRET_FILE``
(:mod:`marlops.secret_files`; the chart mounts it) and is held as a pydantic ``SecretStr`` so that it never
shows in a repr, a log line or an error.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from pydantic import SecretStr

from marlops.monitoring.config import WEBHOOK_SECRET_ENV
from marlops.secret_files import SecretSettingError, read_secret

TIMESTAMP_HEADER = "X-Marlops-Timestamp"
SIGNATURE_HEADER = "X-Marlops-Signature"
SCHEME = "sha256="
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(ValueError):
    """A request is unsigned, tampered with or outside the timestamp window (HTTP 401)."""


def secret_from_env(required: bool = True) -> SecretStr | None:
    """The HMAC key from $MARLOPS_WEBHOOK_SECRET or the file $MARLOPS_WEBHOOK_SECRET_FILE (never printed);
    error if ``required`` and neither is set, or if the file cannot be read."""
    try:
        secret = read_secret(WEBHOOK_SECRET_ENV, required=required)
    except SecretSettingError as e:
        raise SignatureError(f"{e}: alerts are never sent or accepted unsigned") from None
    return secret


def _key(secret: SecretStr | str | bytes) -> bytes:
    raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    key = raw.encode() if isinstance(raw, str) else raw
    if not key:
        raise SignatureError("the webhook secret is empty")
    return key


def signature(secret: SecretStr | str | bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over ``timestamp + "." + body``."""
    mac = hmac.new(_key(secret), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def sign(secret: SecretStr | str | bytes, body: bytes, now: float | None = None) -> dict[str, str]:
    """The two headers that sign ``body`` now."""
    ts = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: signature(secret, ts, body)}


def verify(
    secret: SecretStr | str | bytes,
    timestamp: str | None,
    sig: str | None,
    body: bytes,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a request's headers; returns its timestamp (s) or raises :class:`SignatureError`."""
    if not timestamp or not sig:
        missing = [h for h, v in ((TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, sig)) if not v]
        raise SignatureError(f"unsigned request: missing header(s) {', '.join(missing)}")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError(f"{TIMESTAMP_HEADER}: expected Unix seconds, got {timestamp[:20]!r}")
    ts = int(timestamp)
    t_now = time.time() if now is None else now
    if abs(t_now - ts) > tolerance_s:
        raise SignatureError(
            f"{TIMESTAMP_HEADER}: {ts} is {t_now - ts:+.0f} s from the receiver's clock "
            f"(window ±{tolerance_s:g} s)"
        )
    if not sig.startswith(SCHEME):
        raise SignatureError(f"{SIGNATURE_HEADER}: expected '{SCHEME}<hex>'")
    if not hmac.compare_digest(sig.encode(), signature(secret, timestamp, body).encode()):
        raise SignatureError("signature mismatch: the body or timestamp was changed, or the key differs")
    return ts
