"""Hugging Face T5 v1.0 folders <-> the ``encdec`` architecture (facts §1, §11).

``T5ForConditionalGeneration`` with ``feed_forward_proj: relu`` and tied embeddings is the
paper's model, parameter for parameter: :class:`~t5k_builtin.model.encdec.EncDecModel`
uses its parameter names minus the tied aliases, so conversion is renaming-free.

Import (:func:`from_hf`) reads ``config.json`` and the weights from ``model.safetensors``,
a sharded ``model.safetensors.index.json``, or ``pytorch_model.bin`` (also sharded) through
``torch.load(weights_only=True)`` only, which refuses any pickle that would run code.
T5.1.1-style checkpoints (gated-GELU FFN, untied or unscaled softmax), other activations
and special ids other than T5's (pad 0, eos 1, decoder start 0) are refused: they are a
different model. Weights saved without ``shared.weight`` are read from its first tied
alias present (``encoder.embed_tokens``, ``decoder.embed_tokens``, ``lm_head``). Tensors
are widened to float32, the precision our models train in.

Vocabulary size. Hugging Face's ``vocab_size`` is the embedding row count, already padded
(32128 for T5's 32000 pieces + 100 sentinels = 32100 ids). Our models take the true id
count and pad it with ``vocab_divisor``, masking the padding columns out of the softmax.
With a ``spiece.model`` in the folder the true count is its pieces plus the tokenizer's
extra ids (``tokenizer_config.json`` ``extra_ids``, else the ``<extra_id_N>`` tokens it
lists, else T5's 100); without one it is the row count. Tokens added to the tokenizer
(ids past the true count, e.g. ``tokenizer.add_tokens``) are refused: our SentencePiece
vocabulary cannot produce them. ``vocab_divisor`` is then

- 128, the standard one (:class:`EncDecConfig`), when the rows are exactly the true ids
  (a folder :func:`to_hf` wrote, or a ``resize_token_embeddings(len(tokenizer))``): the
  missing padding rows are added as zeros (they are masked out of the softmax), so
  ``import(export(run))`` has the run's layout and loads its checkpoints;
- else the largest power of two <= 128 that pads the true count to exactly the row count
  (128 for every released T5: 32100 ids in 32128 rows);
- a DataError when no power of two does (rows the tokenizer files do not explain).

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
import numbers
import os
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
TOKENIZER_JSON = "tokenizer.json"
ADDED_TOKENS = "added_tokens.json"
GENERATION_CONFIG = "generation_config.json"
DEFAULT_EXTRA_IDS = 100
#: the ``vocab_divisor`` of every run (``EncDecConfig``'s default; T5's 32100 -> 32128)
STANDARD_VOCAB_DIVISOR = EncDecConfig.vocab_divisor
#: the special ids of every T5 checkpoint, which our models hard-wire (facts §1)
T5_SPECIAL_IDS = {"pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}
#: weights of other frameworks that ``save_pretrained`` may leave instead of PyTorch's
OTHER_FRAMEWORKS = {"tf_model.h5": ("TensorFlow", "from_tf=True"),
                    "flax_model.msgpack": ("Flax", "from_flax=True")}
_LFS_MAGIC = b"version https://git-lfs"

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
def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object")
    return data


def read_hf_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a T5 v1.0 checkpoint; ConfigError naming what makes it another model."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise DataError(f"{folder} has no {CONFIG}: not a Hugging Face model folder")
    cfg = _read_json_object(path)
    v10 = "only T5 v1.0 (T5ForConditionalGeneration, relu FFN, tied embeddings) converts"
    if cfg.get("model_type") != "t5":
        raise ConfigError(f"{path}: model_type {cfg.get('model_type')!r} is not 't5'; {v10}")
    ffn = cfg.get("feed_forward_proj", "relu")
    if not isinstance(ffn, str):
        raise DataError(f"{path}: feed_forward_proj must be a string like 'relu', got {ffn!r}")
    act = cfg.get("dense_act_fn", ffn.split("-")[-1])
    if ffn.startswith("gated-"):
        raise ConfigError(f"{path}: feed_forward_proj {ffn!r} (T5.1.1-style gated FFN); {v10}")
    if cfg.get("is_gated_act", False):
        raise ConfigError(f"{path}: is_gated_act is true (T5.1.1-style gated FFN); {v10}")
    if ffn != "relu" or act != "relu":
        raise ConfigError(f"{path}: feed_forward_proj {ffn!r}, dense_act_fn {act!r} (a "
                          f"non-gated {act if act != 'relu' else ffn} FFN, not T5 v1.0's relu "
                          f"one); {v10}")
    if cfg.get("tie_word_embeddings", True) is False:
        raise ConfigError(f"{path}: tie_word_embeddings is false (T5.1.1-style untied softmax); {v10}")
    if cfg.get("scale_decoder_outputs", True) is False:
        raise ConfigError(f"{path}: scale_decoder_outputs is false (T5.1.1-style softmax); {v10}")
    if cfg.get("is_encoder_decoder", True) is False:
        raise ConfigError(f"{path}: is_encoder_decoder is false; {v10}")
    check_special_ids(cfg, path)
    generation = Path(folder) / GENERATION_CONFIG
    if generation.is_file():  # what transformers' generate() uses
        check_special_ids(_read_json_object(generation), generation)
    return cfg


def check_special_ids(cfg: Mapping[str, Any], path: Path) -> None:
    """ConfigError unless pad, eos and decoder start are T5's ids (where ``cfg`` sets them):
    our models hard-wire them, so another value would be silently ignored."""
    for key, want in T5_SPECIAL_IDS.items():
        value = cfg.get(key)
        ok = value is None or (type(value) is int and value == want) or (
            key == "eos_token_id" and value == [want])  # a list of eos ids is allowed there
        if not ok:
            wanted = ", ".join(f"{k} {v}" for k, v in T5_SPECIAL_IDS.items())
            raise ConfigError(f"{path}: {key} is {value!r}, not {want}; t5k models use T5's "
                              f"special ids ({wanted}) and cannot honour other ones")


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
    for name, (framework, flag) in OTHER_FRAMEWORKS.items():
        if (folder / name).is_file():
            raise DataError(
                f"{folder} has {framework} weights only ({name}), which t5k does not read: "
                f"convert them with transformers first, e.g. "
                f"T5ForConditionalGeneration.from_pretrained(folder, {flag})"
                f".save_pretrained(new_folder), and convert new_folder"
            )
    raise DataError(
        f"{folder} has no weights: expected {SAFETENSORS}, {SAFETENSORS_INDEX}, {PT_BIN} "
        f"or {PT_BIN_INDEX}"
    )


def check_not_lfs_pointer(path: Path) -> None:
    """DataError when ``path`` is a Git LFS pointer file (a clone without ``git lfs``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_LFS_MAGIC))
    except OSError as exc:
        raise DataError(f"{path} is not readable: {exc}") from None
    if head == _LFS_MAGIC:
        raise DataError(
            f"{path} is a Git LFS pointer, not the weights; run `git lfs pull` in "
            f"{Path(path).parent} (the folder was cloned without Git LFS)"
        )


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_not_lfs_pointer(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable safetensors file: {exc}") from None


def _load_weights_only(path: Path) -> dict[str, Tensor]:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code."""
    check_not_lfs_pointer(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        found = [line for line in lines if "GLOBAL" in line]
        if not found:  # not a pickle the weights-only unpickler understands at all
            detail = next((line for line in lines if "Unsupported operand" in line),
                          lines[0] if lines else type(exc).__name__)
            raise DataError(f"{path} is not a PyTorch weights file ({detail})") from None
        raise DataError(
            f"{path} refused: a weights-only load found more than tensors in the pickle "
            f"({found[0]}); convert it to safetensors with a tool you trust"
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
    check_not_lfs_pointer(path)
    return SentencePieceVocabulary.from_file(path, tokenizer_extra_ids(folder))


def added_tokens(folder: Path, vocab_size: int) -> dict[int, str]:
    """Tokens added to the folder's tokenizer past its ``vocab_size`` true ids (pieces +
    extra ids), by id: ``tokenizer_config.json`` ``added_tokens_decoder``,
    ``added_tokens.json`` and ``tokenizer.json`` ``added_tokens`` (the special tokens
    and sentinels they also list have ids below ``vocab_size``)."""
    folder = Path(folder)
    found: dict[int, str] = {}

    def note(token_id: Any, content: Any) -> None:
        if isinstance(token_id, str) and token_id.strip().isdigit():
            token_id = int(token_id)
        if type(token_id) is int and token_id >= vocab_size:
            found.setdefault(token_id, str(content))

    if (folder / TOKENIZER_CONFIG).is_file():
        decoder = _read_json_object(folder / TOKENIZER_CONFIG).get("added_tokens_decoder")
        if isinstance(decoder, dict):
            for token_id, token in decoder.items():
                note(token_id, token.get("content", "?") if isinstance(token, dict) else token)
    if (folder / ADDED_TOKENS).is_file():
        for content, token_id in _read_json_object(folder / ADDED_TOKENS).items():
            note(token_id, content)
    if (folder / TOKENIZER_JSON).is_file():
        listed = _read_json_object(folder / TOKENIZER_JSON).get("added_tokens")
        for token in listed if isinstance(listed, list) else []:
            if isinstance(token, dict):
                note(token.get("id"), token.get("content", "?"))
    return dict(sorted(found.items()))


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
    """The ``vocab_divisor`` of ``vocab_size`` ids stored in ``rows`` embedding rows.

    The standard one (128) when ``rows`` holds exactly the true ids (the import pads the
    rest); else the largest power of two <= 128 padding ``vocab_size`` to exactly ``rows``;
    DataError when none does.
    """
    if not 0 < vocab_size <= rows:
        raise DataError(
            f"the tokenizer has {vocab_size} ids (pieces + extra ids) but the checkpoint's "
            f"embedding has {rows} rows"
        )
    if rows == vocab_size:
        return STANDARD_VOCAB_DIVISOR
    for divisor in (128, 64, 32, 16, 8, 4, 2, 1):
        if padded_vocab_size(vocab_size, divisor) == rows:
            return divisor
    raise DataError(
        f"the checkpoint's embedding has {rows} rows for the tokenizer's {vocab_size} ids "
        f"(pieces + extra ids): neither exactly those ids nor those padded to a multiple of "
        f"a power of two <= 128 (e.g. {padded_vocab_size(vocab_size, 128)} for 128), so "
        f"{rows - vocab_size} rows are tokens the tokenizer files do not describe (added "
        f"tokens?), which t5k's SentencePiece vocabulary cannot produce"
    )


# --------------------------------------------------------------------------- import
def hf_to_state_dict(weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our names: tied aliases of ``shared.weight`` and the unused cross-attention bias dropped.

    Without ``shared.weight`` (a saver may keep only one name of tied tensors) the first
    alias present stands for it, as in transformers' loading. ConfigError when the
    aliases present differ from it (an untied T5.1.1 softmax).
    """
    sd = dict(weights)
    names = [k for k in ("shared.weight", *_HF_ALIASES) if k in sd]
    if not names:
        raise DataError(
            "the weights have no 'shared.weight' nor any of its tied aliases ("
            + ", ".join(_HF_ALIASES) + "): not a T5ForConditionalGeneration")
    source = names[0]
    shared = sd[source]
    for key in names[1:]:
        if not torch.equal(sd[key], shared):
            raise ConfigError(
                f"{key} differs from {source}: untied embeddings (T5.1.1-style); only "
                f"tied T5 v1.0 checkpoints convert"
            )
    for key in _HF_ALIASES:
        sd.pop(key, None)
    sd["shared.weight"] = shared
    for key in _HF_UNUSED:
        sd.pop(key, None)
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}


def model_options(hf: Mapping[str, Any], source: Any = CONFIG) -> dict[str, Any]:
    """The ``EncDecConfig`` fields a Hugging Face T5 config sets (vocab_divisor aside).

    DataError naming the key (and ``source``) for a value of the wrong type (null, a
    string, ...); ranges are ``EncDecConfig``'s to check.
    """
    def number(key: str, value: Any, integer: bool) -> Any:
        ok = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(
            value, bool)
        if not ok:
            raise DataError(f"{source}: {key} is {json.dumps(value)}; expected "
                            f"{'an integer' if integer else 'a number'}")
        return int(value) if integer else float(value)

    opts = {key: hf.get(key, default) for key, default in HF_DEFAULTS.items()}
    for key in ("num_layers", "d_model", "d_ff", "d_kv", "num_heads",
                "relative_attention_num_buckets", "relative_attention_max_distance"):
        opts[key] = number(key, opts[key], True)
    for key in ("layer_norm_epsilon", "dropout_rate"):
        opts[key] = number(key, opts[key], False)
    dec = hf.get("num_decoder_layers")
    dec = None if dec is None else number("num_decoder_layers", dec, True)
    opts["num_decoder_layers"] = None if dec in (None, opts["num_layers"]) else dec
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
    options = model_options(hf, folder / CONFIG)
    declared = hf.get("vocab_size")
    if "vocab_size" in hf and (type(declared) is not int or declared < 1):
        raise DataError(f"{folder / CONFIG}: vocab_size is {json.dumps(declared)}; expected a "
                        "positive integer (the embedding's row count)")
    vocab = _sentencepiece(folder)
    if vocab is not None:
        extra = added_tokens(folder, vocab.vocab_size)
        if extra:
            shown = ", ".join(f"{content!r} (id {i})" for i, content in list(extra.items())[:5])
            more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
            raise DataError(
                f"{folder}: the tokenizer has {len(extra)} added token(s) past its "
                f"{vocab.vocab_size} SentencePiece ids (pieces + extra ids): {shown}{more}; "
                f"t5k's SentencePiece vocabulary cannot produce them, so the import refuses "
                f"rather than drop them silently"
            )
    state = hf_to_state_dict(load_hf_weights(folder))
    rows = int(state["shared.weight"].shape[0])
    if "vocab_size" in hf and declared != rows:
        raise DataError(
            f"{folder / CONFIG} says vocab_size {declared} but shared.weight has {rows} rows"
        )
    vocab_size = rows if vocab is None else vocab.vocab_size
    options["vocab_divisor"] = choose_vocab_divisor(vocab_size, rows)
    try:
        config = EncDecConfig(**options)
    except ConfigError as exc:
        raise ConfigError(f"{folder / CONFIG}: {exc}") from None
    padded = padded_vocab_size(vocab_size, config.vocab_divisor)
    if padded > rows:  # the true ids only (e.g. our own export): add the padding rows
        shared = state["shared.weight"]
        padding = shared.new_zeros(padded - rows, *shared.shape[1:])
        state["shared.weight"] = torch.cat([shared, padding])
    check_layout(config, vocab_size, state)
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
    umask = os.umask(0)  # safetensors writes 0600: give the file the mode open() would
    os.umask(umask)
    os.chmod(folder / SAFETENSORS, 0o666 & ~umask)
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
