"""Hugging Face T5 v1.0 folders <-> the ``encdec`` architecture (facts §1, §11).

``T5ForConditionalGeneration`` with ``feed_forward_proj: relu`` and tied embeddings is the
paper's model, parameter for parameter: :class:`~t5k_builtin.model.encdec.EncDecModel`
uses its parameter names minus the tied aliases, so conversion is renaming-free.

Import (:func:`from_hf`) reads ``config.json`` and the weights from ``model.safetensors``,
a sharded ``model.safetensors.index.json``, or ``pytorch_model.bin`` (also sharded) through
``torch.load(weights_only=True)`` only, which refuses any pickle that would run code.
T5.1.1-style checkpoints (gated-GELU FFN, untied or unscaled softmax) are refused: they are
a different model. Tensors are widened to float32, the precision our models train in.

Vocabulary size. Hugging Face's ``vocab_size`` is the embedding row count, already padded
(32128 for T5's 32000 pieces + 100 sentinels = 32100 ids). Our models take the true id
count and pad it with ``vocab_divisor``, masking the padding columns out of the softmax.
With a ``spiece.model`` in the folder the true count is its pieces plus the tokenizer's
extra ids (``tokenizer_config.json`` ``extra_ids``, else the ``<extra_id_N>`` tokens it
lists, else T5's 100); without one it is the row count. ``vocab_divisor`` is then the
largest power of two <= 128 that pads the true count to exactly the row count (128 for
every released T5), or the row count itself when none does.

Export (:func:`to_hf`) writes what ``save_pretrained`` of transformers 5 writes:
``config.json``, ``generation_config.json`` and ``model.safetensors`` holding
``shared.weight`` once (``from_pretrained`` re-ties ``encoder/decoder.embed_tokens`` and
``lm_head``), with the true ids' rows only (``vocab_size`` = the id count, e.g. 32100, not
the padded 32128): our padding columns are masked out of the softmax and so never train,
while transformers would score them; cut, the exported model predicts what ours does.
With a SentencePiece vocabulary also ``spiece.model`` and
``tokenizer_config.json`` for ``T5Tokenizer`` (which, in transformers 5, needs the
``protobuf`` package to read ``spiece.model``).
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model.encdec import _HF_ALIASES, _HF_UNUSED, EncDecModel, padded_vocab_size
from t5kernel.errors import ConfigError, DataError

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PT_BIN = "pytorch_model.bin"
PT_BIN_INDEX = "pytorch_model.bin.index.json"
SPIECE = "spiece.model"
TOKENIZER_CONFIG = "tokenizer_config.json"
DEFAULT_EXTRA_IDS = 100

#: ``T5Config``'s defaults (transformers ``configuration_t5.py``) for keys a config omits
HF_DEFAULTS: dict[str, Any] = {
    "num_layers": 6,
    "d_model": 512,
    "d_ff": 2048,
    "d_kv": 64,
    "num_heads": 8,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
    "dropout_rate": 0.1,
}


# -------------------------------------------------------------------------- reading
def read_hf_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a T5 v1.0 checkpoint; ConfigError naming what makes it another model."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise DataError(f"{folder} has no {CONFIG}: not a Hugging Face model folder")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise DataError(f"{path} must hold a JSON object")
    v10 = "only T5 v1.0 (T5ForConditionalGeneration, relu FFN, tied embeddings) converts"
    if cfg.get("model_type") != "t5":
        raise ConfigError(f"{path}: model_type {cfg.get('model_type')!r} is not 't5'; {v10}")
    ffn = cfg.get("feed_forward_proj", "relu")
    if ffn != "relu" or cfg.get("is_gated_act", False) or cfg.get("dense_act_fn", "relu") != "relu":
        raise ConfigError(f"{path}: feed_forward_proj {ffn!r} (T5.1.1-style gated FFN); {v10}")
    if cfg.get("tie_word_embeddings", True) is False:
        raise ConfigError(f"{path}: tie_word_embeddings is false (T5.1.1-style untied softmax); {v10}")
    if cfg.get("scale_decoder_outputs", True) is False:
        raise ConfigError(f"{path}: scale_decoder_outputs is false (T5.1.1-style softmax); {v10}")
    if cfg.get("is_encoder_decoder", True) is False:
        raise ConfigError(f"{path}: is_encoder_decoder is false; {v10}")
    return cfg


def load_hf_weights(folder: Path) -> dict[str, Tensor]:
    """Every tensor of the folder's weights file(s), by Hugging Face key (no code runs)."""
    folder = Path(folder)
    if (folder / SAFETENSORS).is_file():
        return _load_safetensors(folder / SAFETENSORS)
    if (folder / SAFETENSORS_INDEX).is_file():
        return _load_sharded(folder, SAFETENSORS_INDEX, _load_safetensors)
    if (folder / PT_BIN).is_file():
        return _load_weights_only(folder / PT_BIN)
    if (folder / PT_BIN_INDEX).is_file():
        return _load_sharded(folder, PT_BIN_INDEX, _load_weights_only)
    raise DataError(
        f"{folder} has no weights: expected {SAFETENSORS}, {SAFETENSORS_INDEX}, {PT_BIN} "
        f"or {PT_BIN_INDEX}"
    )


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable safetensors file: {exc}") from None


def _load_weights_only(path: Path) -> dict[str, Tensor]:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path} refused: a weights-only load found more than tensors in the pickle "
            f"({first}); convert it to safetensors with a tool you trust"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise DataError(f"{path} is not a readable PyTorch weights file: {exc}") from None
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    ):
        raise DataError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(obj)


def _load_sharded(folder: Path, index_name: str, load: Any) -> dict[str, Tensor]:
    """Shards named by an index's ``weight_map``; shard names must be files in ``folder``."""
    index_path = folder / index_name
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{index_path} is not a shard index with a weight_map: {exc}") from None
    out: dict[str, Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", ".."):
            raise DataError(f"{index_path}: shard {shard!r} must be a file name in {folder}")
        if not (folder / shard).is_file():
            raise DataError(f"{index_path} names shard {shard}, which is missing")
        out.update(load(folder / shard))
    missing = sorted(k for k in weight_map if k not in out)
    if missing:
        raise DataError(f"{index_path}: {len(missing)} tensors are not in their shards, e.g. {missing[0]}")
    return out


# ------------------------------------------------------------------------ vocabulary
def tokenizer_extra_ids(folder: Path) -> int:
    """Sentinel count of the folder's tokenizer: ``extra_ids``, else listed ``<extra_id_N>``."""
    path = Path(folder) / TOKENIZER_CONFIG
    if not path.is_file():
        return DEFAULT_EXTRA_IDS
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise DataError(f"{path} must hold a JSON object")
    explicit = cfg.get("extra_ids")
    if isinstance(explicit, int) and explicit > 0:
        return explicit
    for key in ("additional_special_tokens", "extra_special_tokens"):
        listed = cfg.get(key)
        if isinstance(listed, list):
            names = [t.get("content", "") if isinstance(t, dict) else str(t) for t in listed]
            if any("<extra_id_" in name for name in names):
                return sum("<extra_id_" in name for name in names)
    return explicit if isinstance(explicit, int) and explicit >= 0 else DEFAULT_EXTRA_IDS


def _sentencepiece(folder: Path) -> Any:
    """The folder's ``spiece.model`` as our vocabulary (checks pad/eos/unk), or None."""
    from t5k_builtin.vocab import SentencePieceVocabulary

    path = Path(folder) / SPIECE
    if not path.is_file():
        return None
    return SentencePieceVocabulary.from_file(path, tokenizer_extra_ids(folder))


def hf_vocabulary(folder: Path, dst: Path) -> dict[str, Any] | None:
    """Copy ``spiece.model`` into ``dst``; the ``sentencepiece`` vocabulary section for it.

    None when the folder has no ``spiece.model`` (a ``tokenizer.json`` alone cannot be
    turned back into a SentencePiece model).
    """
    vocab = _sentencepiece(folder)
    if vocab is None:
        return None
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(folder) / SPIECE, dst / SPIECE)
    return {
        "name": "sentencepiece",
        "model_file": str((dst / SPIECE).resolve()),
        "size": vocab.base_vocab_size,
        "extra_ids": vocab.extra_ids,
    }


def choose_vocab_divisor(vocab_size: int, rows: int) -> int:
    """A ``vocab_divisor`` padding ``vocab_size`` ids to exactly ``rows`` embedding rows."""
    if not 0 < vocab_size <= rows:
        raise DataError(
            f"the tokenizer has {vocab_size} ids (pieces + extra ids) but the checkpoint's "
            f"embedding has {rows} rows"
        )
    for divisor in (128, 64, 32, 16, 8, 4, 2, 1):
        if padded_vocab_size(vocab_size, divisor) == rows:
            return divisor
    return rows


# --------------------------------------------------------------------------- import
def hf_to_state_dict(weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our names: tied aliases of ``shared.weight`` and the unused cross-attention bias dropped.

    ConfigError when an alias differs from ``shared.weight`` (an untied T5.1.1 softmax).
    """
    sd = dict(weights)
    shared = sd.get("shared.weight")
    if shared is None:
        raise DataError("the weights have no 'shared.weight' (not a T5ForConditionalGeneration)")
    for key in _HF_ALIASES:
        alias = sd.pop(key, None)
        if alias is not None and not torch.equal(alias, shared):
            raise ConfigError(
                f"{key} differs from shared.weight: untied embeddings (T5.1.1-style); only "
                f"tied T5 v1.0 checkpoints convert"
            )
    for key in _HF_UNUSED:
        sd.pop(key, None)
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}


def model_options(hf: Mapping[str, Any]) -> dict[str, Any]:
    """The ``EncDecConfig`` fields a Hugging Face T5 config sets (vocab_divisor aside)."""
    opts = {key: hf.get(key, default) for key, default in HF_DEFAULTS.items()}
    dec = hf.get("num_decoder_layers")
    opts["num_decoder_layers"] = None if dec in (None, opts["num_layers"]) else int(dec)
    for key in ("num_layers", "d_model", "d_ff", "d_kv", "num_heads",
                "relative_attention_num_buckets", "relative_attention_max_distance"):
        opts[key] = int(opts[key])
    opts["layer_norm_epsilon"] = float(opts["layer_norm_epsilon"])
    opts["dropout_rate"] = float(opts["dropout_rate"])
    return opts


def check_layout(config: EncDecConfig, vocab_size: int, state: Mapping[str, Tensor]) -> None:
    """DataError unless ``state`` has exactly the names and shapes of the model ``config``
    describes (checked against a shape-only model on the meta device, no memory spent)."""
    with torch.device("meta"):
        skeleton = EncDecModel(config, vocab_size)
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    problems = []
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    shapes = [f"{k} {have[k]} (config says {want[k]})" for k in sorted(want)
              if k in have and have[k] != want[k]]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise DataError("the weights do not match config.json: " + "; ".join(problems))


def from_hf(folder: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``(encdec options, state dict)`` of a Hugging Face T5 v1.0 folder (module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    hf = read_hf_config(folder)
    state = hf_to_state_dict(load_hf_weights(folder))
    rows = int(state["shared.weight"].shape[0])
    if int(hf.get("vocab_size", rows)) != rows:
        raise DataError(
            f"{folder / CONFIG} says vocab_size {hf.get('vocab_size')} but shared.weight has "
            f"{rows} rows"
        )
    vocab = _sentencepiece(folder)
    vocab_size = rows if vocab is None else vocab.vocab_size
    options = {**model_options(hf), "vocab_divisor": choose_vocab_divisor(vocab_size, rows)}
    check_layout(EncDecConfig(**options), vocab_size, state)
    return options, state


# --------------------------------------------------------------------------- export
def hf_config(config: EncDecConfig, rows: int) -> dict[str, Any]:
    """``config.json`` of the ``T5ForConditionalGeneration`` equal to ``config``."""
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "is_encoder_decoder": True,
        "vocab_size": rows,
        "d_model": config.d_model,
        "d_ff": config.d_ff,
        "d_kv": config.d_kv,
        "num_heads": config.num_heads,
        "num_layers": config.num_layers,
        "num_decoder_layers": config.num_decoder_layers or config.num_layers,
        "relative_attention_num_buckets": config.relative_attention_num_buckets,
        "relative_attention_max_distance": config.relative_attention_max_distance,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "dropout_rate": config.dropout_rate,
        "feed_forward_proj": "relu",
        "tie_word_embeddings": True,
        "initializer_factor": 1.0,
        "decoder_start_token_id": 0,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "use_cache": True,
    }


def to_hf(config: EncDecConfig, model: Any, vocab_size: int, folder: Path,
          vocabulary: Any = None) -> None:
    """Write ``model`` (an :class:`EncDecModel` of ``config``) as a Hugging Face T5 folder.

    ConfigError for any other model class: the shared-stack and decoder-only variants have
    no ``T5ForConditionalGeneration`` equivalent.
    """
    from safetensors.torch import save_file

    if type(model) is not EncDecModel:
        raise ConfigError(
            f"{type(model).__name__} has no Hugging Face T5ForConditionalGeneration "
            f"equivalent; only the plain encoder-decoder (encdec, encdec_half) exports"
        )
    if model.vocab_size != vocab_size:
        raise ConfigError(f"the model was built for {model.vocab_size} ids, not {vocab_size}")
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    check_layout(config, vocab_size, state)
    # the true ids only: our padding rows are masked out of the softmax, so they never
    # train; transformers would let those untrained rows compete for every prediction
    state["shared.weight"] = state["shared.weight"][:vocab_size].clone()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / CONFIG, hf_config(config, vocab_size))
    _write_json(folder / "generation_config.json",
                {"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0})
    save_file(state, str(folder / SAFETENSORS), metadata={"format": "pt"})
    proto = getattr(vocabulary, "model_proto", None)
    if proto is not None:
        (folder / SPIECE).write_bytes(proto)
        _write_json(folder / TOKENIZER_CONFIG, {
            "tokenizer_class": "T5Tokenizer",
            "extra_ids": int(vocabulary.extra_ids),
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "model_max_length": 512,
        })


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
