"""Hugging Face T5 v1.0 folders <-> encdec (hf_interop; facts §1, §11).

Random-init ``T5ForConditionalGeneration`` models saved with ``save_pretrained`` into
tmp_path; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from t5k_builtin.configs import EncDecConfig, SentencePieceConfig
from t5k_builtin.model import hf_interop
from t5k_builtin.model.decoder_only import LMArchitecture
from t5k_builtin.model.encdec import EncDecArchitecture, EncDecHalfArchitecture
from t5k_builtin.model.encdec_shared import EncDecSharedArchitecture
from t5k_builtin.model.features import encdec_features
from t5k_builtin.vocab import SentencePieceVocabulary, train_sentencepiece
from t5kernel.api import BuildContext
from t5kernel.errors import ConfigError, DataError

transformers = pytest.importorskip("transformers")

SMALL = dict(num_layers=2, d_model=32, d_ff=64, d_kv=8, num_heads=4)
ASYM = dict(num_layers=1, num_decoder_layers=3, d_model=24, d_ff=48, d_kv=8, num_heads=3)


def save_hf(folder, dims, rows, seed=0, **config):
    """A random T5 v1.0 saved with ``save_pretrained``; returns the model (eval mode)."""
    torch.manual_seed(seed)
    cfg = transformers.T5Config(
        vocab_size=rows, num_layers=dims["num_layers"],
        num_decoder_layers=dims.get("num_decoder_layers", dims["num_layers"]),
        d_model=dims["d_model"], d_ff=dims["d_ff"], d_kv=dims["d_kv"],
        num_heads=dims["num_heads"], decoder_start_token_id=0,
        **{"feed_forward_proj": "relu", **config},
    )
    hf = transformers.T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # make the relative position bias matter
        for stack in (hf.encoder, hf.decoder):
            stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight.mul_(8.0)
    hf.save_pretrained(folder)
    return hf


def batch(vocab, seed=0):
    rng = np.random.default_rng(seed)
    examples = [{"inputs": np.append(rng.integers(2, vocab, n), 1),
                 "targets": np.append(rng.integers(2, vocab, m), 1)}
                for n, m in ((9, 6), (4, 3), (12, 7))]
    return {k: torch.from_numpy(v) for k, v in encdec_features(examples, 16, 8, False).items()}


def hf_logits(hf, feats):
    with torch.no_grad():
        return hf(input_ids=feats["encoder_input_tokens"].long(),
                  attention_mask=feats["encoder_segment_ids"] > 0,
                  decoder_input_ids=feats["decoder_input_tokens"].long()).logits


def our_logits(model, feats):
    model.eval()
    with torch.no_grad():
        return model(feats).logits


def assert_close_logits(ours, ref, feats, vocab):
    w = feats["decoder_loss_weights"] > 0
    assert (ours[..., :vocab] - ref[..., :vocab])[w].abs().max() <= 1e-4


@pytest.fixture(scope="module")
def spm_proto():
    import pydoc_data.topics

    texts = list(pydoc_data.topics.topics.values())[:60]
    return train_sentencepiece(texts, SentencePieceConfig(size=200, max_training_texts=60))


# ------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("dims", [SMALL, ASYM], ids=["small", "asym"])
def test_round_trip_gives_identical_tensors_and_logits(tmp_path, dims):
    hf = save_hf(tmp_path / "hf", dims, 384)
    options, state = EncDecArchitecture.from_hf(tmp_path / "hf")
    assert options["num_layers"] == dims["num_layers"]
    assert options["num_decoder_layers"] == dims.get("num_decoder_layers")
    assert options["vocab_divisor"] == 128  # 384 rows, no tokenizer: 384 ids
    arch = EncDecArchitecture(EncDecConfig(**options))
    model = arch.build(384)
    model.load_state_dict(state, strict=True)
    feats = batch(384)
    assert_close_logits(our_logits(model, feats), hf_logits(hf, feats), feats, 384)

    arch.to_hf(model, 384, tmp_path / "out")
    original = load_file(str(tmp_path / "hf" / "model.safetensors"))
    again = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert set(again) == set(original)
    assert all(torch.equal(again[k], original[k]) for k in original)
    back, info = transformers.T5ForConditionalGeneration.from_pretrained(
        tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    full = hf.state_dict()  # the tied aliases come back tied to shared.weight
    assert set(back.state_dict()) == set(full)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in full.items())
    assert torch.equal(hf_logits(back.eval(), feats), hf_logits(hf, feats))


def _train_a_little(model, vocab, steps=3):
    """A few Adam steps so the weights are ours, not an initialisation."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    feats = batch(vocab, seed=5)
    model.train()
    for _ in range(steps):
        out = model(feats)
        opt.zero_grad()
        (out.loss_sum / out.num_tokens).backward()
        opt.step()


@pytest.mark.parametrize("arch_cls,dims,layers", [
    (EncDecArchitecture, ASYM, (1, 3)),
    (EncDecHalfArchitecture, dict(SMALL, num_layers=4, num_decoder_layers=2), (2, 1)),
], ids=["encdec_asym", "encdec_half"])
def test_model_trained_here_loads_in_transformers(tmp_path, arch_cls, dims, layers):
    arch = arch_cls(EncDecConfig(**dims, dropout_rate=0.0), BuildContext(seed=3))
    model = arch.build(300)
    assert model.padded_vocab_size == 384
    _train_a_little(model, 300)
    with torch.no_grad():  # padding rows (masked here, never trained) that would win there
        model.shared.weight[300:] = model.shared.weight[2:86] * 50.0
    arch.to_hf(model, 300, tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (cfg["num_layers"], cfg["num_decoder_layers"], cfg["vocab_size"]) == (*layers, 300)
    assert cfg["tie_word_embeddings"] and cfg["feed_forward_proj"] == "relu"
    hf, info = transformers.T5ForConditionalGeneration.from_pretrained(
        tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    feats = batch(300, seed=1)
    theirs = hf_logits(hf.eval(), feats)
    assert theirs.shape[-1] == 300
    assert_close_logits(our_logits(model, feats), theirs, feats, 300)
    inputs = {"encoder_input_tokens": feats["encoder_input_tokens"],
              "encoder_segment_ids": feats["encoder_segment_ids"]}
    with torch.no_grad():
        ours = model.generate(inputs, 6)
        ref = hf.generate(input_ids=feats["encoder_input_tokens"].long(),
                          attention_mask=feats["encoder_segment_ids"] > 0, max_new_tokens=6,
                          do_sample=False, num_beams=1,
                          use_cache=False)[:, 1:]  # (its cache assumes equal depths)
    assert ours.shape == ref.shape and int(ref.max()) < 300
    assert torch.equal(*(t.masked_fill(_after_eos(t), 0) for t in (ours, ref)))


def _after_eos(ids):
    """Positions after each row's first EOS (id 1): transformers fills them with EOS, we
    with 0."""
    eos = (ids == 1).long()
    return (eos.cumsum(1) - eos) > 0


# ------------------------------------------------------------------------ vocabulary
def test_vocab_divisor_pads_the_true_vocabulary_to_the_row_count():
    assert hf_interop.choose_vocab_divisor(32100, 32128) == 128  # T5's 32000 + 100
    assert hf_interop.choose_vocab_divisor(384, 384) == 128
    assert hf_interop.choose_vocab_divisor(300, 320) == 64
    # the true ids only (our export, a resize to len(tokenizer)): the standard divisor
    assert hf_interop.choose_vocab_divisor(301, 301) == 128
    assert hf_interop.choose_vocab_divisor(32100, 32100) == 128
    with pytest.raises(DataError, match="32129 ids"):
        hf_interop.choose_vocab_divisor(32129, 32128)


@pytest.mark.parametrize("ids,rows", [(100, 384), (1100, 1103)])
def test_rows_the_tokenizer_does_not_explain_are_refused(ids, rows):
    """Not the true ids nor them padded to a power of two: say so, not divisor = rows."""
    with pytest.raises(DataError, match=f"{rows} rows for the tokenizer's {ids} ids"):
        hf_interop.choose_vocab_divisor(ids, rows)


def test_true_ids_only_import_with_the_standard_divisor_and_zero_padding(tmp_path, spm_proto):
    """import(export(x)) has x's layout: 300 rows for 200 pieces + 100 sentinels come in
    as vocab_divisor 128 (384 rows), not 4 (300 % 4 == 0), the extra rows zero."""
    hf = save_hf(tmp_path / "hf", SMALL, 300)
    (tmp_path / "hf" / "spiece.model").write_bytes(spm_proto)
    options, state = EncDecArchitecture.from_hf(tmp_path / "hf")
    assert options["vocab_divisor"] == 128
    shared = state["shared.weight"]
    assert shared.shape == (384, SMALL["d_model"])
    assert torch.equal(shared[:300], hf.shared.weight.detach())
    assert not shared[300:].any()
    model = EncDecArchitecture(EncDecConfig(**options)).build(300)
    model.load_state_dict(state, strict=True)
    feats = batch(300)
    assert_close_logits(our_logits(model, feats), hf_logits(hf, feats), feats, 300)
    # and back out: the same 300 rows
    EncDecArchitecture(EncDecConfig(**options)).to_hf(model, 300, tmp_path / "out")
    again = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert torch.equal(again["shared.weight"], hf.shared.weight.detach())


def test_spiece_model_sets_the_true_vocabulary(tmp_path, spm_proto):
    save_hf(tmp_path / "hf", SMALL, 384)
    (tmp_path / "hf" / "spiece.model").write_bytes(spm_proto)
    options, _ = EncDecArchitecture.from_hf(tmp_path / "hf")
    assert options["vocab_divisor"] == 128  # 200 pieces + 100 extra ids -> 384 rows
    section = EncDecArchitecture.hf_vocabulary(tmp_path / "hf", tmp_path / "dst")
    assert section == {"name": "sentencepiece", "size": 200, "extra_ids": 100,
                       "model_file": str((tmp_path / "dst" / "spiece.model").resolve())}
    assert (tmp_path / "dst" / "spiece.model").read_bytes() == spm_proto
    (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps({"extra_ids": 20}))
    with pytest.raises(DataError, match="384 rows for the tokenizer's 220 ids"):
        EncDecArchitecture.from_hf(tmp_path / "hf")  # no power of two pads 220 to 384
    assert EncDecArchitecture.hf_vocabulary(tmp_path / "hf", tmp_path / "d2")["extra_ids"] == 20


@pytest.mark.parametrize("source", ["tokenizer_config.json", "added_tokens.json", "tokenizer.json"])
def test_added_tokens_are_refused_by_name(tmp_path, spm_proto, source):
    save_hf(tmp_path / "hf", SMALL, 302)
    (tmp_path / "hf" / "spiece.model").write_bytes(spm_proto)
    # the special tokens and sentinels these files also list are not added tokens
    listed = {0: "<pad>", 1: "</s>", 299: "<extra_id_0>", 300: "<mytok1>", 301: "<mytok2>"}
    content = {
        "tokenizer_config.json": {"extra_ids": 100, "added_tokens_decoder": {
            str(i): {"content": c, "special": i < 300} for i, c in listed.items()}},
        "added_tokens.json": {c: i for i, c in listed.items()},
        "tokenizer.json": {"added_tokens": [{"id": i, "content": c} for i, c in listed.items()]},
    }[source]
    (tmp_path / "hf" / source).write_text(json.dumps(content))
    with pytest.raises(DataError, match=r"2 added token.*'<mytok1>' \(id 300\), '<mytok2>' "
                                        r"\(id 301\)"):
        EncDecArchitecture.from_hf(tmp_path / "hf")
    (tmp_path / "hf" / source).unlink()  # the same rows, unexplained: refused too
    with pytest.raises(DataError, match="302 rows for the tokenizer's 300 ids"):
        EncDecArchitecture.from_hf(tmp_path / "hf")


def test_tokens_added_with_transformers_are_refused(tmp_path, spm_proto):
    pytest.importorskip("google.protobuf", reason="transformers 5 reads spiece.model via protobuf")
    hf = save_hf(tmp_path / "hf", SMALL, 300)
    (tmp_path / "hf" / "spiece.model").write_bytes(spm_proto)
    tok = transformers.T5Tokenizer.from_pretrained(tmp_path / "hf", extra_ids=100)
    assert len(tok) == 300
    tok.add_tokens(["<mytok1>", "<mytok2>", "<mytok3>"])
    hf.resize_token_embeddings(len(tok))
    hf.save_pretrained(tmp_path / "hf")
    tok.save_pretrained(tmp_path / "hf")
    with pytest.raises(DataError, match="3 added token.*'<mytok1>' \\(id 300\\)"):
        EncDecArchitecture.from_hf(tmp_path / "hf")


@pytest.mark.parametrize("tok_cfg,expected", [
    (None, 100),
    ({"extra_ids": 7}, 7),
    ({"extra_ids": 0, "additional_special_tokens": [f"<extra_id_{i}>" for i in range(5)]}, 5),
    ({"extra_special_tokens": [{"content": "<extra_id_0>"}, {"content": "<x>"}]}, 1),
    ({"extra_ids": 0}, 0),
])
def test_sentinel_count_from_tokenizer_config(tmp_path, tok_cfg, expected):
    if tok_cfg is not None:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    assert hf_interop.tokenizer_extra_ids(tmp_path) == expected


def test_no_tokenizer_gives_no_vocabulary_section(tmp_path):
    save_hf(tmp_path / "hf", SMALL, 256)
    assert EncDecArchitecture.hf_vocabulary(tmp_path / "hf", tmp_path / "dst") is None


def test_exported_tokenizer_files(tmp_path, spm_proto):
    vocab = SentencePieceVocabulary(spm_proto)
    arch = EncDecArchitecture(EncDecConfig(**SMALL))
    arch.to_hf(arch.build(vocab.vocab_size), vocab.vocab_size, tmp_path / "out", vocab)
    assert (tmp_path / "out" / "spiece.model").read_bytes() == spm_proto
    tok_cfg = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "T5Tokenizer" and tok_cfg["extra_ids"] == 100
    pytest.importorskip("google.protobuf", reason="transformers 5 reads spiece.model via protobuf")
    tok = transformers.T5Tokenizer.from_pretrained(tmp_path / "out")
    text = "Return the value of the expression."
    assert tok(text).input_ids == vocab.encode(text) + [1]
    assert tok.convert_tokens_to_ids("<extra_id_0>") == vocab.sentinel_id(0)
    assert tok.convert_tokens_to_ids("<extra_id_99>") == vocab.sentinel_id(99)


# --------------------------------------------------------------------- weight files
def test_sharded_safetensors_and_pytorch_bin_load_the_same_tensors(tmp_path):
    hf = save_hf(tmp_path / "one", SMALL, 256)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    (tmp_path / "bin").mkdir()
    shutil.copy(tmp_path / "one" / "config.json", tmp_path / "bin")
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    _, ref = EncDecArchitecture.from_hf(tmp_path / "one")
    for name in ("sharded", "bin"):
        _, state = EncDecArchitecture.from_hf(tmp_path / name)
        assert set(state) == set(ref) and all(torch.equal(state[k], ref[k]) for k in ref)


class _Payload:
    """Unpickling this calls os.mkdir(path): a stand-in for arbitrary code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_pickle_with_code_is_refused(tmp_path):
    save_hf(tmp_path / "hf", SMALL, 256)
    (tmp_path / "hf" / "model.safetensors").unlink()
    marker = tmp_path / "code_ran"
    torch.save({"shared.weight": _Payload(marker)}, tmp_path / "hf" / "pytorch_model.bin")
    with pytest.raises(DataError, match="refused"):
        EncDecArchitecture.from_hf(tmp_path / "hf")
    assert not marker.exists()
    # the file really is hostile: an unrestricted load runs the payload
    torch.load(tmp_path / "hf" / "pytorch_model.bin", weights_only=False)
    assert marker.is_dir()


def test_weights_saved_under_an_alias_of_shared_weight(tmp_path):
    """A saver may keep one name of tied tensors; transformers loads any alias as shared."""
    hf = save_hf(tmp_path / "hf", SMALL, 256)
    path = tmp_path / "hf" / "model.safetensors"
    original = load_file(str(path))
    shared = original.pop("shared.weight")
    for aliases in (["decoder.embed_tokens.weight"], ["lm_head.weight"],
                    ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
                     "lm_head.weight"]):
        save_file({**original, **{k: shared.clone() for k in aliases}}, str(path),
                  metadata={"format": "pt"})
        theirs = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf")
        assert torch.equal(theirs.shared.weight, hf.shared.weight)
        _, state = EncDecArchitecture.from_hf(tmp_path / "hf")
        assert torch.equal(state["shared.weight"], shared)
        assert not any(k in state for k in aliases if k != "shared.weight")
    save_file({**original, "encoder.embed_tokens.weight": shared,
               "decoder.embed_tokens.weight": shared + 1.0}, str(path), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="decoder.embed_tokens.weight differs from "
                                          "encoder.embed_tokens.weight"):
        EncDecArchitecture.from_hf(tmp_path / "hf")
    save_file(original, str(path), metadata={"format": "pt"})
    with pytest.raises(DataError, match="no 'shared.weight' nor any of its tied aliases"):
        EncDecArchitecture.from_hf(tmp_path / "hf")


LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64
               + "\nsize 242041896\n")


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin", "spiece.model"])
def test_git_lfs_pointers_are_named(tmp_path, spm_proto, name):
    save_hf(tmp_path / "hf", SMALL, 384)
    (tmp_path / "hf" / "spiece.model").write_bytes(spm_proto)
    if name == "pytorch_model.bin":
        (tmp_path / "hf" / "model.safetensors").unlink()
    (tmp_path / "hf" / name).write_text(LFS_POINTER)
    with pytest.raises(DataError, match=f"{name} is a Git LFS pointer, not the weights; run "
                                        "`git lfs pull`"):
        EncDecArchitecture.from_hf(tmp_path / "hf")


def test_a_bin_that_is_no_pickle_is_not_called_refused(tmp_path):
    save_hf(tmp_path / "hf", SMALL, 256)
    (tmp_path / "hf" / "model.safetensors").unlink()
    (tmp_path / "hf" / "pytorch_model.bin").write_bytes(b"\x80\x02 not weights at all")
    with pytest.raises(DataError, match="is not a PyTorch weights file") as err:
        EncDecArchitecture.from_hf(tmp_path / "hf")
    assert "refused" not in str(err.value)


@pytest.mark.parametrize("name,framework", [("tf_model.h5", "TensorFlow"),
                                            ("flax_model.msgpack", "Flax")])
def test_tensorflow_or_flax_weights_only(tmp_path, name, framework):
    save_hf(tmp_path / "hf", SMALL, 256)
    (tmp_path / "hf" / "model.safetensors").rename(tmp_path / "hf" / name)
    with pytest.raises(DataError, match=f"has {framework} weights only \\({name}\\).*"
                                        "convert them with transformers first"):
        EncDecArchitecture.from_hf(tmp_path / "hf")


def test_shard_names_must_stay_in_the_folder(tmp_path):
    hf = save_hf(tmp_path / "hf", SMALL, 256)
    (tmp_path / "hf" / "model.safetensors").unlink()
    save_file({"shared.weight": hf.shared.weight.detach().clone()},
              str(tmp_path / "outside.safetensors"))  # exists, but outside the model folder
    index = {"weight_map": {"shared.weight": "../outside.safetensors"}}
    (tmp_path / "hf" / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="must be a file name"):
        EncDecArchitecture.from_hf(tmp_path / "hf")


def test_missing_files_and_mismatched_config(tmp_path):
    save_hf(tmp_path / "hf", SMALL, 256)
    with pytest.raises(DataError, match="has no config.json"):
        EncDecArchitecture.from_hf(tmp_path)
    cfg_path = tmp_path / "hf" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "num_layers": 3}))
    with pytest.raises(DataError, match="missing: encoder.block.2"):
        EncDecArchitecture.from_hf(tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()
    with pytest.raises(DataError, match="has no weights"):
        EncDecArchitecture.from_hf(tmp_path / "hf")


# ----------------------------------------------------------------------- refusals
@pytest.mark.parametrize("edit,message", [
    ({"feed_forward_proj": "gated-gelu"}, "gated-gelu"),
    ({"is_gated_act": True}, "gated FFN"),
    ({"tie_word_embeddings": False}, "untied"),
    ({"scale_decoder_outputs": False}, "scale_decoder_outputs"),
    ({"model_type": "mt5"}, "'mt5' is not 't5'"),
    ({"feed_forward_proj": "gelu", "dense_act_fn": "gelu", "is_gated_act": False},
     "'gelu'.*a non-gated gelu FFN, not T5 v1.0's relu"),
    ({"pad_token_id": 3}, "pad_token_id is 3, not 0"),
    ({"eos_token_id": 5}, "eos_token_id is 5, not 1"),
    ({"eos_token_id": [1, 5]}, "eos_token_id is \\[1, 5\\], not 1"),
    ({"decoder_start_token_id": 2}, "decoder_start_token_id is 2, not 0"),
])
def test_non_v1_0_configs_are_refused(tmp_path, edit, message):
    save_hf(tmp_path / "hf", SMALL, 256)
    cfg_path = tmp_path / "hf" / "config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), **edit}))
    with pytest.raises(ConfigError, match=message):
        EncDecArchitecture.from_hf(tmp_path / "hf")


def test_special_ids_of_generation_config_are_checked_too(tmp_path):
    save_hf(tmp_path / "hf", SMALL, 256)
    (tmp_path / "hf" / "generation_config.json").write_text(json.dumps(
        {"decoder_start_token_id": 3, "eos_token_id": 1, "pad_token_id": 0}))
    with pytest.raises(ConfigError, match="generation_config.json: decoder_start_token_id is "
                                          "3, not 0; t5k models use T5's special ids"):
        EncDecArchitecture.from_hf(tmp_path / "hf")


@pytest.mark.parametrize("edit,message", [
    ({"d_kv": None}, "d_kv is null; expected an integer"),
    ({"num_layers": "two"}, 'num_layers is "two"; expected an integer'),
    ({"num_decoder_layers": 1.5}, "num_decoder_layers is 1.5; expected an integer"),
    ({"dropout_rate": "0.1"}, 'dropout_rate is "0.1"; expected a number'),
    ({"vocab_size": None}, "vocab_size is null; expected a positive integer"),
    ({"vocab_size": "256"}, 'vocab_size is "256"; expected a positive integer'),
])
def test_config_values_of_the_wrong_type_name_the_key(tmp_path, edit, message):
    save_hf(tmp_path / "hf", SMALL, 256)
    cfg_path = tmp_path / "hf" / "config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), **edit}))
    with pytest.raises(DataError, match="config.json: " + message):
        EncDecArchitecture.from_hf(tmp_path / "hf")


def test_saved_t5_1_1_is_refused(tmp_path):
    save_hf(tmp_path / "hf", SMALL, 256, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    with pytest.raises(ConfigError, match="T5.1.1"):
        EncDecArchitecture.from_hf(tmp_path / "hf")


def test_untied_lm_head_is_refused(tmp_path):
    save_hf(tmp_path / "hf", SMALL, 256)
    path = tmp_path / "hf" / "model.safetensors"
    state = load_file(str(path))
    state["lm_head.weight"] = state["shared.weight"] + 1.0
    save_file(state, str(path), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="untied"):
        EncDecArchitecture.from_hf(tmp_path / "hf")


def test_variants_refuse_what_has_no_hugging_face_equivalent(tmp_path):
    save_hf(tmp_path / "hf", SMALL, 256)
    with pytest.raises(ConfigError, match="--arch encdec"):
        EncDecHalfArchitecture.from_hf(tmp_path / "hf")
    for cls in (EncDecSharedArchitecture, LMArchitecture):
        arch = cls(EncDecConfig(**SMALL))
        with pytest.raises(ConfigError, match="no Hugging Face"):
            arch.to_hf(arch.build(256), 256, tmp_path / cls.__name__)
        assert not (tmp_path / cls.__name__).exists()
