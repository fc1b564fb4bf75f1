"""marlops.secret_files: NAME or NAME_FILE, never both; unreadable files fail naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from marlops.secret_files import SecretSettingError, export_file_settings, read_secret


def test_reads_the_value_or_the_file_without_its_trailing_newline(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("s3cr3t\n")
    assert read_secret("K", environ={"K": "plain"}).get_secret_value() == "plain"
    assert read_secret("K", environ={"K_FILE": str(f)}).get_secret_value() == "s3cr3t"
    assert read_secret("K", environ={}) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"K": "tok-93b1", "K_FILE": "/x"}, "both set"),
        ({"K_FILE": "/nonexistent/key"}, "no such file /nonexistent/key"),
        ({}, "$K (or $K_FILE, a file holding it) is not set"),
    ],
)
def test_errors_name_the_variable_never_the_value(env: dict, message: str) -> None:
    with pytest.raises(SecretSettingError) as e:
        read_secret("K", required=True, environ=env)
    assert message in str(e.value) and "$K" in str(e.value)
    assert "tok-93b1" not in str(e.value)


def test_empty_and_oversized_files_are_refused(tmp_path: Path) -> None:
    empty, big = tmp_path / "empty", tmp_path / "big"
    empty.write_text("\n")
    big.write_bytes(b"x" * (64 * 1024 + 1))
    with pytest.raises(SecretSettingError, match="is empty"):
        read_secret("K", environ={"K_FILE": str(empty)})
    with pytest.raises(SecretSettingError, match="over 65536 bytes"):
        read_secret("K", environ={"K_FILE": str(big)})


def test_export_fills_library_settings_and_skips_absent_optional_keys(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hunter2\n")
    env = {
        "MLFLOW_TRACKING_PASSWORD_FILE": str(tmp_path / "pw"),
        "MLFLOW_TRACKING_TOKEN_FILE": str(tmp_path / "absent"),  # an optional Secret without this key
    }
    assert export_file_settings(environ=env) == ["MLFLOW_TRACKING_PASSWORD"]
    assert env["MLFLOW_TRACKING_PASSWORD"] == "hunter2"
    assert "MLFLOW_TRACKING_TOKEN" not in env
    with pytest.raises(SecretSettingError, match="both set"):
        export_file_settings(
            environ={"AWS_SECRET_ACCESS_KEY": "x", "AWS_SECRET_ACCESS_KEY_FILE": str(tmp_path / "pw")}
        )
    # no file there (a pipeline task run by kfp.local on a laptop): the value in the environment stands
    env = {"AWS_SECRET_ACCESS_KEY": "x", "AWS_SECRET_ACCESS_KEY_FILE": "/var/run/secrets/marlops/nope/K"}
    assert export_file_settings(environ=env) == [] and env["AWS_SECRET_ACCESS_KEY"] == "x"


def test_feast_online_store_url_from_a_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart mounts the Redis URL (with its password) and sets MARLOPS_FEAST_ONLINE_FILE."""
    from marlops.features.repo import online_store_config

    url = tmp_path / "url"
    url.write_text("redis://:pa55@redis.redis:6380/2\n")
    monkeypatch.delenv("MARLOPS_FEAST_ONLINE", raising=False)
    monkeypatch.setenv("MARLOPS_FEAST_ONLINE_FILE", str(url))
    assert online_store_config() == {
        "type": "redis",
        "connection_string": "redis.redis:6380,db=2,password=pa55",
    }
    url.write_text("redis://:pa55@redis.redis:6380/x\n")
    with pytest.raises(ValueError, match="must be a number") as e:
        online_store_config()
    assert "pa55" not in str(e.value)
    monkeypatch.delenv("MARLOPS_FEAST_ONLINE_FILE")
    assert online_store_config()["type"] == "sqlite"
