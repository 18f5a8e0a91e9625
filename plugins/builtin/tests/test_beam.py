"""Greedy and beam decoding of every architecture, against Hugging Face (facts §5.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model.features import encdec_features
from t5kernel import decoding
from t5kernel.api import BuildContext
from t5kernel.errors import ConfigError

transformers = pytest.importorskip("transformers")

from test_encdec import make_pair, random_examples, tensors  # noqa: E402

# three layouts; vocab sizes are multiples of 128 so HF's softmax covers the same columns
# (seed, EOS boost) of each pair were picked so that the beams end at varied lengths
CONFIGS = [
    pytest.param(dict(num_layers=2, d_model=32, d_ff=64, d_kv=8, num_heads=4), 384, 6, 3.0,
                 id="small"),
    pytest.param(
        dict(num_layers=2, num_decoder_layers=3, d_model=48, d_ff=96, d_kv=16, num_heads=3),
        256, 7, 6.0, id="asym-decoder-deeper",
    ),
    pytest.param(
        dict(num_layers=3, d_model=64, d_ff=128, d_kv=32, num_heads=2,
             relative_attention_num_buckets=8, relative_attention_max_distance=20),
        128, 3, 2.5, id="three-layers-8-buckets",
    ),
]


def batch_and_inputs(vocab, seed=4, n=6):
    rng = np.random.default_rng(seed)
    feats = tensors(encdec_features(random_examples(rng, n, 20, 2, vocab), 20, 4, pack=False))
    batch = {k: feats[k] for k in ("encoder_input_tokens", "encoder_segment_ids")}
    return batch, feats


def hf_generate(hf, feats, dims, **kw):
    return hf.generate(
        input_ids=feats["encoder_input_tokens"].long(),
        attention_mask=feats["encoder_segment_ids"] > 0,
        do_sample=False,
        decoder_start_token_id=0,
        eos_token_id=1,
        pad_token_id=0,
        # HF's cache sizes itself by num_layers, wrong when the decoder is deeper
        use_cache="num_decoder_layers" not in dims,
        **kw,
    )[:, 1:]


def canonical(ids, width):
    """Rows cut after their first EOS and padded with 0 to ``width`` (HF pads beams with
    EOS when pad_token_id is 0)."""
    out = torch.zeros(ids.shape[0], width, dtype=torch.long)
    for r, row in enumerate(ids.tolist()):
        row = row[: row.index(1) + 1] if 1 in row else row
        out[r, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def same_ids(a, b):
    width = max(a.shape[1], b.shape[1])
    return torch.equal(canonical(a, width), canonical(b, width))


@pytest.mark.parametrize("dims,vocab,seed,boost", CONFIGS)
def test_greedy_matches_hugging_face(dims, vocab, seed, boost):
    ours, hf = make_pair(dims, vocab, seed=seed, eos_boost=boost, embed_scale=0.05)
    batch, feats = batch_and_inputs(vocab)
    ids = ours.generate(batch, 12)
    ref = hf_generate(hf, feats, dims, num_beams=1, max_new_tokens=12)
    assert same_ids(ids, ref)
    assert max(len(set(r.tolist())) for r in ids) >= 3  # outputs are not degenerate


@pytest.mark.parametrize("dims,vocab,seed,boost", CONFIGS)
def test_beam_matches_hugging_face(dims, vocab, seed, boost):
    """``length_penalty="hf"`` reproduces ``generate(num_beams=4, length_penalty=0.6)``."""
    ours, hf = make_pair(dims, vocab, seed=seed, eos_boost=boost, embed_scale=0.05)
    batch, feats = batch_and_inputs(vocab)
    ids = ours.generate(batch, 12, num_beams=4, alpha=0.6, length_penalty="hf")
    ref = hf_generate(hf, feats, dims, num_beams=4, length_penalty=0.6, max_new_tokens=12,
                      early_stopping=False)
    assert same_ids(ids, ref)
    rows = canonical(ids, 12).tolist()
    lengths = [r.index(1) + 1 if 1 in r else 0 for r in rows]
    assert 0 in lengths and len({n for n in lengths if n > 1}) >= 2  # varied endings


def test_paper_beam_scores_its_output():
    """The paper's reference ("mtf", the default) returns, per row, a sequence that ends at
    its first EOS (0 after) or runs to max_length, and its GNMT-normalised log-probability."""
    dims, vocab, seed, boost = CONFIGS[0].values
    ours, _ = make_pair(dims, vocab, seed=seed, eos_boost=boost, embed_scale=0.05)
    batch, _ = batch_and_inputs(vocab)
    with torch.no_grad():
        ids, scores = decoding.beam_search(ours.incremental_decoder(batch, 4), 6, 4, 12)
    assert torch.equal(ids, ours.generate(batch, 12, num_beams=4))
    logp = sequence_logprobs(ours, batch, ids)
    for r, row in enumerate(ids.tolist()):
        if 1 in row:
            n = row.index(1) + 1
            assert all(t == 0 for t in row[n:])
            assert abs(float(scores[r]) - float(logp[r]) / ((5 + n) / 6) ** 0.6) < 1e-4
        else:
            assert len(row) == 12 and abs(float(scores[r]) - float(logp[r])) < 1e-4


# ------------------------------------------------------------------- every arch
ARCHS = ["encdec", "encdec_shared", "encdec_half", "lm", "prefix_lm"]


def build(name, seed=0):
    from t5k_builtin.model.decoder_only import LMArchitecture, PrefixLMArchitecture
    from t5k_builtin.model.encdec import EncDecArchitecture, EncDecHalfArchitecture
    from t5k_builtin.model.encdec_shared import EncDecSharedArchitecture

    cls = {
        "encdec": EncDecArchitecture, "encdec_shared": EncDecSharedArchitecture,
        "encdec_half": EncDecHalfArchitecture, "lm": LMArchitecture,
        "prefix_lm": PrefixLMArchitecture,
    }[name]
    cfg = EncDecConfig(num_layers=2, d_model=32, d_ff=64, d_kv=8, num_heads=4, dropout_rate=0.0)
    arch = cls(cfg, BuildContext(seed=seed))
    model = arch.build(200)
    with torch.no_grad():  # make a random model talk instead of echoing EOS at once
        model.shared.weight.mul_(0.2)
        model.shared.weight[1] *= 3.0
        model.decoder.relative_attention_bias.weight.mul_(10.0)
    return arch, model


def prompts(arch, n=4, seed=3):
    rng = np.random.default_rng(seed)
    exs = [{"inputs": np.append(rng.integers(2, 200, rng.integers(2, 9)), 1),
            "targets": np.array([5, 1])} for _ in range(n)]
    feats = arch.features(exs, 10, 6, pack=False)
    return {k: torch.from_numpy(v) for k, v in feats.items() if k.startswith("encoder")}


@pytest.mark.parametrize("name", ARCHS)
def test_beam_cache_equals_recompute_and_rows_are_independent(name):
    arch, model = build(name, seed=1)
    batch = prompts(arch)
    cached = model.generate(batch, 8, num_beams=3)
    full = model.generate(batch, 8, num_beams=3, use_cache=False)
    assert torch.equal(cached, full)
    for r in range(batch["encoder_input_tokens"].shape[0]):
        alone = {k: v[r:r + 1] for k, v in batch.items()}
        row = model.generate(alone, 8, num_beams=3)
        assert torch.equal(row[0], cached[r, :row.shape[1]])
        assert (cached[r, row.shape[1]:] == 0).all()


@pytest.mark.parametrize("name", ARCHS)
def test_beam_finds_at_least_the_greedy_score(name):
    """With alpha = 0 the beam's best log-probability is never below greedy's (the
    greedy path stays among the 4 beams until it ends or a better ending is found)."""
    arch, model = build(name, seed=2)
    batch = prompts(arch, n=3, seed=9)
    k = 4
    greedy_dec = model.incremental_decoder(batch, 1)
    greedy = decoding.greedy_search(greedy_dec, 3, 8)
    beam_dec = model.incremental_decoder(batch, k)
    with torch.no_grad():
        _, beam_scores = decoding.beam_search(beam_dec, 3, k, 8, alpha=0.0)
    scores = sequence_logprobs(model, batch, greedy)
    ended = (greedy == 1).any(1)
    assert (beam_scores[ended] >= scores[ended] - 1e-4).all()


def sequence_logprobs(model, batch, ids):
    """Sum of per-step log-probabilities of ``ids`` (teacher forcing through the decoder)."""
    dec = model.incremental_decoder(batch, 1)
    total = torch.zeros(ids.shape[0])
    alive = torch.ones(ids.shape[0], dtype=torch.bool)
    tokens = None
    with torch.no_grad():
        for t in range(ids.shape[1]):
            lp = torch.log_softmax(dec.step(tokens), -1)
            tok = ids[:, t]
            total += torch.where(alive, lp.gather(1, tok[:, None])[:, 0], torch.zeros(()))
            alive = alive & (tok != 1)
            tokens = tok
    return total


@pytest.mark.parametrize("name", ["encdec", "prefix_lm"])
def test_ensemble_of_two_models(name):
    arch_a, a = build(name, seed=1)
    _, b = build(name, seed=7)
    batch = prompts(arch_a)
    same = decoding.generate([a, a], batch, 8, num_beams=3)
    assert torch.equal(same, a.generate(batch, 8, num_beams=3))
    mixed = decoding.generate([a, b], batch, 8)
    # greedy on the ensemble = argmax of the averaged log-probs, step by step
    da, db = a.incremental_decoder(batch, 1), b.incremental_decoder(batch, 1)
    tokens = None
    with torch.no_grad():
        for t in range(mixed.shape[1]):
            avg = torch.log_softmax(da.step(tokens), -1) + torch.log_softmax(db.step(tokens), -1)
            want = avg.argmax(-1)
            live = t == 0 or ~(mixed[:, :t] == 1).any(1)
            assert torch.equal(mixed[:, t][live], want[live])
            tokens = mixed[:, t]
    assert a.training is True or a.training is False  # modes restored below
    a.train()
    b.eval()
    decoding.generate([a, b], batch, 2)
    assert a.training and not b.training


@pytest.mark.parametrize("name", ["encdec", "lm", "prefix_lm"])
def test_extra_padding_columns_change_nothing(name):
    """Decoding trims all-padding columns (trim_padding): wider padding, same outputs."""
    arch, model = build(name, seed=4)
    batch = prompts(arch, n=3, seed=5)
    wide = {k: torch.nn.functional.pad(v, (0, 40)) for k, v in batch.items()}
    for beams in (1, 3):
        assert torch.equal(model.generate(batch, 6, num_beams=beams),
                           model.generate(wide, 6, num_beams=beams))


# ------------------------------------------------------------------- static shapes
def test_bucket_width():
    from t5k_builtin.model.encdec import bucket_width

    assert [bucket_width(w, 48) for w in (0, 1, 8, 9, 16, 17, 33)] == [8, 8, 8, 16, 16, 32, 48]
    assert bucket_width(5, 6) == 6  # never wider than the batch


# (arch, seed, EOS row scale): picked so that rows end at varied steps
STATIC_CASES = [("encdec", 4, 1.0), ("encdec_shared", 5, 1.0), ("encdec_half", 5, 1.0),
                ("lm", 3, 1.0), ("prefix_lm", 5, 0.4)]


@pytest.mark.parametrize("name,seed,eos", STATIC_CASES)
def test_static_shapes_decode_like_dynamic(name, seed, eos):
    """Fixed-shape decoding (encoder/prompt width bucketed, preallocated key/value
    buffers written at a device step index, every row kept; t5kernel.decoding "static
    shapes") gives the dynamic decoder's ids: greedy and both beam references, with and
    without the cache, for batches whose padding falls in different width buckets."""
    arch, model = build(name, seed=seed)
    with torch.no_grad():
        model.shared.weight[1] *= eos
    ends = set()
    for data_seed, extra in ((5, 0), (6, 13), (8, 40)):
        batch = prompts(arch, n=4, seed=data_seed)
        batch = {k: torch.nn.functional.pad(v, (0, extra)) for k, v in batch.items()}
        for beams, style in ((1, "mtf"), (3, "mtf"), (2, "hf")):
            for cache in (True, False) if extra == 0 else (True,):
                kw = dict(num_beams=beams, length_penalty=style, use_cache=cache)
                want = model.generate(batch, 9, **kw)
                got = model.generate(batch, 9, static_shapes=True, **kw)
                assert torch.equal(got, want), (data_seed, beams, style, cache)
            ends.update(r.index(1) if 1 in r else -1 for r in want.tolist())
    assert len(ends) >= 3  # rows end at different steps (and some never)


def test_static_decoder_keeps_its_shapes():
    """Every step of a static decoder sees the same cache shapes and one device index."""
    arch, model = build("encdec", seed=4)
    batch = prompts(arch, n=3, seed=6)
    dec = model.incremental_decoder(batch, 2, static_shapes=True, max_length=5)
    assert not decoding.can_select(dec)
    tokens = None
    with torch.no_grad():
        for t in range(5):
            logits = dec.step(tokens)
            shapes = {tuple(layer["self"]["k"].shape) for layer in dec.cache}
            assert shapes == {(6, 4, 5, 8)} and int(dec.index) == t + 1
            tokens = logits.argmax(-1)
            dec.reorder(torch.tensor([1, 0, 2, 3, 5, 4]))
    with pytest.raises(ConfigError, match="max_length"):
        model.incremental_decoder(batch, 1, static_shapes=True)


# ------------------------------------------------------------------ compiled steps
@pytest.mark.slow
@pytest.mark.parametrize("name,seed,eos", [("encdec", 4, 1.0), ("prefix_lm", 5, 0.4)])
def test_compiled_steps_decode_like_eager(name, seed, eos):
    """``generate(..., compile=True)`` (static shapes, the decoder step under
    torch.compile) gives the eager dynamic decoder's ids, greedy and beam, and traces each
    step as one whole graph (a graph break would silently run part of it eagerly). The
    wrapper keeps its own recompile budget: with dynamo's global limit at 1, both row
    counts still compile (the limit is per wrapper where torch.compile takes
    ``isolate_recompiles``)."""
    import inspect

    from torch._dynamo import config as dynamo_config
    from torch._dynamo.utils import counters

    arch, model = build(name, seed=seed)
    with torch.no_grad():
        model.shared.weight[1] *= eos
    batch = prompts(arch, n=4, seed=6)
    counters.clear()
    own_budget = "isolate_recompiles" in inspect.signature(torch.compile).parameters
    with dynamo_config.patch(recompile_limit=1 if own_budget else 8):
        for beams in (1, 3):
            want = model.generate(batch, 9, num_beams=beams)
            got = model.generate(batch, 9, num_beams=beams, compile=True)
            assert torch.equal(got, want), beams
            assert torch.equal(model.generate(batch, 9, num_beams=beams, compile=True), want)
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == 2  # one per row count (4, 12), reused


def test_compiled_decoder_is_made_once_and_stays_out_of_the_module_tree():
    """The compiled wrapper is cached per module (so every batch reuses its graphs) but is
    not a submodule: parameters, state-dict names and ``modules()`` are unchanged, and a
    deep copy's wrapper compiles the copy's own decoder."""
    import copy

    from t5k_builtin.model import layers

    _, model = build("encdec")
    names, count = list(model.state_dict()), len(list(model.modules()))
    compiled = layers.compiled_for_decoding(model.decoder)
    assert layers.compiled_for_decoding(model.decoder) is compiled
    assert compiled._orig_mod is model.decoder
    assert list(model.state_dict()) == names and len(list(model.modules())) == count
    layers.compiled_for_decoding(model, "decode")
    twin = copy.deepcopy(model)
    assert layers.compiled_for_decoding(twin.decoder)._orig_mod is twin.decoder
    assert layers.compiled_for_decoding(twin, "decode") is not layers.compiled_for_decoding(
        model, "decode")
    import pickle

    assert pickle.loads(pickle.dumps(model.decoder)).__dict__["_t5k_compiled"] == {}


def test_compiled_decoding_needs_the_static_cached_decoder():
    arch, model = build("encdec")
    batch = prompts(arch)
    with pytest.raises(ConfigError, match="use_cache=True"):
        model.generate(batch, 4, compile=True, use_cache=False)
    with pytest.raises(ConfigError, match="static_shapes=True"):
        model.incremental_decoder(batch, 1, compile=True)


def test_compiled_decoding_refuses_models_that_cannot_compile():
    """A model whose incremental_decoder takes no ``compile`` gets a clear error, not a
    TypeError from deep inside the search."""
    arch, model = build("encdec")

    class Plain(torch.nn.Module):
        def incremental_decoder(self, batch, num_beams, use_cache, static_shapes=False,
                                max_length=None):
            return model.incremental_decoder(batch, num_beams, use_cache, static_shapes,
                                             max_length)

    with pytest.raises(ConfigError, match="Plain.incremental_decoder.*compile"):
        decoding.generate(Plain(), prompts(arch), 4, compile=True)


def test_step_bias_rows_equal_the_full_bias_past_the_table_doublings():
    """Each decoding step's self-attention bias row is that row of the full causal
    position bias, through the table's doublings (64, 130, 262 positions), and the table
    stays one row (it was [L, L]: 1.8 GB by 4,096 steps of a tiny model)."""
    _, model = build("encdec", seed=4)
    dec = model.incremental_decoder(prompts(build("encdec")[0]), 1)
    full = model.decoder.position_bias(torch.arange(300)[None, :], torch.arange(300)[None, :])
    for t in (0, 1, 63, 64, 65, 129, 130, 200, 299):
        assert torch.equal(dec._step_bias(t), full[:, :, t:t + 1, :t + 1]), t
    assert dec._bias_table.shape[2] == 1
