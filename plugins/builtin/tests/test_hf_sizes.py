"""The size presets' parameter counts: Hugging Face's T5 and the paper (facts §1.9).

Hugging Face models are built on the meta device: shapes only, no memory, no download.
"""

import dataclasses

import pytest
import torch

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model.encdec import EncDecArchitecture

transformers = pytest.importorskip("transformers")

VOCAB = 32100  # 32,000 pieces + 100 sentinels; 32,128 embedding rows (facts §1.10)
#: the paper's rounded counts (P §3.7 / facts §1.9)
PAPER = {"small": 60e6, "base": 220e6, "large": 770e6, "3B": 2.8e9, "11B": 11e9}


def _describe(size: str) -> dict:
    cfg = dataclasses.replace(EncDecConfig(), size=size, **EncDecConfig.PRESETS[size])
    return EncDecArchitecture(cfg).describe(VOCAB)


@pytest.mark.parametrize("size", list(PAPER))
def test_parameters_equal_hugging_face_t5(size):
    p = EncDecConfig.PRESETS[size]
    hf_config = transformers.T5Config(
        vocab_size=32128, d_model=p["d_model"], d_kv=p["d_kv"], d_ff=p["d_ff"],
        num_layers=p["num_layers"], num_heads=p["num_heads"], feed_forward_proj="relu",
        tie_word_embeddings=True,
    )
    with torch.device("meta"):
        hf = transformers.T5ForConditionalGeneration(hf_config)
    assert _describe(size)["parameters"] == hf.num_parameters()


@pytest.mark.parametrize("size", list(PAPER))
def test_parameters_near_the_papers(size):
    """Within 5%: T5-Large is 737.7M against the paper's "770M" (4.2% off)."""
    assert _describe(size)["parameters"] == pytest.approx(PAPER[size], rel=0.05)


def test_base_is_the_hugging_face_t5_base_count():
    assert _describe("base")["parameters"] == 222_903_552
