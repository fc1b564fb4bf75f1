"""The four agent networks, built from their specs (models/*.yaml); pure torch, no I/O.

Every width comes from the spec, every input shape from :mod:`marlops.market.matrices` and the
record widths (message, portfolio, proposal) from :mod:`marlops.agents.types`. Networks return raw
heads (logits, pre-softmax); probabilities and the structure bias are derived by the serving
wrappers in :mod:`marlops.agents.export` so training can use the logits directly.

Communication: an agent that reads the hub gets ``msgs (B, M, MESSAGE_DIM)`` and ``mask (B, M)``
(True = that sender's message is present and fresh), the senders in the order its spec lists
(``architecture.senders``). :class:`CommAttention` is differentiable end to end, so a loss on a
consumer trains the sender's message head when the sender's live message tensor is passed in.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marlops.agents.specs import AgentSpec, RegimeSpec, RiskSpec, StructureSpec, TacticalSpec
from marlops.agents.types import MESSAGE_DIM, PORTFOLIO_FEATURES, PROPOSAL_DIM
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL

# Added to the scores of absent messages. Finite (not -inf) so softmax never sees a row of only -inf
# (which is NaN); exp(-1e9 - max) underflows to exactly 0 in float32, so present messages are unaffected.
_MASKED_SCORE = -1e9


class RegimeOut(NamedTuple):
    logits: Tensor  # (B, n_regimes)
    volatility: Tensor  # (B,), >= 0
    message: Tensor  # (B, MESSAGE_DIM), in [-1, 1]


class StructureOut(NamedTuple):
    logits: Tensor  # (B, n_actions) over STRUCTURE_BIAS_LEVELS
    size: Tensor  # (B,), in [0, 1]
    confidence: Tensor  # (B,), in [0, 1]
    value: Tensor  # (B,)
    message: Tensor  # (B, MESSAGE_DIM)


class TacticalOut(NamedTuple):
    logits: Tensor  # (B, n_actions) over TacticalAction
    value: Tensor  # (B,)
    message: Tensor  # (B, MESSAGE_DIM)


def sinusoidal_encoding(length: int, dim: int) -> Tensor:
    """The fixed (length, dim) sin/cos positional encoding of "Attention Is All You Need"."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


def no_messages(batch: int, senders: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Zero messages with an all-False mask: what a consumer sees before any sender has spoken."""
    return (
        torch.zeros(batch, senders, MESSAGE_DIM, device=device),
        torch.zeros(batch, senders, dtype=torch.bool, device=device),
    )


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    # PPO practice: orthogonal heads, a tiny actor gain keeps the initial policy near uniform.
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class CommAttention(nn.Module):
    """Multi-head attention of one query (the agent's own state) over the other agents' messages.

    ``forward(query (B, query_dim), msgs (B, M, msg_dim), mask (B, M) bool) -> (B, out_dim)``.
    Absent messages get zero weight; when no message is present the output is exactly zero (no
    NaN), so a consumer degrades to its own features instead of attending to stale noise.
    """

    def __init__(self, query_dim: int, msg_dim: int, out_dim: int, heads: int) -> None:
        super().__init__()
        if out_dim % heads:
            raise ValueError(f"out_dim ({out_dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.head_dim = out_dim // heads
        self.q = nn.Linear(query_dim, out_dim)
        self.k = nn.Linear(msg_dim, out_dim)
        self.v = nn.Linear(msg_dim, out_dim)
        self.out = nn.Linear(out_dim, out_dim)

    def forward(self, query: Tensor, msgs: Tensor, mask: Tensor) -> Tensor:
        b, m, _ = msgs.shape
        h, d = self.heads, self.head_dim
        q = self.q(query).view(b, h, 1, d)
        k = self.k(msgs).view(b, m, h, d).transpose(1, 2)  # (B, H, M, d)
        v = self.v(msgs).view(b, m, h, d).transpose(1, 2)
        scores = (q * k).sum(-1) * (1.0 / math.sqrt(d))  # (B, H, M)
        present = mask[:, None, :]  # (B, 1, M)
        scores = scores.masked_fill(~present, _MASKED_SCORE)
        # Multiplying by the mask zeroes the uniform weights softmax gives an all-absent row.
        weights = torch.softmax(scores, dim=-1) * present.to(scores.dtype)
        attended = (weights[..., None] * v).sum(-2).reshape(b, h * d)
        any_present = mask.any(dim=1, keepdim=True).to(attended.dtype)  # (B, 1)
        return self.out(attended) * any_present


class RegimeNet(nn.Module):
    """(B, 96, 11) → embedding + positional encoding → transformer encoder → mean pool → heads.

    Pooling is the spec's ``pool`` (``mean`` by default: a regime describes the whole window, and the
    mean is less sensitive to one odd last bar than the last step is).
    """

    def __init__(self, spec: RegimeSpec) -> None:
        super().__init__()
        a = spec.architecture
        self.spec = spec
        self.pool = a.pool
        rows, cols = REGIME.shape
        self.embed = nn.Linear(cols, a.d_model)
        self.register_buffer("pe", sinusoidal_encoding(rows, a.d_model)[None], persistent=False)
        layer = nn.TransformerEncoderLayer(
            a.d_model, a.heads, a.ff_dim, a.dropout, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, a.layers, enable_nested_tensor=False)
        self.cls_head = nn.Linear(a.d_model, a.n_regimes)
        self.vol_head = nn.Linear(a.d_model, 1)
        self.msg_head = nn.Linear(a.d_model, a.message_dim)

    def forward(self, x: Tensor) -> RegimeOut:
        return self.head(self.encode(x))

    def encode(self, x: Tensor) -> Tensor:
        """The pooled (B, d_model) encoding of the window."""
        z = self.encoder(self.embed(x) + self.pe)
        return z.mean(dim=1) if self.pool == "mean" else z[:, -1]

    def head(self, pooled: Tensor) -> RegimeOut:
        return RegimeOut(
            self.cls_head(pooled),
            F.softplus(self.vol_head(pooled)).squeeze(-1),
            torch.tanh(self.msg_head(pooled)),
        )


class StructureNet(nn.Module):
    """(B, 48, 8) → parallel 1D CNNs (3/5/7) → projection → 2-layer LSTM → attention over time
    → fused with CommAttention over the hub's messages → actor / size / confidence / critic / message."""

    def __init__(self, spec: StructureSpec) -> None:
        super().__init__()
        a = spec.architecture
        self.spec = spec
        self.n_senders = len(a.senders)
        _, cols = STRUCTURE.shape
        self.convs = nn.ModuleList(nn.Conv1d(cols, a.cnn_channels, k, padding=k // 2) for k in a.cnn_kernels)
        self.proj = nn.Linear(len(a.cnn_kernels) * a.cnn_channels, a.proj_dim)
        self.drop = nn.Dropout(a.dropout)
        self.lstm = nn.LSTM(
            a.proj_dim,
            a.lstm_hidden,
            a.lstm_layers,
            batch_first=True,
            dropout=a.dropout if a.lstm_layers > 1 else 0.0,
        )
        # Additive attention over time with a learned query (attn_score's weight vector).
        self.attn_proj = nn.Linear(a.lstm_hidden, a.lstm_hidden)
        self.attn_score = nn.Linear(a.lstm_hidden, 1, bias=False)
        self.comm = CommAttention(a.lstm_hidden, a.message_dim, a.lstm_hidden, a.comm_heads)
        self.norm = nn.LayerNorm(a.lstm_hidden)
        self.actor = _orthogonal(nn.Linear(a.lstm_hidden, a.n_actions), 0.01)
        self.size_head = nn.Linear(a.lstm_hidden, 1)
        self.conf_head = nn.Linear(a.lstm_hidden, 1)
        self.critic = _orthogonal(nn.Linear(a.lstm_hidden, 1), 1.0)
        self.msg_head = nn.Linear(a.lstm_hidden, a.message_dim)

    def encode(self, x: Tensor) -> Tensor:
        """The agent's own (B, lstm_hidden) state, before communication."""
        xt = x.transpose(1, 2)  # (B, C, T) for Conv1d
        c = torch.cat([F.gelu(conv(xt)) for conv in self.convs], dim=1).transpose(1, 2)  # (B, T, k*C)
        seq, _ = self.lstm(self.drop(F.gelu(self.proj(c))))  # (B, T, H)
        w = torch.softmax(self.attn_score(torch.tanh(self.attn_proj(seq))), dim=1)  # (B, T, 1)
        return (w * seq).sum(dim=1)

    def forward(self, x: Tensor, msgs: Tensor, mask: Tensor) -> StructureOut:
        return self.head(self.encode(x), msgs, mask)

    def head(self, h: Tensor, msgs: Tensor, mask: Tensor) -> StructureOut:
        """Everything after :meth:`encode`: communication and the heads. Training caches the encodings of
        a frozen encoder and trains only this part (``forward`` is exactly ``head(encode(x), ...)``)."""
        h = self.norm(h + self.comm(h, msgs, mask))
        return StructureOut(
            self.actor(h),
            torch.sigmoid(self.size_head(h)).squeeze(-1),
            torch.sigmoid(self.conf_head(h)).squeeze(-1),
            self.critic(h).squeeze(-1),
            torch.tanh(self.msg_head(h)),
        )


class TacticalNet(nn.Module):
    """(B, 60, 7) → embedding + positional encoding → one self-attention block (residual, layer norm,
    FFN) → last step (spec ``pool``) → fused with CommAttention → actor / critic / message."""

    def __init__(self, spec: TacticalSpec) -> None:
        super().__init__()
        a = spec.architecture
        self.spec = spec
        self.pool = a.pool
        self.n_senders = len(a.senders)
        rows, cols = TACTICAL.shape
        self.embed = nn.Linear(cols, a.d_model)
        self.register_buffer("pe", sinusoidal_encoding(rows, a.d_model)[None], persistent=False)
        self.block = nn.TransformerEncoderLayer(
            a.d_model, a.heads, a.ff_dim, a.dropout, activation="gelu", batch_first=True
        )
        self.comm = CommAttention(a.d_model, a.message_dim, a.d_model, a.comm_heads)
        self.norm = nn.LayerNorm(a.d_model)
        self.actor = _orthogonal(nn.Linear(a.d_model, a.n_actions), 0.01)
        self.critic = _orthogonal(nn.Linear(a.d_model, 1), 1.0)
        self.msg_head = nn.Linear(a.d_model, a.message_dim)

    def encode(self, x: Tensor) -> Tensor:
        z = self.block(self.embed(x) + self.pe)
        return z[:, -1] if self.pool == "last" else z.mean(dim=1)

    def forward(self, x: Tensor, msgs: Tensor, mask: Tensor) -> TacticalOut:
        return self.head(self.encode(x), msgs, mask)

    def head(self, h: Tensor, msgs: Tensor, mask: Tensor) -> TacticalOut:
        """Communication and the heads over an encoding (see :meth:`StructureNet.head`)."""
        h = self.norm(h + self.comm(h, msgs, mask))
        return TacticalOut(self.actor(h), self.critic(h).squeeze(-1), torch.tanh(self.msg_head(h)))


class RiskNet(nn.Module):
    """DQN over RiskAction: encoder(all matrices ‖ portfolio ‖ proposal) → 256 → MLP 512 → 256 → 4.

    The encoder's first layer is linear, so it is split by input: the matrix part (1,860 of its 1,875
    inputs, changing only at bar closes) is :meth:`encode_matrices`, cacheable per bar; the per-tick
    part adds the portfolio and proposal columns in :meth:`q_from_cache`. The three weight blocks
    together are exactly one Linear over the concatenated input (``encoder_weight`` rebuilds it).
    """

    def __init__(self, spec: RiskSpec) -> None:
        super().__init__()
        a = spec.architecture
        self.spec = spec
        self.matrix_dim = sum(r * c for r, c in (TACTICAL.shape, STRUCTURE.shape, REGIME.shape))
        self.portfolio_dim = len(PORTFOLIO_FEATURES)
        self.proposal_dim = PROPOSAL_DIM
        e = a.encoder_dim
        self.enc_matrices = nn.Linear(self.matrix_dim, e)
        self.enc_portfolio = nn.Linear(self.portfolio_dim, e, bias=False)
        self.enc_proposal = nn.Linear(self.proposal_dim, e, bias=False)
        # Initialise as the one Linear it stands for (bound 1/sqrt(total fan-in)), not as three layers.
        bound = 1.0 / math.sqrt(self.matrix_dim + self.portfolio_dim + self.proposal_dim)
        for p in (*self.enc_matrices.parameters(), self.enc_portfolio.weight, self.enc_proposal.weight):
            nn.init.uniform_(p, -bound, bound)
        self.enc_norm = nn.LayerNorm(e) if a.encoder_norm else nn.Identity()
        layers: list[nn.Module] = []
        width = e
        for hdim in a.hidden:
            layers += [nn.Linear(width, hdim), nn.ReLU()]
            width = hdim
        layers.append(nn.Linear(width, a.n_actions))
        self.q_mlp = nn.Sequential(*layers)

    @property
    def cache_dim(self) -> int:
        return self.enc_matrices.out_features

    def encode_matrices(self, tactical: Tensor, structure: Tensor, regime: Tensor) -> Tensor:
        """(B, encoder_dim) pre-activation partial sum of the matrices (bias included); cacheable."""
        flat = torch.cat([tactical.flatten(1), structure.flatten(1), regime.flatten(1)], dim=1)
        return self.enc_matrices(flat)

    def q_from_cache(self, cache: Tensor, portfolio: Tensor, proposal: Tensor) -> Tensor:
        """(B, n_actions) Q-values from the cached matrix part plus the per-tick inputs."""
        h = cache + self.enc_portfolio(portfolio) + self.enc_proposal(proposal)
        return self.q_mlp(F.relu(self.enc_norm(h)))

    def forward(
        self, tactical: Tensor, structure: Tensor, regime: Tensor, portfolio: Tensor, proposal: Tensor
    ) -> Tensor:
        return self.q_from_cache(self.encode_matrices(tactical, structure, regime), portfolio, proposal)

    def encoder_weight(self) -> tuple[Tensor, Tensor]:
        """The unsplit first layer (weight over [matrices ‖ portfolio ‖ proposal], bias)."""
        w = torch.cat([self.enc_matrices.weight, self.enc_portfolio.weight, self.enc_proposal.weight], dim=1)
        return w, self.enc_matrices.bias


AgentNet = RegimeNet | StructureNet | TacticalNet | RiskNet
NET_TYPES: dict[str, type[nn.Module]] = {
    "regime": RegimeNet,
    "structure": StructureNet,
    "tactical": TacticalNet,
    "risk": RiskNet,
}
# Base seed offsets per agent: building one agent never depends on which others were built first.
_SEED_OFFSETS: dict[str, int] = {"regime": 0, "structure": 1, "tactical": 2, "risk": 3}


def build_network(spec: AgentSpec, seed: int | None = None) -> AgentNet:
    """A fresh network from its spec, in eval mode. With ``seed`` the weights are bitwise reproducible
    and the global torch RNG is left untouched; without it the global RNG is used as is."""
    cls = NET_TYPES[spec.agent]
    if seed is None:
        net = cls(spec)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1009 + _SEED_OFFSETS[spec.agent])
            net = cls(spec)
    return net.eval()  # type: ignore[return-value]


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
