from typing import NamedTuple

from kfp import dsl

from marlops.pipeline.images import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gpu_placement(gpus: int, node_selector: str, tolerations: str) -> NamedTuple(
    "Placement", [("node_selector", dict), ("tolerations", list)]
):
    """The train pod's nodeSelector and tolerations (from JSON parameters), resolved at run time: the GPU
    pool's when ``gpus`` > 0, none for a CPU run (platform settings cannot branch on a parameter)."""
    from collections import namedtuple

    from marlops.pipeline.platform import gpu_placement as resolve

    selector, tols = resolve(gpus, node_selector, tolerations)
    return namedtuple("Placement", ["node_selector", "tolerations"])(selector, tols)
