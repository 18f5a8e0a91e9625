"""Adafactor (facts §5.1): agreement with HF where semantics coincide, MTF factoring rule,
exact resume, and that it actually optimises."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from t5k_builtin.configs import AdafactorConfig
from t5k_builtin.optim.adafactor import Adafactor, AdafactorFactory, factored_dims
from t5kernel.api import BuildContext, OptimizerFactory
from t5kernel.errors import ConfigError

hf_optimization = pytest.importorskip("transformers.optimization")


def _make(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g) * 0.05) for s in shapes]


def _grads(shapes, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g) * (1 + k) for s in shapes] for k in range(steps)]


def _run(opt, params, grads, lrs):
    for lr, step_grads in zip(lrs, grads, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        for p, grad in zip(params, step_grads, strict=True):
            p.grad = grad.clone()
        opt.step()


@pytest.mark.parametrize(
    "shapes",
    [
        [(128, 256), (256, 128), (2, 130, 140)],  # factored in both (all dims >= 128 / last two)
        [(7,), (300,), (1,)],  # vectors: unfactored in both
    ],
)
def test_matches_hf_adafactor_where_semantics_coincide(shapes):
    ours = _make(shapes)
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    grads = _grads(shapes, steps=5)
    lrs = [1e-2, 1e-2, 5e-3, 1e-3, 1e-3]
    _run(Adafactor(ours), ours, grads, lrs)
    hf = hf_optimization.Adafactor(
        theirs,
        lr=lrs[0],
        scale_parameter=True,
        relative_step=False,
        warmup_init=False,
        clip_threshold=1.0,
        decay_rate=-0.8,
        beta1=None,
    )
    _run(hf, theirs, grads, lrs)
    for a, b, start in zip(ours, theirs, _make(shapes), strict=True):
        assert not torch.equal(a.detach(), start.detach())  # it moved
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_small_dimension_is_not_factored_but_large_ones_are():
    small, large, three_d = _make([(64, 256), (128, 300), (200, 3, 130)])
    opt = Adafactor([small, large, three_d], lr=1e-3)
    for p in (small, large, three_d):
        p.grad = torch.ones_like(p)
    opt.step()
    assert set(opt.state[small]) == {"step", "v"}
    assert opt.state[small]["v"].shape == (64, 256)
    assert opt.state[large]["vr"].shape == (128,)  # MTF: shape minus the largest dim
    assert opt.state[large]["vc"].shape == (300,)
    # The two largest dims of [200, 3, 130] are 0 and 2 (not the last two, as HF assumes).
    assert factored_dims((200, 3, 130), True, 128) == (0, 2)
    assert opt.state[three_d]["vr"].shape == (3, 130)
    assert opt.state[three_d]["vc"].shape == (200, 3)
    assert factored_dims((64, 256), True, 128) is None
    assert factored_dims((256, 256), False, 128) is None


def test_factored_update_matches_the_formula_in_float64():
    """One MTF update of a 3-D tensor computed by hand: V ~ R_i C_j / mean(R)."""
    (p,) = _make([(200, 3, 130)])
    g = torch.randn(200, 3, 130, generator=torch.Generator().manual_seed(5))
    p0 = p.detach().double().numpy().copy()
    opt = Adafactor([p], lr=0.01)
    for step in (1, 2):
        p.grad = g * step
        opt.step()
    gn = g.double().numpy()
    vr = vc = None
    x = p0
    for step in (1, 2):
        gs = gn * step
        decay = 1.0 - step**-0.8
        g2 = gs**2 + 1e-30
        r = g2.mean(axis=2)  # [200, 3] (kept dims 0, 1: reduced over the 130 dim)
        c = g2.mean(axis=0)  # [3, 130]
        vr = r * (1 - decay) if vr is None else vr * decay + r * (1 - decay)
        vc = c * (1 - decay) if vc is None else vc * decay + c * (1 - decay)
        v_hat = vr[:, :, None] * vc[None, :, :] / vr.mean(axis=0)[None, :, None]
        u = gs / np.sqrt(v_hat)
        u /= max(1.0, np.sqrt((u**2).mean()))
        x = x - 0.01 * max(np.sqrt((x**2).mean()), 1e-3) * u
    np.testing.assert_allclose(p.detach().double().numpy(), x, rtol=2e-5, atol=1e-7)


def test_global_step_reproduces_mtf_decay_when_fine_tuning_continues():
    (p,) = _make([(5,)])
    g = torch.arange(1.0, 6.0)
    opt = Adafactor([p], lr=1e-3)
    opt.param_groups[0]["global_step"] = 99  # the 100th update of the run
    p.grad = g.clone()
    opt.step()
    decay = 1.0 - 100**-0.8
    torch.testing.assert_close(opt.state[p]["v"], (g**2 + 1e-30) * (1 - decay))
    assert opt.state[p]["step"] == 1


def test_skips_frozen_and_gradless_parameters():
    a, b, c = _make([(3,), (4,), (5,)])
    b.requires_grad_(False)
    b.grad = torch.ones(4)
    opt = Adafactor([a, b, c], lr=1e-2)
    a.grad = torch.ones(3)
    before_b, before_c = b.detach().clone(), c.detach().clone()
    opt.step()
    assert a in opt.state and b not in opt.state and c not in opt.state
    assert torch.equal(b, before_b) and torch.equal(c, before_c)


def test_state_dict_round_trip_continues_bit_identically():
    shapes = [(130, 140), (9,), (12, 200)]
    params = _make(shapes)
    grads = _grads(shapes, steps=6)
    opt = Adafactor(params, lr=1e-2)
    _run(opt, params, grads[:3], [1e-2] * 3)

    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    saved_params = [p.detach().clone() for p in params]

    _run(opt, params, grads[3:], [1e-2, 5e-3, 5e-3])

    resumed = [torch.nn.Parameter(p.clone()) for p in saved_params]
    opt2 = Adafactor(resumed, lr=None)
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    assert opt2.state[resumed[0]]["step"] == 3 and isinstance(opt2.state[resumed[0]]["step"], int)
    _run(opt2, resumed, grads[3:], [1e-2, 5e-3, 5e-3])
    for a, b in zip(params, resumed, strict=True):
        assert torch.equal(a, b)


def test_bfloat16_parameters_keep_float32_state_across_resume():
    p = torch.nn.Parameter(torch.randn(6).to(torch.bfloat16))
    opt = Adafactor([p], lr=1e-2)
    p.grad = torch.randn(6).to(torch.bfloat16)
    opt.step()
    state = copy.deepcopy(opt.state_dict())
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = Adafactor([q], lr=1e-2)
    opt2.load_state_dict(state)
    assert opt2.state[q]["v"].dtype == torch.float32
    assert torch.equal(opt2.state[q]["v"], opt.state[p]["v"])


def test_regression_loss_falls():
    torch.manual_seed(0)
    x = torch.randn(256, 16)
    w_true = torch.randn(16, 4)
    y = x @ w_true
    model = torch.nn.Linear(16, 4)
    opt = AdafactorFactory(AdafactorConfig(min_dim_size_to_factor=4), BuildContext()).create(
        model.parameters()
    )
    assert "vr" not in opt.state.get(model.weight, {})

    def loss_fn():
        return ((model(x) - y) ** 2).mean()

    first = loss_fn().item()
    for _ in range(200):
        opt.param_groups[0]["lr"] = 0.05
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()
    assert set(opt.state[model.weight]) == {"step", "vr", "vc"}  # 16x4 factored at min 4
    assert loss_fn().item() < 0.05 * first


def test_factory_protocol_and_errors():
    factory = AdafactorFactory(AdafactorConfig(), BuildContext())
    assert isinstance(factory, OptimizerFactory)
    (p,) = _make([(3,)])
    opt = factory.create([p])
    p.grad = torch.ones(3)
    with pytest.raises(ConfigError, match="lr"):
        opt.step()
    with pytest.raises(ConfigError, match="decay_exponent"):
        AdafactorFactory(AdafactorConfig(decay_exponent=0.0), BuildContext())
    with pytest.raises(ConfigError, match="beta1"):
        AdafactorFactory(AdafactorConfig(beta1=1.5), BuildContext())


def test_beta1_momentum_slot():
    (p,) = _make([(4,)])
    opt = Adafactor([p], lr=1e-2, beta1=0.9)
    p.grad = torch.ones(4)
    before = p.detach().clone()
    opt.step()
    assert set(opt.state[p]) == {"step", "v", "m"}
    # m = 0.1 * step; the parameter moves by m.
    torch.testing.assert_close(before - p.detach(), opt.state[p]["m"])
