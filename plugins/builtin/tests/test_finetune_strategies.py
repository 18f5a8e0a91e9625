"""Adapters and gradual unfreezing (P §3.5.1, Table 10; facts §7.1-7.2)."""

from __future__ import annotations

import pytest
import torch

from t5k_builtin.configs import (
    AdafactorConfig,
    AdaptersConfig,
    EncDecConfig,
    GradualUnfreezeConfig,
)
from t5k_builtin.finetune import Adapters, GradualUnfreeze
from t5k_builtin.model.decoder_only import DecoderOnlyModel
from t5k_builtin.model.encdec import EncDecModel
from t5k_builtin.model.encdec_shared import EncDecSharedModel
from t5k_builtin.optim.adafactor import AdafactorFactory
from t5kernel.api import BuildContext
from t5kernel.errors import ConfigError

D_MODEL, VOCAB = 16, 64


def model_of(cls=EncDecModel, layers=3, decoder_layers=None, seed=0):
    cfg = EncDecConfig(num_layers=layers, num_decoder_layers=decoder_layers, d_model=D_MODEL,
                       d_ff=32, d_kv=8, num_heads=2, dropout_rate=0.0)
    torch.manual_seed(seed)
    return cls(cfg, VOCAB)


def batch(seed=0, rows=4):
    gen = torch.Generator().manual_seed(seed)
    return {"encoder_input_tokens": torch.randint(2, VOCAB, (rows, 10), generator=gen),
            "decoder_target_tokens": torch.randint(2, VOCAB, (rows, 6), generator=gen)}


def adapters(**options):
    return Adapters(AdaptersConfig(**options), BuildContext(seed=3))


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


# --------------------------------------------------------------------------- adapters


@pytest.mark.parametrize("d", [4, 32])
@pytest.mark.parametrize("norms", [True, False])
def test_adapter_trainable_count_is_the_closed_form(d, norms):
    layers = 3
    model = model_of(layers=layers)
    adapters(inner_dim=d, train_layer_norms=norms).setup(model, 10)
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    per_adapter = 2 * D_MODEL * d + D_MODEL  # W_i, W_o, its RMSNorm scale
    blocks = 2 * layers
    # encoder blocks: 2 norms, decoder blocks: 3, plus one final norm per stack
    model_norms = (2 * layers + 3 * layers + 2) * D_MODEL
    assert count == blocks * per_adapter + (model_norms if norms else 0)
    assert not model.shared.weight.requires_grad  # the embedding is frozen


def test_adapters_follow_every_ffn_of_every_architecture():
    for cls, blocks in ((EncDecModel, 4), (DecoderOnlyModel, 2), (EncDecSharedModel, 2)):
        model = model_of(cls, layers=2)
        names = model.add_adapters(8)
        assert len([n for n in names if n.endswith("DenseReluDense.wi.weight")]) == blocks


@pytest.mark.parametrize("init, tolerance", [("zero", 0.0), ("near_identity", 1e-3)])
def test_adapters_start_as_near_identity(init, tolerance):
    def logits(m):  # the real vocabulary's columns (padding columns are -inf)
        with torch.no_grad():
            return m(batch(), return_logits=True).logits[..., :VOCAB]

    model = model_of().eval()
    before = logits(model)
    adapters(inner_dim=16, init=init).setup(model, 10)
    scale = before.abs().max()
    assert (logits(model) - before).abs().max() <= tolerance * scale
    mtf = model_of().eval()
    adapters(inner_dim=16, init="mtf").setup(mtf, 10)
    assert (logits(mtf) - before).abs().max() > 1e-2 * scale


def _train(model, steps=3):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = AdafactorFactory(AdafactorConfig(), BuildContext()).create(params)
    for group in optimizer.param_groups:
        group["lr"], group["global_step"] = 0.05, 0
    losses = []
    for step in range(steps):
        out = model(batch(step))
        loss = out.loss_sum / out.num_tokens
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return optimizer, losses


@pytest.mark.parametrize("strategy", ["adapters", "gradual_unfreeze"])
def test_frozen_parameters_stay_bit_identical_and_hold_no_optimizer_state(strategy):
    model = model_of().train()
    if strategy == "adapters":
        adapters(inner_dim=8, init="mtf").setup(model, 10)
    else:
        GradualUnfreeze(GradualUnfreezeConfig(), None).setup(model, 30)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    live = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert frozen and live
    optimizer, _ = _train(model)
    named = dict(model.named_parameters())
    assert all(torch.equal(named[n], v) for n, v in frozen.items())
    assert any(not torch.equal(named[n], v) for n, v in live.items())
    held = {id(p) for p in optimizer.state}
    assert held == {id(named[n]) for n in live}  # state only for trainable parameters


# ------------------------------------------------------------------ gradual unfreezing


def test_unfreezing_schedule_top_blocks_first_both_stacks():
    model = model_of(layers=3)
    strategy = GradualUnfreeze(GradualUnfreezeConfig(), None)
    strategy.setup(model, 30)  # 3 episodes of 10 steps (one per block)
    blocks = {(b.stack, b.index): set(b.parameters) for b in model.blocks()}

    def trained_blocks():
        names = trainable(model)
        return sorted(k for k, params in blocks.items() if params <= names)

    assert trained_blocks() == [("decoder", 2), ("encoder", 2)]
    assert model.shared.weight.requires_grad  # the embedding trains throughout
    changes = [step for step in range(30) if strategy.update(model, step)]
    assert changes == [10, 20]
    strategy.update(model, 10)
    assert trained_blocks() == [("decoder", 1), ("decoder", 2), ("encoder", 1), ("encoder", 2)]
    strategy.update(model, 29)
    assert len(trained_blocks()) == 6
    # relative-position tables live in block 0: frozen until the last episode
    strategy.update(model, 19)
    assert not model.encoder.relative_attention_bias.weight.requires_grad


def test_unfreezing_with_fewer_episodes_and_unequal_stacks():
    model = model_of(layers=4, decoder_layers=2)
    strategy = GradualUnfreeze(GradualUnfreezeConfig(episodes=2, train_embedding=False), None)
    strategy.setup(model, 100)
    assert strategy.unfrozen(0) == {"encoder": [2, 3], "decoder": [1]}
    assert strategy.unfrozen(1) == {"encoder": [0, 1, 2, 3], "decoder": [0, 1]}
    assert not model.shared.weight.requires_grad
    assert strategy.episode(49) == 0 and strategy.episode(50) == 1 and strategy.episode(99) == 1


def test_bad_strategy_configs():
    with pytest.raises(ConfigError, match="inner_dim"):
        adapters(inner_dim=0)
    with pytest.raises(ConfigError, match="init"):
        adapters(init="ones")
    with pytest.raises(ConfigError, match="episodes"):
        GradualUnfreeze(GradualUnfreezeConfig(episodes=-1), None)
    with pytest.raises(ConfigError, match="cannot add adapter"):
        adapters().setup(torch.nn.Linear(2, 2), 10)
