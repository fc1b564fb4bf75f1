"""Who may post alerts to the retrain trigger: three schemes, each on when its settings are given.

- **hmac** (the project's drift job): ``X-Marlops-Timestamp`` + ``X-Marlops-Signature`` over the body
  (:mod:`marlops.monitoring.signing`), key ``$MARLOPS_WEBHOOK_SECRET[_FILE]``; the receiver adds replay
  protection (a signature is accepted once).
- **bearer** (a stock Alertmanager, ``http_config.authorization.credentials_file``):
  ``Authorization: Bearer <token>``, token ``$MARLOPS_WEBHOOK_BEARER_TOKEN[_FILE]``.
- **basic** (Alertmanager's ``http_config.basic_auth``): ``Authorization: Basic …``, user
  ``$MARLOPS_WEBHOOK_BASIC_USER[_FILE]`` and password ``$MARLOPS_WEBHOOK_BASIC_PASSWORD[_FILE]``.

A request is checked by the scheme its headers use (the signature headers win over ``Authorization``);
credentials are compared with :func:`hmac.compare_digest` (constant time), and no error echoes what was
sent. Alertmanager cannot sign a body, so bearer/basic carry no replay protection: the receiver's
de-duplication (groupKey + fingerprint + startsAt) makes a replayed notification start nothing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from pydantic import SecretStr

from marlops.monitoring.config import WEBHOOK_SECRET_ENV
from marlops.monitoring.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from marlops.secret_files import read_secret

BEARER_TOKEN_ENV = "MARLOPS_WEBHOOK_BEARER_TOKEN"
BASIC_USER_ENV = "MARLOPS_WEBHOOK_BASIC_USER"
BASIC_PASSWORD_ENV = "MARLOPS_WEBHOOK_BASIC_PASSWORD"
SETTINGS = {
    "hmac": f"${WEBHOOK_SECRET_ENV} or ${WEBHOOK_SECRET_ENV}_FILE",
    "bearer": f"${BEARER_TOKEN_ENV} or ${BEARER_TOKEN_ENV}_FILE",
    "basic": f"${BASIC_USER_ENV} and ${BASIC_PASSWORD_ENV} (or ${BASIC_PASSWORD_ENV}_FILE)",
}
"""What turns each scheme on (shown in errors and the CLI's help)."""


class AuthError(ValueError):
    """A request's credentials are missing or wrong (HTTP 401); the message names the scheme (if any)."""

    def __init__(self, scheme: str | None, message: str) -> None:
        super().__init__(message if scheme is None else f"{scheme}: {message}")
        self.scheme = scheme


@dataclass(frozen=True)
class Credentials:
    """The receiver's accepted credentials; a scheme is on when its values are set."""

    hmac_secret: SecretStr | None = None
    bearer_token: SecretStr | None = None
    basic_user: SecretStr | None = None
    basic_password: SecretStr | None = None

    def __post_init__(self) -> None:
        for name, value in (
            (WEBHOOK_SECRET_ENV, self.hmac_secret),
            (BEARER_TOKEN_ENV, self.bearer_token),
            (BASIC_USER_ENV, self.basic_user),
            (BASIC_PASSWORD_ENV, self.basic_password),
        ):
            if value is not None and not value.get_secret_value():
                raise ValueError(f"${name} is empty")
        if (self.basic_user is None) != (self.basic_password is None):
            raise ValueError(f"basic auth needs both ${BASIC_USER_ENV} and ${BASIC_PASSWORD_ENV}[_FILE]")
        if not self.schemes:
            raise ValueError(
                "no authentication configured: set " + "; ".join(f"{s}: {how}" for s, how in SETTINGS.items())
            )

    @property
    def schemes(self) -> tuple[str, ...]:
        on = (self.hmac_secret, self.bearer_token, self.basic_password)
        return tuple(s for s, v in zip(SETTINGS, on, strict=True) if v is not None)

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> Credentials:
        """Each setting from ``$NAME`` or the file ``$NAME_FILE`` (:mod:`marlops.secret_files`); raises
        ``SecretSettingError`` / ``ValueError`` naming the variable."""
        return cls(
            *(
                read_secret(n, environ=environ)
                for n in (WEBHOOK_SECRET_ENV, BEARER_TOKEN_ENV, BASIC_USER_ENV, BASIC_PASSWORD_ENV)
            )
        )


@dataclass(frozen=True)
class Authenticated:
    scheme: str
    signature: str | None = None
    """hmac: the request's signature and timestamp, for the receiver's replay check."""
    timestamp: int | None = None


def _same(given: str, expected: SecretStr) -> bool:
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


def _off(scheme: str) -> AuthError:
    return AuthError(scheme, f"not accepted by this receiver (set {SETTINGS[scheme]} to enable it)")


def authenticate(
    creds: Credentials, headers: Mapping[str, str], body: bytes, now: float, tolerance_s: float
) -> Authenticated:
    """Check a request's credentials by the scheme its headers use; raises :class:`AuthError`."""
    ts, sig = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
    if ts or sig:
        if creds.hmac_secret is None:
            raise _off("hmac")
        try:
            t = verify(creds.hmac_secret, ts, sig, body, now=now, tolerance_s=tolerance_s)
        except SignatureError as e:
            raise AuthError("hmac", str(e)) from None
        return Authenticated("hmac", sig, t)
    authz = headers.get("authorization")
    if not authz:
        raise AuthError(
            None,
            f"unauthenticated request: no {TIMESTAMP_HEADER}/{SIGNATURE_HEADER} headers and no Authorization "
            f"header (this receiver accepts: {', '.join(creds.schemes)})",
        )
    kind, _, value = authz.strip().partition(" ")
    value = value.strip()
    if kind.lower() == "bearer":
        if creds.bearer_token is None:
            raise _off("bearer")
        if not value or not _same(value, creds.bearer_token):
            raise AuthError("bearer", "wrong or empty token")
        return Authenticated("bearer")
    if kind.lower() == "basic":
        if creds.basic_user is None or creds.basic_password is None:
            raise _off("basic")
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise AuthError("basic", "malformed credentials (expected base64 of 'user:password')")
        # both compared, always: which of the two was wrong must not show in the timing
        ok_user, ok_password = _same(user, creds.basic_user), _same(password, creds.basic_password)
        if not (ok_user and ok_password):
            raise AuthError("basic", "wrong user name or password")
        return Authenticated("basic")
    # the first word is not echoed: without a scheme word it would be the credential itself
    raise AuthError("authorization", "unsupported scheme (expected 'Bearer <token>' or 'Basic <base64>')")
