from kfp import dsl
from kfp.dsl import Artifact, Output

from marlops.pipeline.images import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deploy(
    promoted: bool,
    tracking_uri: str,
    namespace: str,
    state_dir: str,
    manifests: Output[Artifact],
) -> str:
    """Render the InferenceServices pinned to the champion's model versions (and, locally, the local
    servers' champion.json). Idempotent: without a promotion the champion, and so the YAML, is unchanged."""
    from marlops.pipeline.deploy import deploy as render

    d = render(manifests.path, tracking_uri, namespace, state_dir=state_dir or None)
    manifests.metadata.update({"team": d.team, "promoted": promoted, **d.uris})
    return d.team or ""
