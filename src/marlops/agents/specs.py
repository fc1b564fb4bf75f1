"""Agent specs: models/<agent>.yaml → validated pydantic models (architecture + training hyperparameters).

The YAML files are the single source of every network width; input shapes come from
:mod:`marlops.market.matrices` and the shared record widths from :mod:`marlops.agents.types`, and the
spec is checked against them so a stale spec fails at load time, naming the field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from marlops.agents.types import MESSAGE_DIM, REGIME_NAMES, STRUCTURE_BIAS_LEVELS, RiskAction, TacticalAction
from marlops.team import AGENTS

# Agents that publish a message to the hub (risk consumes the matrices directly and publishes none).
SENDERS: tuple[str, ...] = ("regime", "structure", "tactical")
MODELS_DIR_ENV = "MARLOPS_MODELS_DIR"

PosInt = Annotated[int, Field(gt=0)]
PosFloat = Annotated[float, Field(gt=0)]
Prob = Annotated[float, Field(ge=0, le=1)]
Dropout = Annotated[float, Field(ge=0, lt=1)]


class SpecError(ValueError):
    """A spec file is missing or invalid; the message names the file and the field."""


class _Strict(BaseModel):
    # Unknown keys are errors: a typo in a spec must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_message_dim(v: int) -> int:
    if v != MESSAGE_DIM:
        raise ValueError(f"must equal types.MESSAGE_DIM ({MESSAGE_DIM}), the hub's message width")
    return v


def _check_senders(v: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [s for s in v if s not in SENDERS]
    if unknown or len(set(v)) != len(v) or not v:
        raise ValueError(f"must be distinct names among {SENDERS}, got {list(v)}")
    return v


# --------------------------------------------------------------------------------------------- training


class SupervisedTraining(_Strict):
    """The regime agent's stage (training/regime.py): every field is read by the trainer."""

    objective: Literal["supervised"]
    lr: PosFloat
    weight_decay: Annotated[float, Field(ge=0)]
    batch_size: PosInt
    epochs: PosInt
    max_samples: PosInt | None  # windows per epoch (null: all)
    label_smoothing: Annotated[float, Field(ge=0, lt=1)]
    volatility_loss_weight: Annotated[float, Field(ge=0)]
    max_grad_norm: PosFloat
    warmup_steps: Annotated[int, Field(ge=0)]
    distill: Prob  # weight of the ceiling filter's soft targets against the hard labels


class PretrainTraining(_Strict):
    """Structure's and tactical's own stage (training/pretrain.py); the team stage that fine-tunes both
    with MAPPO is one joint update and lives in models/team.yaml."""

    objective: Literal["pretrain"]
    lr: PosFloat
    weight_decay: Annotated[float, Field(ge=0)]
    batch_size: PosInt
    epochs: PosInt
    max_samples: PosInt | None  # samples per epoch (null: all)
    max_grad_norm: PosFloat


class StructurePretrainTraining(PretrainTraining):
    """Structure's pretraining adds its utility's horizon, costs and entropy bonus."""

    horizon_bars: PosInt
    cost: Annotated[float, Field(ge=0)]
    risk_aversion: Annotated[float, Field(ge=0)]
    entropy_coef: Annotated[float, Field(ge=0)]


class DQNTraining(_Strict):
    objective: Literal["dqn"]
    lr: PosFloat
    gamma: Prob
    n_step: PosInt
    buffer_size: PosInt
    batch_size: PosInt
    learning_starts: Annotated[int, Field(ge=0)]
    train_every: PosInt
    target_update: PosInt
    double_dqn: bool
    huber_delta: PosFloat
    max_grad_norm: PosFloat
    per_alpha: Annotated[float, Field(ge=0)]
    per_beta_start: Prob
    per_beta_end: Prob
    per_beta_steps: PosInt
    per_eps: PosFloat
    epsilon_start: Prob
    epsilon_end: Prob
    epsilon_decay_steps: PosInt


# Training sections of agents saved before the specs became the trainer's source (issue 19): a saved agent
# keeps the spec it was exported with (its version id hashes it), so they still load; the trainer never
# reads them.


class LegacySupervisedTraining(_Strict):
    objective: Literal["supervised"]
    lr: PosFloat
    weight_decay: Annotated[float, Field(ge=0)]
    batch_size: PosInt
    epochs: PosInt
    label_smoothing: Annotated[float, Field(ge=0, lt=1)]
    volatility_loss_weight: Annotated[float, Field(ge=0)]
    max_grad_norm: PosFloat
    warmup_steps: Annotated[int, Field(ge=0)]


class LegacyPPOTraining(_Strict):
    objective: Literal["ppo"]
    lr: PosFloat
    gamma: Prob
    gae_lambda: Prob
    clip_eps: PosFloat
    value_clip_eps: Annotated[float, Field(ge=0)]
    entropy_coef: Annotated[float, Field(ge=0)]
    value_coef: Annotated[float, Field(ge=0)]
    max_grad_norm: PosFloat
    ppo_epochs: PosInt
    minibatch_size: PosInt
    rollout_steps: PosInt
    value_normalization: bool


# ----------------------------------------------------------------------------------------- architecture


class RegimeArch(_Strict):
    d_model: PosInt
    layers: PosInt
    heads: PosInt
    ff_dim: PosInt
    dropout: Dropout
    pool: Literal["mean", "last"]
    n_regimes: PosInt
    message_dim: PosInt

    _msg = field_validator("message_dim")(_check_message_dim)

    @field_validator("n_regimes")
    @classmethod
    def _n_regimes(cls, v: int) -> int:
        if v != len(REGIME_NAMES):
            raise ValueError(f"must equal len(types.REGIME_NAMES) ({len(REGIME_NAMES)})")
        return v

    @model_validator(mode="after")
    def _heads_divide(self) -> RegimeArch:
        if self.d_model % self.heads:
            raise ValueError(f"heads: d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        return self


class StructureArch(_Strict):
    cnn_kernels: tuple[PosInt, ...]
    cnn_channels: PosInt
    proj_dim: PosInt
    lstm_hidden: PosInt
    lstm_layers: PosInt
    dropout: Dropout
    comm_heads: PosInt
    senders: tuple[str, ...]
    n_actions: PosInt
    message_dim: PosInt

    _msg = field_validator("message_dim")(_check_message_dim)
    _snd = field_validator("senders")(_check_senders)

    @field_validator("cnn_kernels")
    @classmethod
    def _odd_kernels(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        # Odd kernels keep 'same' padding symmetric, so every branch stays aligned on the time axis.
        if not v or any(k % 2 == 0 for k in v):
            raise ValueError(f"must be a non-empty list of odd kernel sizes, got {list(v)}")
        return v

    @field_validator("n_actions")
    @classmethod
    def _n_actions(cls, v: int) -> int:
        if v != len(STRUCTURE_BIAS_LEVELS):
            raise ValueError(f"must equal len(types.STRUCTURE_BIAS_LEVELS) ({len(STRUCTURE_BIAS_LEVELS)})")
        return v

    @model_validator(mode="after")
    def _heads_divide(self) -> StructureArch:
        if self.lstm_hidden % self.comm_heads:
            raise ValueError(f"comm_heads: lstm_hidden ({self.lstm_hidden}) must be divisible by it")
        if "structure" in self.senders:
            raise ValueError("senders: an agent does not read its own message")
        return self


class TacticalArch(_Strict):
    d_model: PosInt
    heads: PosInt
    ff_dim: PosInt
    dropout: Dropout
    pool: Literal["mean", "last"]
    comm_heads: PosInt
    senders: tuple[str, ...]
    n_actions: PosInt
    message_dim: PosInt

    _msg = field_validator("message_dim")(_check_message_dim)
    _snd = field_validator("senders")(_check_senders)

    @field_validator("n_actions")
    @classmethod
    def _n_actions(cls, v: int) -> int:
        if v != len(TacticalAction):
            raise ValueError(f"must equal len(types.TacticalAction) ({len(TacticalAction)})")
        return v

    @model_validator(mode="after")
    def _heads_divide(self) -> TacticalArch:
        if self.d_model % self.heads:
            raise ValueError(f"heads: d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.d_model % self.comm_heads:
            raise ValueError(f"comm_heads: d_model ({self.d_model}) must be divisible by it")
        if "tactical" in self.senders:
            raise ValueError("senders: an agent does not read its own message")
        return self


class RiskArch(_Strict):
    encoder_dim: PosInt
    hidden: tuple[PosInt, ...]
    n_actions: PosInt
    encoder_norm: bool

    @field_validator("n_actions")
    @classmethod
    def _n_actions(cls, v: int) -> int:
        if v != len(RiskAction):
            raise ValueError(f"must equal len(types.RiskAction) ({len(RiskAction)})")
        return v


def _era(legacy: type[_Strict]) -> Any:
    """Which training section a spec holds: ``legacy`` (a saved agent's, exactly its fields) or ``current``;
    only that one is validated, so an error names the field (``training.lr``), not the union."""
    fields = set(legacy.model_fields)

    def pick(v: Any) -> str:
        if isinstance(v, dict):
            return "legacy" if set(v) == fields else "current"
        return "legacy" if isinstance(v, legacy) else "current"

    return Discriminator(pick)


_TAGS = {"current", "legacy"}  # union tags, left out of error paths


# ------------------------------------------------------------------------------------------------ specs


class RegimeSpec(_Strict):
    agent: Literal["regime"]
    architecture: RegimeArch
    training: Annotated[
        Annotated[SupervisedTraining, Tag("current")] | Annotated[LegacySupervisedTraining, Tag("legacy")],
        _era(LegacySupervisedTraining),
    ]


class StructureSpec(_Strict):
    agent: Literal["structure"]
    architecture: StructureArch
    training: Annotated[
        Annotated[StructurePretrainTraining, Tag("current")] | Annotated[LegacyPPOTraining, Tag("legacy")],
        _era(LegacyPPOTraining),
    ]


class TacticalSpec(_Strict):
    agent: Literal["tactical"]
    architecture: TacticalArch
    training: Annotated[
        Annotated[PretrainTraining, Tag("current")] | Annotated[LegacyPPOTraining, Tag("legacy")],
        _era(LegacyPPOTraining),
    ]


class RiskSpec(_Strict):
    agent: Literal["risk"]
    architecture: RiskArch
    training: DQNTraining


AgentSpec = RegimeSpec | StructureSpec | TacticalSpec | RiskSpec
SPEC_TYPES: dict[str, type[AgentSpec]] = {
    "regime": RegimeSpec,
    "structure": StructureSpec,
    "tactical": TacticalSpec,
    "risk": RiskSpec,
}


def models_dir() -> Path:
    """``$MARLOPS_MODELS_DIR`` if set, else the repository's ``models/`` beside ``src/``."""
    env = os.environ.get(MODELS_DIR_ENV)
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "models"
    if not path.is_dir():
        how = f"${MODELS_DIR_ENV}={env}" if env else f"{path} (relative to the package source)"
        raise SpecError(
            f"agent spec directory not found: {how}; set {MODELS_DIR_ENV} to the folder holding "
            f"{', '.join(a + '.yaml' for a in AGENTS)}"
        )
    return path


def _format_errors(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"] if p not in _TAGS]
        msg = e["msg"].removeprefix("Value error, ")
        # Cross-field checks raise "field: why" from the model validator; fold the field into the path.
        m = re.match(r"^([a-z_]+): (.*)$", msg, re.S)
        if m and e["type"] == "value_error":
            loc, msg = [*loc, m.group(1)], m.group(2)
        lines.append(f"  {'.'.join(loc) or '<root>'}: {msg}")
    return f"invalid agent spec {source}:\n" + "\n".join(lines)


def parse_spec(name: str, data: Any, source: str = "<dict>") -> AgentSpec:
    """Validate a spec given as plain data (e.g. from a saved model directory)."""
    if name not in SPEC_TYPES:
        raise SpecError(f"unknown agent {name!r}; expected one of {AGENTS}")
    if not isinstance(data, dict):
        raise SpecError(f"invalid agent spec {source}: expected a mapping at the top level")
    try:
        return SPEC_TYPES[name].model_validate(data)
    except ValidationError as e:
        raise SpecError(_format_errors(source, e)) from None


def load_spec(name: str, directory: str | Path | None = None) -> AgentSpec:
    """Load and validate ``<directory>/<name>.yaml`` (default directory: :func:`models_dir`)."""
    if name not in SPEC_TYPES:
        raise SpecError(f"unknown agent {name!r}; expected one of {AGENTS}")
    path = Path(directory) / f"{name}.yaml" if directory is not None else models_dir() / f"{name}.yaml"
    if not path.is_file():
        raise SpecError(f"agent spec not found: {path}")
    with path.open() as f:
        data = yaml.safe_load(f)
    return parse_spec(name, data, str(path))


# The training section the trainer reads, per agent (a legacy one is refused where training starts).
TRAINING_TYPES: dict[str, type[_Strict]] = {
    "regime": SupervisedTraining,
    "structure": StructurePretrainTraining,
    "tactical": PretrainTraining,
    "risk": DQNTraining,
}


def training_section(spec: AgentSpec) -> Any:
    """The spec's training hyperparameters as the trainer reads them; a saved agent's legacy section
    (exported before the specs were the trainer's source) is an error naming the agent."""
    want = TRAINING_TYPES[spec.agent]
    if type(spec.training) is not want:
        raise SpecError(
            f"{spec.agent}: the spec's training section is the legacy {type(spec.training).__name__}; "
            f"training reads {want.__name__} (models/{spec.agent}.yaml)"
        )
    return spec.training


def load_specs(directory: str | Path | None = None) -> dict[str, AgentSpec]:
    """All four specs, keyed by agent name in :data:`AGENTS` order."""
    return {name: load_spec(name, directory) for name in AGENTS}


def spec_to_dict(spec: AgentSpec) -> dict[str, Any]:
    """Plain, JSON/YAML-safe data (tuples become lists) that :func:`parse_spec` reads back."""
    return spec.model_dump(mode="json")
