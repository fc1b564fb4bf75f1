from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from marlops.pipeline.images import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def build_features(
    days: float,
    seed: int,
    source: str,
    instrument: str,
    feast_dir: str,
    online: str,
    dataset: Output[Dataset],
    metrics: Output[Metrics],
) -> str:
    """Market dataset → Feast sources, apply, materialize. Returns the lineage as JSON."""
    import json

    from marlops.pipeline import steps

    built = steps.build_features(dataset.path, feast_dir, days, seed, source, instrument, online)
    lineage = built.lineage()
    dataset.metadata.update({"data_hash": built.data_hash, "instrument": instrument})
    dataset.metadata["span"] = lineage["data_span"]
    metrics.log_metric("base_bars", built.base_bars)
    return json.dumps(lineage)
