"""Training attention through FlexAttention (``EncDecModel.flex_attention``) computes the
dense path's function: the position bias added in a ``score_mod``, segment and causal
masks as a block mask. On CPU the forward, and the gradients through torch's dense
reference backward of FlexAttention (its public function refuses a CPU backward); the
fused kernel's gradients on a GPU (skipped without one; run by benchmarks/gpu_check.sh)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_encdec import random_examples, tensors  # noqa: E402

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model.encdec import EncDecModel
from t5k_builtin.model.features import encdec_features

pytest.importorskip("torch.nn.attention.flex_attention")
#: on the CPU FlexAttention runs its unfused reference, which is the point here
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def _model_and_batch(pack: bool, dropout: float = 0.0, broadcast: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    cfg = EncDecConfig(num_layers=2, d_model=32, d_ff=64, d_kv=8, num_heads=4,
                       dropout_rate=dropout, dropout_broadcast=broadcast)
    model = EncDecModel(cfg, 256).train()
    with torch.no_grad():  # (built bare, the tables are zero) a bias large enough to matter
        for stack in (model.encoder, model.decoder):
            stack.relative_attention_bias.weight.normal_(0.0, 2.0)
    rng = np.random.default_rng(seed)
    feats = tensors(encdec_features(random_examples(rng, 6, 20, 6, 256), 32, 16, pack=pack))
    return model, feats


@pytest.mark.parametrize("pack", [False, True], ids=["padded", "packed"])
def test_flex_forward_equals_the_dense_path_on_cpu(pack):
    model, batch = _model_and_batch(pack)
    if pack:
        assert int(batch["encoder_segment_ids"].max()) > 1  # several segments per row
    else:
        assert (batch["encoder_segment_ids"] == 0).any()  # padding to hide
    with torch.no_grad():
        dense = model(batch)
        model.flex_attention = True
        flex = model(batch)
    torch.testing.assert_close(flex.logits, dense.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flex.loss_sum, dense.loss_sum, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["encdec_shared", "encdec_half", "lm"])
def test_flex_in_the_other_architectures(name):
    """The shared-stack and half-depth encoder-decoders take the same path (forward equal
    to their dense one); the decoder-only models refuse it instead of ignoring it."""
    from test_beam import build

    _, model = build(name, seed=2)
    with torch.no_grad():
        model.decoder.relative_attention_bias.weight.normal_(0.0, 2.0)
    _, feats = _model_and_batch(pack=False)
    batch = dict(feats)
    if name == "lm":
        model.train().flex_attention = True
        with pytest.raises(NotImplementedError, match="encoder-decoder models"):
            model({"decoder_target_tokens": batch["decoder_target_tokens"]})
        return
    batch = {k: v.clamp(max=199) if k.endswith("tokens") else v for k, v in batch.items()}
    model.train()
    with torch.no_grad():
        dense = model(batch)
        model.flex_attention = True
        flex = model(batch)
    torch.testing.assert_close(flex.logits, dense.logits, rtol=1e-5, atol=1e-5)


def test_flex_is_for_training_only_and_refuses_elementwise_dropout():
    from t5k_builtin.model import layers

    model, batch = _model_and_batch(pack=False, dropout=0.1, broadcast=False)
    model.flex_attention = True
    with pytest.raises(ValueError, match="element-wise dropout"):
        model(batch)
    calls = []
    real = layers.flex_attend
    layers.flex_attend = lambda *a: calls.append(1) or real(*a)
    try:
        with torch.no_grad():
            model.eval()(batch)  # evaluation keeps the dense path
    finally:
        layers.flex_attend = real
    assert calls == []


def _grads(model, batch, flex: bool, run=None) -> dict[str, torch.Tensor]:
    """Every parameter's gradient of the mean token loss; ``run``: the model (or a
    compiled wrapper of it) to call."""
    model.flex_attention = flex
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the same broadcast dropout masks on both paths
    out = (model if run is None else run)(batch)
    (out.loss_sum / out.num_tokens).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("pack", [False, True], ids=["padded", "packed"])
def test_flex_gradients_equal_the_dense_path_on_cuda(pack):
    """Every parameter's gradient (the relative-position tables' included: FlexAttention
    differentiates through the captured position bias) matches the dense path's, with the
    paper's broadcast dropout drawn from the same seed."""
    model, batch = _model_and_batch(pack, dropout=0.1)
    model.cuda()
    batch = {k: v.cuda() for k, v in batch.items()}
    tf32, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
    try:  # fp32 products on both paths (a cuda backend test may have left TF32 on)
        grads = {flex: _grads(model, batch, flex) for flex in (False, True)}
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    tables = [n for n in grads[True] if "relative_attention_bias" in n]
    assert tables and all(grads[True][n].abs().sum() > 0 for n in tables)
    for name, dense in grads[False].items():
        torch.testing.assert_close(grads[True][name], dense, rtol=2e-4, atol=2e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_flex_gradients_in_a_compiled_model_on_cuda():
    """As the benchmark trains it: the whole model compiled, so the position bias the
    ``score_mod`` captures is an intermediate of the compiled graph, not an input (on the
    CPU, AOT autograd's eager stand-in for FlexAttention's backward returns no gradient
    for such a capture; inductor's kernel has to). Packed rows, broadcast dropout."""
    model, batch = _model_and_batch(True, dropout=0.1)
    model.cuda()
    batch = {k: v.cuda() for k, v in batch.items()}
    tf32, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
    try:
        dense = _grads(model, batch, False)
        compiled = _grads(model, batch, True, run=torch.compile(model))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    tables = [n for n in compiled if "relative_attention_bias" in n]
    assert len(tables) == 2 and all(compiled[n].abs().sum() > 0 for n in tables)
    for name, expected in dense.items():
        torch.testing.assert_close(compiled[name], expected, rtol=5e-4, atol=5e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("pack", [False, True], ids=["padded", "packed"])
def test_flex_gradients_equal_the_dense_path_through_the_reference_backward(pack, monkeypatch):
    """The gradients of our FlexAttention construction (the position bias captured by the
    ``score_mod``, the segment/causal block masks), every parameter's, the relative
    position tables' included, equal the dense path's on the CPU. FlexAttention refuses a
    CPU backward only by a device check; behind it is torch's dense reference
    implementation of the same operator and its backward, which this test runs. What is
    left for the GPU test is the fused kernel itself."""
    import torch.nn.attention.flex_attention as flex_module

    if not hasattr(flex_module, "_validate_device"):
        pytest.skip("this torch has no FlexAttention device check to step around")
    monkeypatch.setattr(flex_module, "_validate_device", lambda *args: None)
    model, batch = _model_and_batch(pack, dropout=0.1)
    dense, flex = _grads(model, batch, False), _grads(model, batch, True)
    tables = [n for n in flex if "relative_attention_bias" in n]
    assert len(tables) == 2 and all(flex[n].abs().sum() > 0 for n in tables)
    for name, expected in dense.items():
        torch.testing.assert_close(flex[name], expected, rtol=2e-4, atol=2e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")
