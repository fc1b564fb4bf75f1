"""The decision request: what a caller sends the decision server, checked field by field.

Two modes, told apart by ``matrices``:

- **matrices**: the caller sends the matrices the agents read (``tactical`` at a base bar close, all three
  at a higher bar close), plus the bar or tick;
- **instrument**: no ``matrices``; at a bar close the server fetches the instrument's latest matrices from
  the Feast online store (``marlops.features.latest_matrices``).

``clock`` says which agents run: ``"tick"`` (risk only, on the matrix encoding cached at the last bar
close), the base label (``"5m"``: tactical → risk) or the higher label (``"30m"``: regime → structure →
tactical → risk). ``ts`` is the market time in ns since the epoch (the bar's end, or the tick's time);
decisions of one instrument must come in time order.

``portfolio`` is optional: without it the server keeps a paper portfolio per instrument and fills every
decision into it (as ``marlops decide`` does); with it, the caller's state replaces the paper one. Either
way the response carries the portfolio after the decision's fill.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from marlops.agents.decision import Portfolio
from marlops.features.schema import DEFAULT_INSTRUMENT, check_instrument
from marlops.serving.tensors import InputError

Finite = Annotated[float, Field(allow_inf_nan=False)]
PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NsTime = Annotated[StrictInt, Field(ge=0, lt=2**63)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BarIn(_Strict):
    """The bar that just closed (its high/low/close feed the ATR that sizes entries and stops)."""

    high: PositiveFinite
    low: PositiveFinite
    close: PositiveFinite

    @model_validator(mode="after")
    def _ordered(self) -> BarIn:
        if not self.low <= self.close <= self.high:
            raise ValueError(f"low ≤ close ≤ high is violated: {self.low}, {self.close}, {self.high}")
        return self


class PortfolioState(_Strict):
    """The fields of :class:`marlops.agents.decision.Portfolio` (cash accounting of one instrument)."""

    equity_start: PositiveFinite = 100_000.0
    position: Finite = 0.0
    avg_price: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    realized_pnl: Finite = 0.0
    commission_paid: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    day: StrictInt = -1
    day_start_equity: Finite = 100_000.0
    peak_equity: Finite = 100_000.0
    bars_in_position: Annotated[StrictInt, Field(ge=0)] = 0
    stop_loss: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    take_profit: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    halted_day: StrictInt = -1

    def to_portfolio(self) -> Portfolio:
        return Portfolio(**self.model_dump())

    @classmethod
    def of(cls, pf: Portfolio) -> dict[str, Any]:
        """A plain dict of a Portfolio (for the response; no validation on the way out)."""
        return {name: getattr(pf, name) for name in cls.model_fields}


class DecisionRequest(_Strict):
    instrument: str = DEFAULT_INSTRUMENT
    clock: str
    ts: NsTime
    price: PositiveFinite | None = None  # the tick's price; a bar decision's price is bar.close
    bar: BarIn | None = None
    matrices: dict[str, Any] | None = None  # checked with numpy by the server (shapes, dtypes, NaN)
    ready: dict[str, StrictBool] | None = None  # per matrix: out of warm-up (default: all ready)
    portfolio: PortfolioState | None = None

    @field_validator("instrument")
    @classmethod
    def _instrument(cls, v: str) -> str:
        return check_instrument(v)


def parse_request(body: Any, clocks: tuple[str, ...]) -> DecisionRequest:
    """Validate a decoded JSON body; :class:`InputError` names the first bad field."""
    if not isinstance(body, dict):
        raise InputError("body", f"expected a JSON object, got {type(body).__name__}")
    try:
        req = DecisionRequest.model_validate(body)
    except ValidationError as e:
        raise InputError(*_first_error(e)) from None
    tick, _base, _higher = clocks
    if req.clock not in clocks:
        raise InputError("clock", f"{req.clock!r}; expected one of {list(clocks)}")
    if req.clock == tick:
        if req.price is None:
            raise InputError("price", "required for a tick decision")
        if req.matrices is not None or req.bar is not None:
            raise InputError("matrices" if req.matrices is not None else "bar", "not used by a tick decision")
    else:
        if req.bar is None:
            raise InputError(
                "bar", f"required for a {req.clock} decision (high, low, close of the closed bar)"
            )
        if req.price is not None and req.price != req.bar.close:
            raise InputError("price", "a bar decision's price is bar.close; leave price out or equal to it")
    if req.ready is not None:
        unknown = sorted(set(req.ready) - {"tactical", "structure", "regime"})
        if unknown:
            raise InputError(f"ready.{unknown[0]}", "unknown matrix; expected tactical, structure, regime")
    return req


def _first_error(err: ValidationError) -> tuple[str, str]:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "body"
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "missing":
        msg = "missing (required)"
    elif e["type"] == "extra_forbidden":
        msg = "unknown field"
    return loc, msg
