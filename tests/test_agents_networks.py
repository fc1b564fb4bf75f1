"""Agent networks and specs: shapes, output ranges, masked communication, gradient flow through the hub's
attention, the risk agent's cache split, deterministic init and spec validation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from marlops.agents.export import StructureServing, net_version
from marlops.agents.networks import (
    CommAttention,
    RegimeNet,
    RiskNet,
    StructureNet,
    TacticalNet,
    build_network,
    no_messages,
    parameter_count,
)
from marlops.agents.specs import (
    AGENTS,
    MODELS_DIR_ENV,
    SpecError,
    load_spec,
    load_specs,
    models_dir,
    parse_spec,
    spec_to_dict,
)
from marlops.agents.types import (
    MESSAGE_DIM,
    PORTFOLIO_FEATURES,
    PROPOSAL_DIM,
    REGIME_NAMES,
    STRUCTURE_BIAS_LEVELS,
    RiskAction,
    TacticalAction,
)
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL


@pytest.fixture(scope="module")
def nets() -> dict[str, torch.nn.Module]:
    return {name: build_network(spec, seed=0) for name, spec in load_specs().items()}


def inputs(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "tactical": torch.randn(batch, *TACTICAL.shape, generator=g),
        "structure": torch.randn(batch, *STRUCTURE.shape, generator=g),
        "regime": torch.randn(batch, *REGIME.shape, generator=g),
        "portfolio": torch.randn(batch, len(PORTFOLIO_FEATURES), generator=g),
        "proposal": torch.randn(batch, PROPOSAL_DIM, generator=g),
    }


def messages(
    batch: int, m: int, mask: list[bool] | None = None, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    msgs = torch.rand(batch, m, MESSAGE_DIM, generator=g) * 2 - 1
    present = torch.tensor([mask or [True] * m] * batch)
    return msgs, present


# ----------------------------------------------------------------------------------------- specs


def test_specs_load_and_match_the_shared_widths() -> None:
    specs = load_specs()
    assert list(specs) == list(AGENTS)
    assert models_dir().name == "models"
    assert specs["regime"].architecture.n_regimes == len(REGIME_NAMES)
    assert specs["structure"].architecture.senders == ("regime",)
    assert specs["tactical"].architecture.senders == ("regime", "structure")
    assert specs["risk"].training.objective == "dqn"
    for name in ("structure", "tactical"):
        assert specs[name].training.objective == "pretrain"
    # Round trip through plain data (what a saved model directory stores).
    for name, spec in specs.items():
        assert parse_spec(name, spec_to_dict(spec)) == spec


@pytest.mark.parametrize(
    ("agent", "path", "value", "field"),
    [
        ("regime", ("architecture", "heads"), 7, "architecture.heads"),
        ("regime", ("architecture", "d_model"), -1, "architecture.d_model"),
        ("structure", ("architecture", "message_dim"), 32, "architecture.message_dim"),
        ("structure", ("architecture", "cnn_kernels"), [3, 4], "architecture.cnn_kernels"),
        ("tactical", ("architecture", "senders"), ["regime", "nobody"], "architecture.senders"),
        ("tactical", ("training", "gamma"), 1.5, "training.gamma"),
        ("risk", ("training", "per_alpha"), "high", "training.per_alpha"),
        ("risk", ("architecture", "n_actions"), 5, "architecture.n_actions"),
        ("risk", ("training", "learning_rate"), 0.1, "training.learning_rate"),  # unknown key
    ],
)
def test_spec_validation_names_the_field(
    agent: str, path: tuple[str, str], value: object, field: str
) -> None:
    data = spec_to_dict(load_spec(agent))
    data[path[0]][path[1]] = value
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse_spec(agent, data)


def test_spec_dir_from_env_and_missing_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AGENTS:
        shutil.copy(models_dir() / f"{name}.yaml", tmp_path / f"{name}.yaml")
    data = yaml.safe_load((tmp_path / "tactical.yaml").read_text())
    del data["training"]["max_grad_norm"]
    (tmp_path / "tactical.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    assert load_spec("regime") == load_spec("regime", tmp_path)
    with pytest.raises(SpecError, match=r"tactical\.yaml[\s\S]*training\.max_grad_norm: Field required"):
        load_spec("tactical")
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(SpecError, match=f"not found.*{MODELS_DIR_ENV}"):
        load_specs()


# ---------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("batch", [1, 8])
def test_shapes_and_ranges(nets: dict, batch: int) -> None:
    x = inputs(batch)
    with torch.no_grad():
        r = nets["regime"](x["regime"])
        s = nets["structure"](x["structure"], *messages(batch, 1))
        t = nets["tactical"](x["tactical"], *messages(batch, 2, [True, False]))
        q = nets["risk"](x["tactical"], x["structure"], x["regime"], x["portfolio"], x["proposal"])
        bias = StructureServing(nets["structure"])(x["structure"], *messages(batch, 1))[1]
    assert r.logits.shape == (batch, len(REGIME_NAMES))
    assert r.volatility.shape == (batch,) and (r.volatility >= 0).all()
    assert s.logits.shape == (batch, len(STRUCTURE_BIAS_LEVELS))
    for v in (s.size, s.confidence):
        assert v.shape == (batch,) and ((v >= 0) & (v <= 1)).all()
    assert s.value.shape == (batch,)
    assert bias.shape == (batch,) and ((bias >= -1) & (bias <= 1)).all()
    assert t.logits.shape == (batch, len(TacticalAction)) and t.value.shape == (batch,)
    assert q.shape == (batch, len(RiskAction))
    for msg in (r.message, s.message, t.message):
        assert msg.shape == (batch, MESSAGE_DIM) and (msg.abs() <= 1).all()
    for out in (*r, *s, *t, q, bias):
        assert torch.isfinite(out).all()
    for logits in (r.logits, s.logits, t.logits):
        torch.testing.assert_close(logits.softmax(-1).sum(-1), torch.ones(batch))


def test_parameter_counts_are_spec_driven(nets: dict) -> None:
    counts = {name: parameter_count(net) for name, net in nets.items()}
    assert all(c > 0 for c in counts.values())
    risk_first = nets["risk"].encoder_weight()[0]
    assert risk_first.shape == (
        load_spec("risk").architecture.encoder_dim,
        sum(r * c for r, c in (TACTICAL.shape, STRUCTURE.shape, REGIME.shape))
        + len(PORTFOLIO_FEATURES)
        + PROPOSAL_DIM,
    )


# --------------------------------------------------------------------------------- communication


def test_comm_attention_all_masked_is_zero_and_finite() -> None:
    torch.manual_seed(0)
    comm = CommAttention(32, MESSAGE_DIM, 32, 4)
    q = torch.randn(5, 32)
    msgs, mask = messages(5, 3, [False, False, False])
    out = comm(q, msgs * 1e6, mask)
    assert torch.equal(out, torch.zeros(5, 32))
    # Mixed rows in one batch: only the row with a message present is non-zero.
    mask = torch.tensor([[False, False, False], [False, True, False]])
    out = comm(q[:2], msgs[:2], mask)
    assert torch.equal(out[0], torch.zeros(32)) and out[1].abs().sum() > 0


@pytest.mark.parametrize("agent", ["structure", "tactical"])
def test_masked_messages_are_ignored(nets: dict, agent: str) -> None:
    net = nets[agent]
    m = net.n_senders
    x = inputs(2)[agent]
    msgs, _ = messages(2, m)
    with torch.no_grad():
        none = net(x, *no_messages(2, m))
        for present in ([False] * m, [True] + [False] * (m - 1)):
            mask = torch.tensor([present] * 2)
            a = net(x, msgs, mask)
            b = net(x, torch.where(mask[..., None], msgs, torch.randn_like(msgs) * 100), mask)
            for u, v in zip(a, b, strict=True):
                assert torch.isfinite(u).all()
                torch.testing.assert_close(u, v, rtol=0, atol=1e-6)
        full = net(x, msgs, torch.ones(2, m, dtype=torch.bool))
        all_absent = net(x, msgs, torch.zeros(2, m, dtype=torch.bool))
    for u, v in zip(none, all_absent, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    assert not torch.allclose(full.logits, none.logits)  # a present message does change the output


def test_gradients_flow_from_consumers_into_senders_message_heads() -> None:
    specs = load_specs()
    regime = build_network(specs["regime"], seed=3).train()
    structure = build_network(specs["structure"], seed=3).train()
    tactical = build_network(specs["tactical"], seed=3).train()
    assert isinstance(regime, RegimeNet) and isinstance(structure, StructureNet)
    assert isinstance(tactical, TacticalNet)
    x = inputs(4)
    r = regime(x["regime"])
    s = structure(x["structure"], r.message[:, None], torch.ones(4, 1, dtype=torch.bool))
    loss = F.cross_entropy(s.logits, torch.tensor([0, 1, 2, 3])) + s.value.pow(2).mean()
    loss.backward()
    g = regime.msg_head.weight.grad
    assert g is not None and g.abs().sum() > 0
    assert regime.embed.weight.grad is not None and regime.embed.weight.grad.abs().sum() > 0
    # With one sender the softmax weight is 1 whatever the key, so the value path carries the gradient.
    assert structure.comm.v.weight.grad is not None and structure.comm.v.weight.grad.abs().sum() > 0

    for net in (regime, structure, tactical):
        net.zero_grad(set_to_none=True)
    r = regime(x["regime"])
    s = structure(x["structure"], r.message[:, None], torch.ones(4, 1, dtype=torch.bool))
    t = tactical(x["tactical"], torch.stack([r.message, s.message], 1), torch.ones(4, 2, dtype=torch.bool))
    t.logits.logsumexp(-1).sum().backward()
    for sender in (regime, structure):
        g = sender.msg_head.weight.grad
        assert g is not None and g.abs().sum() > 0

    # A masked-out sender gets no gradient through the hub.
    for net in (regime, tactical):
        net.zero_grad(set_to_none=True)
    r = regime(x["regime"])
    t = tactical(
        x["tactical"], torch.stack([r.message, r.message * 0], 1), torch.zeros(4, 2, dtype=torch.bool)
    )
    t.value.sum().backward()
    g = regime.msg_head.weight.grad
    assert g is None or g.abs().sum() == 0


# ------------------------------------------------------------------------------------------- risk


def test_risk_cache_is_exact(nets: dict) -> None:
    net = nets["risk"]
    assert isinstance(net, RiskNet)
    x = inputs(8, seed=5)
    with torch.no_grad():
        full = net(x["tactical"], x["structure"], x["regime"], x["portfolio"], x["proposal"])
        cache = net.encode_matrices(x["tactical"], x["structure"], x["regime"])
        cached = net.q_from_cache(cache, x["portfolio"], x["proposal"])
        # Reference: the unsplit first layer over the concatenated state.
        w, b = net.encoder_weight()
        flat = torch.cat(
            [x[k].flatten(1) for k in ("tactical", "structure", "regime", "portfolio", "proposal")], 1
        )
        ref = net.q_mlp(F.relu(net.enc_norm(F.linear(flat, w, b))))
        # The cache of one bar serves many ticks: only portfolio/proposal change.
        tick = net.q_from_cache(cache, x["portfolio"].flip(0), x["proposal"] * 0.5)
        tick_full = net(
            x["tactical"], x["structure"], x["regime"], x["portfolio"].flip(0), x["proposal"] * 0.5
        )
    assert cache.shape == (8, net.cache_dim)
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-6)
    torch.testing.assert_close(ref, full, rtol=0, atol=1e-6)
    torch.testing.assert_close(tick, tick_full, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------ determinism


def test_same_seed_same_bits_and_version() -> None:
    before = torch.random.get_rng_state()
    for name, spec in load_specs().items():
        a, b, c = build_network(spec, seed=11), build_network(spec, seed=11), build_network(spec, seed=12)
        sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
        assert list(sa) == list(sb)
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (name, k)
        assert net_version(a) == net_version(b)
        assert net_version(a).startswith(f"{name}-") and len(net_version(a)) == len(name) + 13
        assert net_version(a) != net_version(c)
        assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert torch.equal(before, torch.random.get_rng_state())  # seeded builds leave the global RNG alone


def test_version_changes_with_spec_only_hyperparameters() -> None:
    spec = load_spec("tactical")
    net = build_network(spec, seed=0)
    data = spec_to_dict(spec)
    data["training"]["lr"] = 1e-3
    other = build_network(parse_spec("tactical", data), seed=0)
    assert net_version(net) != net_version(other)


def test_eval_is_deterministic_train_mode_has_dropout() -> None:
    net = build_network(load_spec("regime"), seed=0)  # own copy: the module fixture stays in eval mode
    x = inputs(2)["regime"]
    with torch.no_grad():
        a, b = net(x), net(x)
        net.train()
        c, d = net(x), net(x)
    assert torch.equal(a.logits, b.logits)
    assert not torch.equal(c.logits, d.logits)
