"""The search space of ``marlops tune`` (models/search_space.yaml), pure: no Optuna, no training, no I/O
beyond reading the file. Parameters are TrainConfig's dotted names, so a trial's values are one more
overlay (:func:`marlops.training.config.with_overrides`) on the budget's configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from marlops.agents.specs import models_dir

SPACE_FILE = "search_space.yaml"
Kind = Literal["float", "int", "categorical"]


class TrialLike(Protocol):
    """What :meth:`SearchSpace.suggest` needs of a trial (``optuna.Trial`` is one)."""

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class Param:
    name: str  # dotted TrainConfig name: team.lr, structure.entropy_coef …
    kind: Kind
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # other param → values that enable it

    def check(self) -> None:
        if self.kind == "categorical":
            if not self.choices:
                raise ValueError(f"{self.name}: a categorical parameter needs choices")
            return
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"{self.name}: needs low < high, got {self.low}, {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"{self.name}: a log scale needs low > 0")
        if self.kind == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"{self.name}: an int parameter needs integer bounds")

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        assert self.low is not None and self.high is not None
        return self.low <= value <= self.high and (self.kind != "int" or value == int(value))


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    metric: str = "validation_utility"
    goal: Literal["maximize", "minimize"] = "maximize"
    episodes_per_market: int = 4
    sampler: dict[str, Any] = field(default_factory=dict)
    pruner: dict[str, Any] = field(default_factory=dict)
    source: str = "<dict>"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def active(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` less the parameters whose ``when`` is not met (in declaration order, so a condition
        on a parameter that is itself inactive makes this one inactive too)."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in values and all(out.get(k, _MISSING) in v for k, v in p.when.items()):
                out[p.name] = values[p.name]
        return out

    def suggest(self, trial: TrialLike) -> dict[str, Any]:
        """One trial's values: every active parameter sampled through ``trial`` (conditionals honoured)."""
        values: dict[str, Any] = {}
        for p in self.params:
            if not all(values.get(k, _MISSING) in v for k, v in p.when.items()):
                continue
            if p.kind == "categorical":
                values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            elif p.kind == "int":
                assert p.low is not None and p.high is not None
                values[p.name] = trial.suggest_int(
                    p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
                )
            else:
                assert p.low is not None and p.high is not None
                values[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
        return values

    def as_dict(self) -> dict[str, Any]:
        """A plain description (names, kinds, bounds, scales, choices, conditions), for comparisons."""
        return {
            p.name: {
                "kind": p.kind,
                **(
                    {"choices": list(p.choices)}
                    if p.kind == "categorical"
                    else {"low": p.low, "high": p.high, "log": p.log, "step": p.step}
                ),
            }
            for p in self.params
        }


_MISSING = object()


def _param(name: str, spec: dict[str, Any], source: str) -> Param:
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices", "when"}
    if unknown:
        raise ValueError(f"{source}: {name}: unknown key(s) {sorted(unknown)}")
    kind = spec.get("type")
    if kind not in ("float", "int", "categorical"):
        raise ValueError(f"{source}: {name}: type must be float, int or categorical, got {kind!r}")
    when = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in (spec.get("when") or {}).items()}
    p = Param(
        name,
        kind,
        None if spec.get("low") is None else float(spec["low"]),
        None if spec.get("high") is None else float(spec["high"]),
        bool(spec.get("log", False)),
        None if spec.get("step") is None else float(spec["step"]),
        tuple(spec.get("choices") or ()),
        when,
    )
    try:
        p.check()
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    return p


def parse_space(data: dict[str, Any], source: str = "<dict>") -> SearchSpace:
    if not isinstance(data, dict) or not isinstance(data.get("parameters"), dict) or not data["parameters"]:
        raise ValueError(f"{source}: expected a mapping with a non-empty 'parameters' mapping")
    unknown = set(data) - {"objective", "sampler", "pruner", "parameters"}
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {sorted(unknown)}")
    params = tuple(_param(n, s or {}, source) for n, s in data["parameters"].items())
    names = [p.name for p in params]
    for p in params:
        for other, values in p.when.items():
            if other not in names or names.index(other) >= names.index(p.name):
                raise ValueError(
                    f"{source}: {p.name}: 'when' names {other!r}, not a parameter declared before it"
                )
            if not all(p2.contains(v) for p2 in params if p2.name == other for v in values):
                raise ValueError(
                    f"{source}: {p.name}: 'when' value(s) {list(values)} outside {other}'s range"
                )
    obj = data.get("objective") or {}
    goal = obj.get("goal", "maximize")
    if goal not in ("maximize", "minimize"):
        raise ValueError(f"{source}: objective.goal must be maximize or minimize, got {goal!r}")
    return SearchSpace(
        params,
        str(obj.get("metric", "validation_utility")),
        goal,
        int(obj.get("episodes_per_market", 4)),
        dict(data.get("sampler") or {}),
        dict(data.get("pruner") or {}),
        source,
    )


def space_file(path: str | Path | None = None) -> Path:
    return Path(path) if path is not None else models_dir() / SPACE_FILE


def load_space(path: str | Path | None = None) -> SearchSpace:
    """models/search_space.yaml (``$MARLOPS_MODELS_DIR`` switches the folder) or ``path``."""
    f = space_file(path)
    if not f.is_file():
        raise FileNotFoundError(f"search space not found: {f}")
    return parse_space(yaml.safe_load(f.read_text()), str(f))
