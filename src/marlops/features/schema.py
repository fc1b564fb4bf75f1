"""Names and layout of the Feast feature repo, without importing Feast (importing it takes seconds).

Everything the Feast definitions (:mod:`marlops.features.definitions`) and the source writer
(:mod:`marlops.features.sources`) agree on lives here, derived from the market layer's column lists,
so the feature views, the Parquet files and the matrices cannot drift apart.

Layout of a feature store folder (``FEAST_DIR``; docs/features.md)::

    feature_store.yaml                  the repo config (also what `feast -c FEAST_DIR ...` reads)
    definitions.py                      thin: re-exports marlops.features.definitions for the feast CLI
    data/registry.db                    Feast's file registry
    data/online_store.db                the sqlite online store (embedded default)
    data/sources/<source>/<instrument>.parquet   one file per instrument and source
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL, MatrixSpec

PROJECT = "marlops"
ENTITY = "instrument"  # the entity's name and its join key
DEFAULT_INSTRUMENT = "SYNTH"  # the id the embedded main loop gives its synthetic market
EVENT_TIMESTAMP = "event_timestamp"  # bar end (the instant the row becomes known), UTC

FEAST_DIR_ENV = "MARLOPS_FEAST_DIR"
ONLINE_ENV = "MARLOPS_FEAST_ONLINE"  # "sqlite" (default) or a redis URL
DEFAULT_FEAST_DIR = Path("data") / "feast"
DATA_DIR = "data"  # inside the feast dir; every path in the repo config is relative to the feast dir
SOURCES_DIR = f"{DATA_DIR}/sources"

# Feature views (rows per bar, for point-in-time training sets) and the online window view.
TACTICAL_VIEW = "tactical_features"
STRUCTURE_VIEW = "structure_features"
REGIME_VIEW = "regime_features"
WINDOW_VIEW = "matrix_windows"

# Sources: Parquet folders under data/sources/, one file per instrument.
BASE_SOURCE = "base_bar_features"  # tactical rows, one per base (5 m) bar
HIGHER_SOURCE = "higher_bar_features"  # structure + regime rows, one per higher (30 m) bar
WINDOW_SOURCE = "matrix_windows"  # the flattened matrices at the latest base bars

# How far back a point-in-time join may look for a row (longer than a weekend or a holiday).
ROW_TTL = timedelta(days=7)

# How many of the latest base bars get a window row in the window source (one day of 5 m bars).
DEFAULT_WINDOW_BARS = 288


def _names(spec: MatrixSpec) -> tuple[str, ...]:
    # the same names as the dataset's features_*.parquet (marlops.market.dataset.feature_frames)
    return tuple(f"{spec.name}_{c.name}" for c in spec.columns)


TACTICAL_FEATURES = _names(TACTICAL)
STRUCTURE_FEATURES = _names(STRUCTURE)
REGIME_FEATURES = _names(REGIME)
ROW_FEATURES: dict[str, tuple[str, ...]] = {
    TACTICAL.name: TACTICAL_FEATURES,
    STRUCTURE.name: STRUCTURE_FEATURES,
    REGIME.name: REGIME_FEATURES,
}
# the view of each matrix's rows
ROW_VIEWS: dict[str, str] = {
    TACTICAL.name: TACTICAL_VIEW,
    STRUCTURE.name: STRUCTURE_VIEW,
    REGIME.name: REGIME_VIEW,
}


def warm_field(matrix: str) -> str:
    """Bool: the row is out of its indicators' warm-up."""
    return f"{matrix}_warm"


def bar_end_field(matrix: str) -> str:
    """Int64 ns: the end of the bar the row belongs to (lets a training set check what was joined)."""
    return f"{matrix}_bar_end"


def matrix_field(matrix: str) -> str:
    """Array(Float32): the matrix, rows oldest first, flattened row-major."""
    return f"{matrix}_matrix"


def ready_field(matrix: str) -> str:
    """Bool: every row of the window is a warm, real row (RingMatrix.ready)."""
    return f"{matrix}_ready"


# Window view: the base bar whose close the windows describe, and the higher bar the slow ones end at.
WINDOW_BAR_END = "bar_end"  # Int64 ns, base bar end (= the row's event timestamp)
WINDOW_HIGHER_END = "higher_bar_end"  # Int64 ns, end of the latest closed higher bar (-1: none yet)
WINDOW_MATRICES: tuple[MatrixSpec, ...] = (TACTICAL, STRUCTURE, REGIME)
WINDOW_FIELDS: tuple[str, ...] = (
    WINDOW_BAR_END,
    WINDOW_HIGHER_END,
    *(matrix_field(s.name) for s in WINDOW_MATRICES),
    *(ready_field(s.name) for s in WINDOW_MATRICES),
)

# One feature service per agent (the views of the matrices it reads), plus the online windows.
AGENT_SERVICES: dict[str, tuple[str, ...]] = {
    "regime": (REGIME_VIEW,),
    "structure": (STRUCTURE_VIEW,),
    "tactical": (TACTICAL_VIEW,),
    "risk": (TACTICAL_VIEW, STRUCTURE_VIEW, REGIME_VIEW),
}
ONLINE_SERVICE = "matrices"

_INSTRUMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_instrument(instrument: str) -> str:
    """Instrument ids are file names of the sources: letters, digits, '.', '_', '-' (≤ 64)."""
    if not isinstance(instrument, str) or not _INSTRUMENT_RE.match(instrument):
        raise ValueError(
            f"instrument {instrument!r}: use 1-64 letters, digits, '.', '_' or '-' (it names a file), "
            "starting with a letter or digit"
        )
    return instrument


def feast_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The feature store folder: ``path``, else $MARLOPS_FEAST_DIR, else ``data/feast``; absolute."""
    p = path if path is not None else os.environ.get(FEAST_DIR_ENV) or DEFAULT_FEAST_DIR
    return Path(p).expanduser().resolve()


def source_dir(source: str) -> str:
    """Relative to the feast dir (that is how the FileSources name them)."""
    return f"{SOURCES_DIR}/{source}"
