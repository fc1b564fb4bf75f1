"""The Feast objects of the feature repo: entity, sources, feature views, feature services.

``feature_repo/definitions.py`` re-exports these for the ``feast`` CLI, and
:func:`marlops.features.repo.apply` registers the same objects in code, so there is one definition.
Source paths are relative to the feature store folder (Feast resolves them against its repo path),
which is why none of this needs to know where the data lives.
"""

from __future__ import annotations

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Bool, Float32, Float64, Int64, String

from marlops.features.schema import (
    AGENT_SERVICES,
    BASE_SOURCE,
    ENTITY,
    EVENT_TIMESTAMP,
    HIGHER_SOURCE,
    ONLINE_SERVICE,
    REGIME_FEATURES,
    REGIME_VIEW,
    ROW_TTL,
    STRUCTURE_FEATURES,
    STRUCTURE_VIEW,
    TACTICAL_FEATURES,
    TACTICAL_VIEW,
    WINDOW_BAR_END,
    WINDOW_HIGHER_END,
    WINDOW_MATRICES,
    WINDOW_SOURCE,
    WINDOW_VIEW,
    bar_end_field,
    matrix_field,
    ready_field,
    source_dir,
    warm_field,
)

TAGS = {"owner": "marlops", "docs": "docs/features.md"}

instrument = Entity(
    name=ENTITY,
    join_keys=[ENTITY],
    value_type=ValueType.STRING,
    description="A traded instrument (one market dataset per instrument).",
)

base_bar_source = FileSource(
    name=BASE_SOURCE,
    path=source_dir(BASE_SOURCE),
    timestamp_field=EVENT_TIMESTAMP,
    description="Tactical feature rows, one per base (5 m) bar, event timestamp = bar end.",
)
higher_bar_source = FileSource(
    name=HIGHER_SOURCE,
    path=source_dir(HIGHER_SOURCE),
    timestamp_field=EVENT_TIMESTAMP,
    description="Structure and regime feature rows, one per higher (30 m) bar, event timestamp = bar end.",
)
window_source = FileSource(
    name=WINDOW_SOURCE,
    path=source_dir(WINDOW_SOURCE),
    timestamp_field=EVENT_TIMESTAMP,
    description="The three agent matrices at the close of the latest base bars, flattened.",
)


def _row_schema(matrix: str, features: tuple[str, ...]) -> list[Field]:
    return [
        Field(name=ENTITY, dtype=String),
        *(Field(name=f, dtype=Float64) for f in features),
        Field(name=warm_field(matrix), dtype=Bool, description="out of the indicators' warm-up"),
        Field(name=bar_end_field(matrix), dtype=Int64, description="bar end, ns since the epoch (UTC)"),
    ]


tactical_features = FeatureView(
    name=TACTICAL_VIEW,
    entities=[instrument],
    ttl=ROW_TTL,
    schema=_row_schema("tactical", TACTICAL_FEATURES),
    source=base_bar_source,
    online=True,
    description="Tactical matrix rows (7 columns) per base bar; the tactical agent reads the last 60.",
    tags=TAGS,
)
structure_features = FeatureView(
    name=STRUCTURE_VIEW,
    entities=[instrument],
    ttl=ROW_TTL,
    schema=_row_schema("structure", STRUCTURE_FEATURES),
    source=higher_bar_source,
    online=True,
    description="Structure matrix rows (8 columns) per higher bar; the structure agent reads the last 48.",
    tags=TAGS,
)
regime_features = FeatureView(
    name=REGIME_VIEW,
    entities=[instrument],
    ttl=ROW_TTL,
    schema=_row_schema("regime", REGIME_FEATURES),
    source=higher_bar_source,
    online=True,
    description="Regime matrix rows (11 columns) per higher bar; the regime agent reads the last 96.",
    tags=TAGS,
)
matrix_windows = FeatureView(
    name=WINDOW_VIEW,
    entities=[instrument],
    ttl=ROW_TTL,
    schema=[
        Field(name=ENTITY, dtype=String),
        Field(name=WINDOW_BAR_END, dtype=Int64, description="base bar end, ns since the epoch (UTC)"),
        Field(name=WINDOW_HIGHER_END, dtype=Int64, description="latest closed higher bar's end (-1: none)"),
        *(
            Field(name=matrix_field(s.name), dtype=Array(Float32), description=f"{s.rows}×{len(s.columns)}")
            for s in WINDOW_MATRICES
        ),
        *(Field(name=ready_field(s.name), dtype=Bool) for s in WINDOW_MATRICES),
    ],
    source=window_source,
    online=True,
    description="The latest matrices per instrument for online serving (flattened, row-major, oldest first).",
    tags=TAGS,
)

FEATURE_VIEWS: dict[str, FeatureView] = {
    v.name: v for v in (tactical_features, structure_features, regime_features, matrix_windows)
}

regime_service = FeatureService(
    name="regime",
    features=[FEATURE_VIEWS[v] for v in AGENT_SERVICES["regime"]],
    description="What the regime agent reads (regime rows).",
    tags=TAGS,
)
structure_service = FeatureService(
    name="structure",
    features=[FEATURE_VIEWS[v] for v in AGENT_SERVICES["structure"]],
    description="What the structure agent reads (structure rows).",
    tags=TAGS,
)
tactical_service = FeatureService(
    name="tactical",
    features=[FEATURE_VIEWS[v] for v in AGENT_SERVICES["tactical"]],
    description="What the tactical agent reads (tactical rows).",
    tags=TAGS,
)
risk_service = FeatureService(
    name="risk",
    features=[FEATURE_VIEWS[v] for v in AGENT_SERVICES["risk"]],
    description="What the risk agent reads (every matrix's rows).",
    tags=TAGS,
)
online_service = FeatureService(
    name=ONLINE_SERVICE,
    features=[matrix_windows],
    description="The latest three matrices per instrument (online serving).",
    tags=TAGS,
)

FEATURE_SERVICES: dict[str, FeatureService] = {
    s.name: s for s in (regime_service, structure_service, tactical_service, risk_service, online_service)
}

OBJECTS: list = [
    instrument,
    base_bar_source,
    higher_bar_source,
    window_source,
    *FEATURE_VIEWS.values(),
    *FEATURE_SERVICES.values(),
]
