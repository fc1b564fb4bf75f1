"""Secrets as files: every secret setting ``NAME`` may instead be given as ``NAME_FILE``, a path to read.

In a cluster the chart mounts Secrets read-only (``defaultMode: 0400``) and sets ``NAME_FILE``; environment
variables holding secret values leak through ``/proc/<pid>/environ``, crash dumps and ``kubectl describe``
(checkov CKV_K8S_35). On a laptop ``NAME`` itself is fine. Giving both is an error (which one wins would be
a guess), as is a ``NAME_FILE`` that names a missing, unreadable or empty file. One trailing newline is
stripped (``echo … > file`` and ``kubectl create secret --from-file`` both leave one).

Libraries that read only environment variables (MLflow's ``MLFLOW_TRACKING_PASSWORD``, boto3's
``AWS_SECRET_ACCESS_KEY``) get the file's contents through :func:`export_file_settings`, called once when a
process starts, before those libraries read their settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, MutableMapping
from pathlib import Path

from pydantic import SecretStr

FILE_SUFFIX = "_FILE"
MAX_SECRET_BYTES = 64 * 1024

LIBRARY_SECRETS: tuple[str, ...] = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
"""Settings that libraries read from the environment only; :func:`export_file_settings` fills them from
their ``*_FILE`` twins."""


class SecretSettingError(ValueError):
    """A secret setting is missing, given twice or unreadable; the message names the variable (never the
    value)."""


def _read(name: str, path: str) -> str:
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_SECRET_BYTES + 1)
    except FileNotFoundError:
        raise SecretSettingError(f"${name}{FILE_SUFFIX}: no such file {path}") from None
    except OSError as e:
        raise SecretSettingError(f"${name}{FILE_SUFFIX}: cannot read {path} ({e.strerror})") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise SecretSettingError(f"${name}{FILE_SUFFIX}: {path} is over {MAX_SECRET_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretSettingError(f"${name}{FILE_SUFFIX}: {path} is not UTF-8 text") from None
    text = text[:-1] if text.endswith("\n") else text
    text = text[:-1] if text.endswith("\r") else text
    if not text:
        raise SecretSettingError(f"${name}{FILE_SUFFIX}: {path} is empty")
    return text


def read_secret(
    name: str, *, required: bool = False, environ: MutableMapping[str, str] | None = None
) -> SecretStr | None:
    """``$NAME`` or the contents of the file ``$NAME_FILE``; None when neither is set (an error if
    ``required``)."""
    env = os.environ if environ is None else environ
    value, path = env.get(name, ""), env.get(name + FILE_SUFFIX, "")
    if value and path:
        raise SecretSettingError(f"${name} and ${name}{FILE_SUFFIX} are both set: give one")
    if path:
        return SecretStr(_read(name, path))
    if value:
        return SecretStr(value)
    if required:
        raise SecretSettingError(f"${name} (or ${name}{FILE_SUFFIX}, a file holding it) is not set")
    return None


def export_file_settings(
    names: Iterable[str] = LIBRARY_SECRETS, environ: MutableMapping[str, str] | None = None
) -> list[str]:
    """For each ``NAME`` with ``NAME_FILE`` set, put the file's contents into ``$NAME`` (for libraries
    that read only the environment). A file that is absent is skipped, whatever ``$NAME`` holds: the chart
    mounts optional Secrets, whose keys may not exist, and kfp.local gives a pipeline task the cluster's
    ``NAME_FILE`` paths, where a laptop has no files but may have ``$NAME``. Returns the names set."""
    env = os.environ if environ is None else environ
    done = []
    for name in names:
        path = env.get(name + FILE_SUFFIX, "")
        if not path or not Path(path).exists():
            continue
        if env.get(name):
            raise SecretSettingError(f"${name} and ${name}{FILE_SUFFIX} are both set: give one")
        env[name] = _read(name, path)
        done.append(name)
    return done
