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


# --- foreach path (torch._foreach_* over all plain tensors) vs the per-parameter path ---

_MIXED = [
    ((130, 140), torch.float32),  # factored
    ((256, 128), torch.float32),  # factored, largest dim first
    ((64, 256), torch.float32),  # 2-d below min_dim_size_to_factor: full v
    ((7,), torch.float32),  # 1-d
    ((130, 2, 128), torch.float32),  # 3-d factored over dims 0 and 2
    ((128, 130), torch.bfloat16),  # low-precision factored
    ((33,), torch.bfloat16),  # low-precision unfactored
]


def _mixed_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter((torch.randn(s, generator=g) * 0.05).to(dt)) for s, dt in _MIXED]


def _mixed_grads(steps, seed=3):
    """Per step one grad per parameter; parameter 3 has no grad on steps 1 and 3."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(steps):
        row = [(torch.randn(s, generator=g) * (1 + k)).to(dt) for s, dt in _MIXED]
        if k in (1, 3):
            row[3] = None
        out.append(row)
    return out


def _step_all(opt, params, grads, lr, global_step=None):
    for group in opt.param_groups:
        group["lr"] = lr
        group["global_step"] = global_step
    for p, grad in zip(params, grads, strict=True):
        p.grad = None if grad is None else grad.clone()
    opt.step()


def _assert_same_state(opt_a, params_a, opt_b, params_b):
    for a, b in zip(params_a, params_b, strict=True):
        if a.dtype == torch.float32:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7 * b.abs().max().item())
        else:  # one rounding of float32 math that agrees to ~1e-7: at most 1 ulp apart
            torch.testing.assert_close(a.float(), b.float(), rtol=2**-7, atol=1e-6)
        sa, sb = opt_a.state[a], opt_b.state[b]
        assert set(sa) == set(sb)
        assert sa.get("step") == sb.get("step")
        for key in sa:
            if key != "step":
                assert sa[key].dtype == sb[key].dtype == torch.float32
                # relative to the slot's scale: momentum entries can cancel to ~0
                scale = sb[key].abs().max().item()
                torch.testing.assert_close(sa[key], sb[key], rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize(
    "options, global_step, chunk",
    [
        (dict(), None, None),
        (dict(beta1=0.9), None, None),
        (dict(), 41, None),
        (dict(clipping_threshold=None, multiply_by_parameter_scale=False), None, None),
        (dict(beta1=0.5), 7, 30_000),  # several foreach chunks per step
    ],
)
def test_foreach_path_matches_per_parameter_path(options, global_step, chunk, monkeypatch):
    import t5k_builtin.optim.adafactor as adafactor_module

    if chunk is not None:
        monkeypatch.setattr(adafactor_module, "_FOREACH_CHUNK_NUMEL", {"cpu": chunk})
    # Warm-up with the per-parameter path where only some parameters get grads, so the
    # loaded state has different step counts (and no state at all for some).
    start = _mixed_params()
    warm = Adafactor(start, lr=1e-2, foreach=False, **options)
    for k, grads in enumerate(_mixed_grads(3, seed=9)):
        kept = [g if i != 6 and k >= i % 3 else None for i, g in enumerate(grads)]
        _step_all(warm, start, kept, 1e-2)
    warm_state = copy.deepcopy(warm.state_dict())
    steps = {warm.state[p]["step"] for p in start if warm.state[p]}
    assert steps == {1, 2, 3} and any(not warm.state[p] for p in start)

    runs = {}
    for foreach in (False, True):
        params = [torch.nn.Parameter(p.detach().clone()) for p in start]
        opt = Adafactor(params, lr=None, foreach=foreach, **options)
        opt.load_state_dict(copy.deepcopy(warm_state))
        for k, grads in enumerate(_mixed_grads(5)):
            gs = None if global_step is None else global_step + k
            _step_all(opt, params, grads, [1e-2, 1e-2, 5e-3, 1e-3, 1e-3][k], gs)
        runs[foreach] = opt, params
    for p, q in zip(start, runs[True][1], strict=True):
        assert not torch.equal(p, q)  # every parameter moved
    _assert_same_state(*runs[False], *runs[True])
    # Checkpoint format unchanged: the same keys, int steps, float32 slots.
    sd_old, sd_new = runs[False][0].state_dict(), runs[True][0].state_dict()
    assert sd_old["param_groups"] == sd_new["param_groups"]
    for pid, slots in sd_new["state"].items():
        assert isinstance(slots["step"], int) and set(slots) == set(sd_old["state"][pid])


def test_default_uses_foreach_for_plain_tensors_only_when_allowed(monkeypatch):
    params = _make([(130, 140), (5,)])
    for p in params:
        p.grad = torch.ones_like(p)

    def fail(*args):
        raise AssertionError("wrong path")

    opt = Adafactor(params, lr=1e-2)
    assert opt.foreach is None and all(opt._use_foreach(p) for p in params)
    monkeypatch.setattr(opt, "_update", fail)
    opt.step()  # foreach only
    assert opt.state[params[0]]["step"] == 1

    per_param = Adafactor(_make([(130, 140)]), lr=1e-2, foreach=False)
    monkeypatch.setattr(per_param, "_foreach_update", fail)
    per_param.param_groups[0]["params"][0].grad = torch.ones(130, 140)
    per_param.step()  # per-parameter only
    assert not per_param._use_foreach(params[0])


def test_cpu_rms_is_accurate_on_large_tensors():
    """CPU norm kernels lose ~1e-4 relative accuracy at 4M elements; the block sum not."""
    from t5k_builtin.optim.adafactor import _foreach_rms

    x = torch.randn(4 * 2**20, generator=torch.Generator().manual_seed(0)) + 0.3
    y = torch.randn(3, 5)
    rms = _foreach_rms([x, y])
    expected = [t.double().square().mean().sqrt().item() for t in (x, y)]
    np.testing.assert_allclose(rms.double().numpy(), expected, rtol=3e-7)
