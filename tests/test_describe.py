"""`t5k describe`: the configured model's layout, parameters and FLOPs, without training."""

import json
from pathlib import Path

import pytest

from t5k_builtin import vocab as spm_vocab
from t5k_builtin.configs import SentencePieceConfig
from t5kernel.cli import main

LARGE = Path(__file__).resolve().parent.parent / "configs" / "model" / "large.yaml"


def describe(capsys, *args):
    assert main(["describe", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def base(capsys):
    """Every architecture at T5-Base size with T5's 32,100-id vocabulary."""
    return {arch: describe(capsys, "--arch", arch, "model.size=base", "--vocab-size", "32100")
            for arch in ("encdec", "encdec_shared", "encdec_half", "lm", "prefix_lm")}


def test_base_encdec_is_t5_base(base):
    d = base["encdec"]
    assert d["parameters"] == 222_903_552  # HF t5-base (test_hf_sizes checks the formula)
    assert (d["size"], d["encoder_layers"], d["decoder_layers"], d["padded_vocab_size"]) == (
        "base", 12, 12, 32128)


def test_shared_counts_one_decoder_stack(base):
    """P vs 2P (P Table 2): the shared stack is the baseline's decoder; its encoder view is
    exactly the baseline's encoder, so the saving is one encoder stack (~43% at base)."""
    full, shared = base["encdec"], base["encdec_shared"]
    assert shared["parameters_excluding_embedding"] == full["decoder_parameters"]
    assert shared["shared_parameters"] == full["encoder_parameters"]
    ratio = shared["parameters_excluding_embedding"] / full["parameters_excluding_embedding"]
    assert 0.5 < ratio < 0.6
    assert shared["forward_matmul_flops_per_token_pair"] == full[
        "forward_matmul_flops_per_token_pair"]


def test_half_costs_half_but_the_logits(base):
    """M vs M/2: every layer term halves; the logits over the padded vocab do not."""
    full, half = base["encdec"], base["encdec_half"]
    logits = 2 * 768 * 32128
    assert (half["encoder_layers"], half["decoder_layers"]) == (6, 6)
    assert half["forward_matmul_flops_per_token_pair"] == (
        full["forward_matmul_flops_per_token_pair"] - logits) // 2 + logits
    ratio = half["forward_matmul_flops_per_token_pair"] / full["forward_matmul_flops_per_token_pair"]
    assert 0.5 < ratio < 0.56


@pytest.mark.parametrize("arch", ["lm", "prefix_lm"])
def test_decoder_only_pair_costs_about_the_baseline(base, arch):
    """M for both (P §3.2.2): the LM reads inputs with the stack the enc-dec uses on targets,
    minus the cross-attention projections (4·d·H·d_kv per layer) plus the input's logits."""
    full, lm = base["encdec"], base[arch]
    cross = 2 * 12 * 4 * 768 * 768
    logits = 2 * 768 * 32128
    assert lm["forward_matmul_flops_per_token_pair"] == (
        full["forward_matmul_flops_per_token_pair"] - cross + logits)
    assert lm["forward_matmul_flops_per_token_pair"] == pytest.approx(
        full["forward_matmul_flops_per_token_pair"], rel=0.02)
    assert lm["parameters_excluding_embedding"] == full["encoder_parameters"]


def test_vocab_size_planned_by_the_vocabulary(capsys):
    d = describe(capsys)  # the embedded default: 1,000 pieces to train + 100 sentinels
    assert (d["vocab_size"], d["num_layers"], d["d_model"]) == (1100, 2, 128)
    d = describe(capsys, "vocabulary.size=32000")
    assert d["vocab_size"] == 32100


def test_vocab_size_read_from_a_model_file(capsys, tmp_path):
    cfg = SentencePieceConfig(size=60, max_training_texts=50)
    texts = [f"the quick brown fox {i} jumps over the lazy dog number {i * 7}" for i in range(50)]
    path = tmp_path / "spm.model"
    path.write_bytes(spm_vocab.train_sentencepiece(texts, cfg))
    d = describe(capsys, f"vocabulary.model_file={path}", "vocabulary.extra_ids=10")
    assert d["vocab_size"] == 70


def test_vocabulary_without_planned_size_asks_for_vocab_size(capsys, monkeypatch):
    monkeypatch.delattr(spm_vocab.build_sentencepiece, "planned_size")
    assert main(["describe"]) == 2
    assert "--vocab-size" in capsys.readouterr().err
    assert describe(capsys, "--vocab-size", "500")["vocab_size"] == 500


def test_config_files_and_errors_like_run(capsys):
    d = describe(capsys, "--config", str(LARGE), "--vocab-size", "32100")
    assert d["parameters"] == 737_668_096 and d["size"] is None
    assert main(["describe", "model.size=huge"]) == 2
    assert "allowed: tiny, small, base" in capsys.readouterr().err
    assert main(["describe", "model.no_such_key=1"]) == 2
    assert "unknown option" in capsys.readouterr().err


def test_table_output(capsys):
    assert main(["describe", "model.size=small", "--vocab-size", "32100"]) == 0
    out = capsys.readouterr().out
    assert "60,506,624" in out and "parameters" in out and "per token pair" in out
