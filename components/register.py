from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model

from marlops.pipeline.images import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    evaluation: Input[Artifact],
    lineage: str,
    trigger: str,
    tracking_uri: str,
    promote: str,
    gate: str,
) -> NamedTuple("Registered", [("team", str), ("promoted", bool), ("message", str)]):
    """MLflow: log with lineage (and what triggered the run), register the four agents, promote."""
    import json
    from collections import namedtuple

    from marlops.pipeline import steps

    facts = {**json.loads(lineage or "{}"), "trigger": trigger or None}
    r = steps.register(model.path, evaluation.path, facts, tracking_uri, promote, gate)
    print(json.dumps(r.as_dict(), indent=2))
    return namedtuple("Registered", ["team", "promoted", "message"])(r.team, r.promoted, r.message)
