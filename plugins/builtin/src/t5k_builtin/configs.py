"""Config dataclasses of every built-in plugin.

Kept in one light module (no torch import) so that listing plugins, validating a config
or printing a schema never imports an implementation. Defaults are the paper's
(T5 v1.0 baseline, Raffel et al. 2020 §3.1); the embedded default run scales them down.

Every dataclass refuses values outside its allowed range in ``__post_init__`` with a
ConfigError ``"<field>=<value> is out of range; allowed: ..."``; the kernel's config
validation instantiates each section (so a bad value is refused before any work starts)
and prefixes the key path (``objective.noise_density=1.5 ...``). Checks that need the
rest of the run (sequence lengths against the objective, the architecture against the
objective) are ``check_run(run)`` methods, which validation calls with the whole
validated config. The plugins keep their own checks too (they may be built directly).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from t5kernel.api import path_option
from t5kernel.errors import ConfigError


# ---------------------------------------------------------------------- range checks
def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is out of range; allowed: {allowed}")


def _ints(obj: Any, low: int, *keys: str, high: int | None = None) -> None:
    """Each of ``keys`` an integer in [low, high] (no upper limit when high is None)."""
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    for key in keys:
        value = getattr(obj, key)
        ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool)
              and value >= low and (high is None or value <= high))
        _require(ok, key, value, allowed)


def _optional_int(obj: Any, key: str, low: int) -> None:
    """None, or an integer >= low."""
    value = getattr(obj, key)
    ok = value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                           and value >= low)
    _require(ok, key, value, f"null or an integer >= {low}")


def _number(obj: Any, key: str, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False) -> None:
    """A finite number in the interval; nan and infinities are always refused."""
    value = getattr(obj, key)
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    x = float(value) if ok else math.nan
    ok = math.isfinite(x)
    if low is not None:
        ok = ok and (x > low if low_open else x >= low)
    if high is not None:
        ok = ok and (x < high if high_open else x <= high)
    if low is not None and high is not None:
        allowed = (f"a number in {'(' if low_open else '['}{low:g}, {high:g}"
                   f"{')' if high_open else ']'}")
    elif low is not None:
        allowed = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        allowed = "a finite number"
    _require(ok, key, value, allowed)


def _one_of(obj: Any, key: str, choices: tuple[Any, ...]) -> None:
    value = getattr(obj, key)
    _require(value in choices, key, value, "one of " + ", ".join(repr(c) for c in choices))


def _unqualified(name: Any) -> str:
    """A plugin name without its ``distribution:`` qualifier."""
    return str(name).rpartition(":")[2]


def _launched_processes() -> int:
    """How many processes the launcher (torchrun) started: its ``WORLD_SIZE``, 1 when
    unset or not a number (the backend reports a malformed one when it starts)."""
    import os

    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return 1


def _pretrains_on_objective(run: Any) -> bool:
    """Whether the run's pre-training stage reads the objective's examples."""
    return int(run.pretrain.steps) > 0 and bool(run.pretrain.unsupervised)


def _check_lengths(run: Any, objective: str, min_inputs: int, min_targets: int,
                   why: str) -> None:
    """pretrain.inputs_length / targets_length at least the objective's minimum."""
    if not _pretrains_on_objective(run):
        return
    for key, low in (("inputs_length", min_inputs), ("targets_length", min_targets)):
        value = run.pretrain[key]
        if int(value) < low:
            raise ConfigError(
                f"pretrain.{key}={value!r} is too short for objective {objective!r}; "
                f"allowed: an integer >= {low} ({why})")


#: Values the plugins accept for their enumerated options, listed here so that validating
#: a config imports no implementation; the plugin modules keep their own checks.
VOCAB_MODEL_TYPES = ("unigram", "bpe", "char", "word")  # SentencePiece model types
EMBEDDED_SOURCES = ("topics", "docstrings")
TXT_UNITS = ("line", "paragraph", "file")
ADAPTER_INITS = ("mtf", "near_identity", "zero")
C4_DEDUPE_MODES = ("lines", "three_sentence_spans", "none")
BADWORDS_FLANKING = ("letters", "word")
PARALLEL_MODES = ("ddp", "fsdp")
CUDA_PRECISIONS = ("bf16", "fp16", "fp32")
CPU_PRECISIONS = ("fp32", "bf16")
#: sacrebleu's smoothing methods (BLEU.SMOOTH_DEFAULTS); tokenizers depend on the
#: installed sacrebleu and its extras, so the bleu plugin asks sacrebleu about those
BLEU_SMOOTH_METHODS = ("none", "floor", "add-k", "exp")
ROUGE_TYPE = re.compile(r"^rouge([1-9][0-9]*|L|Lsum)$")
SQUAD_PAD_PUNCTUATION = ("nonword", "punct")
CNNDM_TFDS_VERSIONS = ("0.0.2", "1.0.0", "2.0.0", "3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0")
WMT_LANGUAGES = ("cs", "de", "en", "et", "fi", "fr", "gu", "hi", "kk", "lt", "lv", "ro", "ru",
                 "tr", "zh")


# ----------------------------------------------------------------------------- model
def _dims(layers: int, d_model: int, d_ff: int, d_kv: int, heads: int) -> dict[str, Any]:
    """One size preset: equal encoder and decoder depth, as every T5 v1.0 size has."""
    return {"num_layers": layers, "num_decoder_layers": None, "d_model": d_model,
            "d_ff": d_ff, "d_kv": d_kv, "num_heads": heads}


@dataclass
class EncDecConfig:
    """T5 v1.0 encoder-decoder. Defaults = the paper's baseline (T5-Base).

    ``size`` names one of :attr:`PRESETS`; the kernel's config composition writes the
    preset's dimensions into the section before the layer that sets ``size`` is merged,
    so keys given in that layer or later ones win (``model.size=base model.num_layers=6``).
    """

    #: The paper's model sizes (facts §1.9, P §3.7), the §3.6 scaling models "2x" (16
    #: layers per stack, BERT-large width) and "4x" (32 layers), and ``tiny``, the
    #: embedded default run's dimensions (tests, demo). ``encdec_half`` halves the
    #: preset's depth; ``lm``/``prefix_lm`` use ``num_layers`` for their single stack.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": _dims(2, 128, 512, 32, 4),
        "small": _dims(6, 512, 2048, 64, 8),
        "base": _dims(12, 768, 3072, 64, 12),
        "large": _dims(24, 1024, 4096, 64, 16),
        "3B": _dims(24, 1024, 16384, 128, 32),
        "11B": _dims(24, 1024, 65536, 128, 128),
        "2x": _dims(16, 1024, 4096, 64, 16),
        "4x": _dims(32, 1024, 4096, 64, 16),
    }

    #: the preset these dimensions came from (recorded in config.yaml); None = explicit
    size: str | None = None
    num_layers: int = 12
    #: decoder layers; None = same as ``num_layers``
    num_decoder_layers: int | None = None
    d_model: int = 768
    d_ff: int = 3072
    d_kv: int = 64
    num_heads: int = 12
    dropout_rate: float = 0.1
    #: Mesh TF shares each dropout mask across the sequence-length axis (the reference
    #: behaviour); False drops elements independently (as Hugging Face does).
    dropout_broadcast: bool = True
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    #: embedding rows are padded to a multiple of this (32100 -> 32128 in T5)
    vocab_divisor: int = 128
    #: "mtf": Mesh TensorFlow initialisation (the paper's); "hf": Hugging Face's
    init: str = "mtf"

    def __post_init__(self) -> None:
        _require(self.size is None or self.size in self.PRESETS, "size", self.size,
                 "null or one of " + ", ".join(self.PRESETS))
        _ints(self, 1, "num_layers", "d_model", "d_ff", "d_kv", "num_heads", "vocab_divisor")
        _optional_int(self, "num_decoder_layers", 1)
        _number(self, "dropout_rate", 0.0, 1.0, high_open=True)
        _ints(self, 4, "relative_attention_num_buckets")
        # the causal bucketing divides by log(max_distance / (num_buckets // 2)) (facts §1.4)
        exact = self.relative_attention_num_buckets // 2
        _require(isinstance(self.relative_attention_max_distance, numbers.Integral)
                 and self.relative_attention_max_distance > exact,
                 "relative_attention_max_distance", self.relative_attention_max_distance,
                 f"an integer > relative_attention_num_buckets // 2 = {exact}")
        _number(self, "layer_norm_epsilon", 0.0, low_open=True)
        _one_of(self, "init", ("mtf", "hf"))

    def check_run(self, run: Any) -> None:
        """The depth rules of the builtin architectures sharing this config."""
        arch = _unqualified(run.model.name)
        decoder = self.num_decoder_layers
        if arch == "encdec_half":
            for key, value in (("num_layers", self.num_layers), ("num_decoder_layers", decoder)):
                if value is not None and value < 2:
                    raise ConfigError(
                        f"model.{key}={value!r} is out of range for architecture 'encdec_half'; "
                        "allowed: an integer >= 2 (each stack is built with half the layers)")
        elif arch in ("encdec_shared", "lm", "prefix_lm") and decoder not in (None, self.num_layers):
            raise ConfigError(
                f"model.num_decoder_layers={decoder!r} is out of range for architecture "
                f"{arch!r}; allowed: null or model.num_layers ({self.num_layers}), as it has "
                "one stack")


# ------------------------------------------------------------------------ vocabulary
@dataclass
class SentencePieceConfig:
    """SentencePiece vocabulary plus ``extra_ids`` sentinels numbered from the end."""

    #: an existing SentencePiece ``.model`` file; None = train one on the run's corpus
    model_file: str | None = path_option()
    #: number of SentencePiece pieces to train (32000 in the paper)
    size: int = 32000
    extra_ids: int = 100
    model_type: str = "unigram"
    character_coverage: float = 0.9995
    #: at most this many texts (documents) are read from the corpus for training
    max_training_texts: int = 100000
    #: texts longer than this many characters are cut into pieces before training
    max_text_chars: int = 4000

    def __post_init__(self) -> None:
        # ids are int32 throughout the pipeline (and in SentencePiece's own model proto)
        _ints(self, 4, "size", high=2**31 - 1)
        _ints(self, 0, "extra_ids", high=2**31 - 1 - max(int(self.size), 0))
        _one_of(self, "model_type", VOCAB_MODEL_TYPES)
        _number(self, "character_coverage", 0.0, 1.0, low_open=True)
        _ints(self, 1, "max_training_texts")
        # SentencePiece's max_sentence_length (an int32) is set to 4 * max_text_chars + 16
        _ints(self, 1, "max_text_chars", high=(2**31 - 1 - 16) // 4)


# ------------------------------------------------------------------------- objective
@dataclass
class IidSpansConfig:
    """The paper's baseline objective: i.i.d. corruption, replace spans (Table 5)."""

    noise_density: float = 0.15
    #: documents concatenated without separators before chunking (reduce_concat_tokens)
    concat_documents: int = 128
    #: documents longer than this are cut into aligned pieces, one kept at random
    max_document_tokens: int = 65536
    #: False = the reference's output exactly (sentinels shift by one when a chunk
    #: starts with noise); True = targets always start with the first sentinel
    fix_leading_noise: bool = False

    def __post_init__(self) -> None:
        _number(self, "noise_density", 0.0, 1.0, low_open=True, high_open=True)
        _ints(self, 1, "concat_documents", "max_document_tokens")

    def check_run(self, run: Any) -> None:
        _check_lengths(run, "iid_spans", 3, 3, "inputs: a clean token, a sentinel and EOS; "
                       "targets: a sentinel, a noise token and EOS")


#: how many raw tokens a span-corruption chunk may exceed its inputs_length by (see
#: SpanConfig.check_run); T5's 568 for 512 is 56 over
SPAN_MAX_EXTRA_TOKENS = 2**20


@dataclass
class SpanConfig:
    """Random-span corruption (P §3.3.4, Table 7; the final T5 objective, §3.7)."""

    noise_density: float = 0.15
    #: mean length of a corrupted span (the paper tries 2, 3, 5, 10)
    mean_noise_span_length: float = 3.0
    #: documents concatenated without separators before chunking (reduce_concat_tokens)
    concat_documents: int = 128
    #: documents longer than this are cut into aligned pieces, one kept at random
    max_document_tokens: int = 65536
    #: False = the reference (targets end with the last noise span, no sentinel after it);
    #: True = one more sentinel before EOS, as P Table 3 prints it (targets one token longer)
    trailing_sentinel: bool = False

    def __post_init__(self) -> None:
        _number(self, "noise_density", 0.0, 1.0, low_open=True, high_open=True)
        _number(self, "mean_noise_span_length", 1.0)
        _ints(self, 1, "concat_documents", "max_document_tokens")

    def check_run(self, run: Any) -> None:
        """The lengths a full chunk needs (facts §3.5): ``random_spans_helper`` picks the
        chunk length for ``inputs_length``; its mask has ``clip(round(T * density), 1,
        T - 1)`` noise tokens in ``max(1, round(noise / mean))`` spans (the count the mask
        really draws), and both its encoded inputs and targets must fit untrimmed."""
        if not _pretrains_on_objective(run):
            return
        from t5k_builtin.objectives import batched, noise  # numpy only

        inputs_length = int(run.pretrain.inputs_length)
        targets_length = int(run.pretrain.targets_length)
        density, mean = float(self.noise_density), float(self.mean_noise_span_length)
        trailing = int(self.trailing_sentinel)
        settings = (f"noise_density={self.noise_density}, mean_noise_span_length="
                    f"{self.mean_noise_span_length}, trailing_sentinel={self.trailing_sentinel}")

        def needed(length: int) -> tuple[int, int, int]:
            """(chunk tokens, encoded inputs, encoded targets) at inputs ``length``."""
            tokens, targets = noise.random_spans_helper(length, density, mean)
            if tokens < 2:
                return tokens, length + 1, targets + trailing
            _, num_noise, num_spans = batched.span_counts(tokens, density, mean)
            return (tokens, tokens - num_noise + num_spans + 1,
                    max(targets, num_noise + num_spans + 1) + trailing)

        # the helper steps the chunk length up one token at a time from inputs_length to
        # about inputs_length / (1 - density + density / mean): bound that work (and the
        # chunk) so that neither this check nor the objective spins for minutes
        extra = inputs_length * (1.0 / (1.0 - density + density / mean) - 1.0)
        if extra > SPAN_MAX_EXTRA_TOKENS:
            raise ConfigError(
                f"objective.mean_noise_span_length={self.mean_noise_span_length} is out of "
                f"range with objective.noise_density={self.noise_density} at "
                f"pretrain.inputs_length={inputs_length}: raw chunks would be about "
                f"{int(inputs_length + extra)} tokens; allowed: settings whose chunks exceed "
                f"inputs_length by at most {SPAN_MAX_EXTRA_TOKENS} tokens (a shorter mean span, "
                "a lower density or a shorter inputs_length)")
        _, inputs_needed, targets_needed = needed(inputs_length)
        if inputs_needed > inputs_length:
            search = range(inputs_length + 1, inputs_length + (257 if extra < 4096 else 1))
            fits = next((n for n in search if needed(n)[1] <= n), None)
            raise ConfigError(
                f"pretrain.inputs_length={inputs_length} is too short for objective 'span' "
                f"({settings}): a full chunk needs {inputs_needed} input tokens (at least a "
                "clean token, one noise span's sentinel and EOS); allowed: an inputs_length "
                "whose full chunks fit" + (f", e.g. {fits}" if fits else ""))
        if targets_length < targets_needed:
            raise ConfigError(
                f"pretrain.targets_length={targets_length} is too short for objective 'span' "
                f"at pretrain.inputs_length={inputs_length} ({settings}): full chunks need "
                f"{targets_needed} target tokens; allowed: an integer >= {targets_needed}")


@dataclass
class PrefixLmConfig:
    """Prefix LM (P Table 4): split each chunk at a uniformly random point.

    No noise density: the reference's ``random_prefix_noise_mask`` is defined for 0.5
    only (facts §3.2). Documents are not concatenated (prefix_lm.gin).
    """

    max_document_tokens: int = 65536

    def __post_init__(self) -> None:
        _ints(self, 1, "max_document_tokens")

    def check_run(self, run: Any) -> None:
        _check_lengths(run, "prefix_lm", 3, 2, "a chunk of inputs_length - 1 >= 2 tokens is "
                       "split into a non-empty prefix and rest; targets: a token and EOS")


@dataclass
class LmConfig:
    """Plain language modelling (P Table 2 "LM"): predict the chunk left to right."""

    concat_documents: int = 128
    max_document_tokens: int = 65536

    def __post_init__(self) -> None:
        _ints(self, 1, "concat_documents", "max_document_tokens")

    def check_run(self, run: Any) -> None:
        """Chunks are ``targets_length - 1`` tokens; the examples have no inputs, which the
        builtin encoder-decoder architectures refuse (their encoder would see nothing)."""
        _check_lengths(run, "lm", 0, 2, "a token and EOS")
        arch = _unqualified(run.model.name)
        if _pretrains_on_objective(run) and arch in ("encdec", "encdec_shared", "encdec_half"):
            raise ConfigError(
                f"objective.name={run.objective.name!r} does not fit architecture {arch}: an "
                "example has no inputs (objective lm makes none), so the encoder would see "
                f"nothing; allowed with {arch}: another objective (prefix_lm is the paper's "
                "LM objective for encoder-decoders), or model.name=lm / prefix_lm")


@dataclass
class BertConfig:
    """BERT-style (P Tables 4, 5): 15% i.i.d. noise, 90% -> mask id, 10% -> random id."""

    noise_density: float = 0.15
    #: probability that a corrupted token becomes a random id instead of the mask id
    random_prob: float = 0.1
    concat_documents: int = 128
    max_document_tokens: int = 65536

    def __post_init__(self) -> None:
        _number(self, "noise_density", 0.0, 1.0, low_open=True, high_open=True)
        _number(self, "random_prob", 0.0, 1.0)
        _ints(self, 1, "concat_documents", "max_document_tokens")

    def check_run(self, run: Any) -> None:
        _check_lengths(run, "bert", 2, 2, "a token and EOS on each side")


@dataclass
class MassConfig:
    """MASS-style (P Table 5): 15% i.i.d. noise, every corrupted token -> the mask id."""

    noise_density: float = 0.15
    concat_documents: int = 128
    max_document_tokens: int = 65536

    def __post_init__(self) -> None:
        _number(self, "noise_density", 0.0, 1.0, low_open=True, high_open=True)
        _ints(self, 1, "concat_documents", "max_document_tokens")

    def check_run(self, run: Any) -> None:
        _check_lengths(run, "mass", 2, 2, "a token and EOS on each side")


@dataclass
class DeshuffleConfig:
    """Deshuffling (P Table 4): the inputs are the chunk's tokens in random order.

    ``noise_density`` < 1 shuffles only an i.i.d. subset of positions among themselves
    (the reference's ``permute_noise_tokens``); the paper's setting is 1.0.
    """

    noise_density: float = 1.0
    max_document_tokens: int = 65536

    def __post_init__(self) -> None:
        _number(self, "noise_density", 0.0, 1.0, low_open=True)
        _ints(self, 1, "max_document_tokens")

    def check_run(self, run: Any) -> None:
        _check_lengths(run, "deshuffle", 2, 2, "a token and EOS on each side")


@dataclass
class IidDropConfig:
    """Drop corrupted tokens (P Table 5): i.i.d. noise removed from the inputs."""

    noise_density: float = 0.15
    concat_documents: int = 128
    max_document_tokens: int = 65536

    def __post_init__(self) -> None:
        _number(self, "noise_density", 0.0, 1.0, low_open=True, high_open=True)
        _ints(self, 1, "concat_documents", "max_document_tokens")

    def check_run(self, run: Any) -> None:
        _check_lengths(run, "iid_drop", 2, 2, "a token and EOS on each side")


# --------------------------------------------------------------------------- corpora
@dataclass
class EmbeddedCorpusConfig:
    """Python's own documentation and docstrings, read from the installation."""

    #: "topics" = pydoc_data.topics, "docstrings" = stdlib module docstrings
    sources: list[str] = field(default_factory=lambda: ["topics", "docstrings"])
    #: documents whose stable hash % 100 is below this go to "validation"
    validation_percent: int = 2
    #: minimum characters for a document to be kept
    min_chars: int = 40

    def __post_init__(self) -> None:
        sources = list(self.sources)
        _require(bool(sources) and set(sources) <= set(EMBEDDED_SOURCES)
                 and len(set(sources)) == len(sources), "sources", sources,
                 "a non-empty list of distinct sources from " + ", ".join(EMBEDDED_SOURCES))
        _ints(self, 0, "validation_percent", high=100)
        _ints(self, 1, "min_chars")


@dataclass
class TextFilesConfig:
    """Local .txt / .jsonl / .json / .parquet files read through the datasets library."""

    paths: list[str] = path_option(list_of=True)
    #: field holding the text in .jsonl/.json/.parquet files
    text_field: str = "text"
    #: paths for the validation split (optional)
    validation_paths: list[str] = path_option(list_of=True)
    #: .txt files: "line" = one document per line, "paragraph" = blank-line separated,
    #: "file" = one document per file
    txt_unit: str = "paragraph"

    def __post_init__(self) -> None:
        _one_of(self, "txt_unit", TXT_UNITS)


@dataclass
class AdaptersConfig:
    """Adapter layers (P §3.5.1, Table 10): inner dimension d = 32, 128, 512 or 2048."""

    inner_dim: int = 512
    #: also train the model's layer norms (the paper's text); False = adapters only (the
    #: gin's ``variable_filter = "task_adapter"``)
    train_layer_norms: bool = True
    #: "near_identity" (W_o scaled by 1e-3: outputs barely change at step 0), "zero"
    #: (exactly the pre-trained function), "mtf" (the reference's standard init)
    init: str = "near_identity"

    def __post_init__(self) -> None:
        _ints(self, 1, "inner_dim")
        _one_of(self, "init", ADAPTER_INITS)


@dataclass
class GradualUnfreezeConfig:
    """Gradual unfreezing (P §3.5.1, Table 10): top blocks first, in equal episodes."""

    #: number of episodes; 0 = one per block of the deepest stack (the paper: 12)
    episodes: int = 0
    #: the shared embedding / output matrix trains throughout
    train_embedding: bool = True

    def __post_init__(self) -> None:
        _ints(self, 0, "episodes")


@dataclass
class C4CleanConfig:
    """The C4 cleaning rules (facts §4.2; TFDS ``c4_utils``), each switchable.

    Defaults are C4 ``en``. Page-level rules drop the whole page, line-level rules drop
    the line; the cleaner reports how many of each it removed.
    """

    #: drop pages longer than this many characters (``is_valid_length``); 0 = no limit
    max_page_chars: int = 190_000
    #: keep one page per normalised URL
    url_dedupe: bool = True
    #: master switch of the line/page heuristics below (``clean``); False = C4 unfiltered
    clean: bool = True
    #: drop a line with a whitespace-separated word longer than this; 0 = off
    max_word_length: int = 1000
    #: delete citation markers ``[1]``, ``[edit]``, ``[citation needed]``
    remove_citations: bool = True
    #: keep only lines ending in . ? ! or " (and not in ...)
    terminal_punctuation: bool = True
    #: drop lines with fewer words; 0 = off
    min_words_per_line: int = 5
    #: drop the page if a line contains "lorem ipsum"
    lorem_ipsum: bool = True
    #: drop lines containing "javascript"
    javascript: bool = True
    #: drop the page if a line contains a curly brace "{"
    curly_brace: bool = True
    #: drop lines mentioning terms of use / privacy policy / cookies
    policy: bool = True
    #: drop the page if it contains a word of the bad-words list (LDNOOBW "en" list at
    #: the commit C4 pinned, one word or phrase per line)
    badwords: bool = True
    #: a local copy of that list; None = fetch the pinned list once into the user cache
    #: (needs internet; a clear error says how to supply the file when offline)
    badwords_path: str | None = path_option()
    #: how a bad word must be delimited: "letters" = by non-letters ``[^a-z]`` (c4_utils
    #: at the commit the paper's code pinned: "appétit" then matches "tit"); "word" = by
    #: ``\W`` / text start / end (later TFDS, which the released allenai/c4 agrees with)
    badwords_flanking: str = "letters"
    #: drop pages with fewer sentences (NLTK punkt); 0 = off
    min_sentences_per_page: int = 3
    #: "lines": the released code (every distinct line, case-insensitive, kept in one page
    #: only); "three_sentence_spans": the paper's wording (any three-sentence span kept once);
    #: "none"
    dedupe: str = "lines"
    #: language identification (langdetect, seed 0): keep pages whose top language is
    #: ``language`` with probability >= ``language_threshold``; "" = off
    language: str = "en"
    language_threshold: float = 0.99
    #: sentence splitter for the sentence count: "punkt" (NLTK's English model when its
    #: data is installed, else an untrained Punkt tokenizer, with a warning)
    sentence_splitter: str = "punkt"

    def __post_init__(self) -> None:
        _ints(self, 0, "max_page_chars", "max_word_length", "min_words_per_line",
              "min_sentences_per_page")
        _one_of(self, "badwords_flanking", BADWORDS_FLANKING)
        _one_of(self, "dedupe", C4_DEDUPE_MODES)
        _number(self, "language_threshold", 0.0, 1.0)
        _one_of(self, "sentence_splitter", ("punkt",))


def _c4_unfiltered_cleaning() -> C4CleanConfig:
    return C4CleanConfig(clean=False, dedupe="none", badwords=False)


def _no_cleaning() -> C4CleanConfig:
    """Every rule off: TFDS ``wikipedia`` filters nothing (no length limit, URL dedupe or
    language id; its pages come from the dump's parser)."""
    return C4CleanConfig(max_page_chars=0, url_dedupe=False, clean=False, dedupe="none",
                         badwords=False, language="")


@dataclass
class WebCorpusConfig:
    """A pre-training corpus from the Hugging Face hub, local shards, or raw web pages.

    Exactly one source is used, in this order: ``raw_files`` (raw pages cleaned here
    with ``cleaning``), ``data_files`` (local shards in the hub's schema), else the hub
    dataset ``hub_path`` / ``hub_name`` at ``revision`` (needs internet unless cached).
    """

    #: raw web pages: Common Crawl WET files (.wet, .warc.wet, optionally .gz) or JSON
    #: lines with ``url`` and ``text`` (.jsonl, .jsonl.gz); files, directories or globs
    raw_files: list[str] = path_option(list_of=True)
    #: local shards in the hub schema (.json/.jsonl, optionally .gz, or .parquet)
    data_files: list[str] = path_option(list_of=True)
    #: local shards of the validation split
    validation_files: list[str] = path_option(list_of=True)
    hub_path: str = path_option("allenai/c4", hub=True)
    hub_name: str | None = "en"
    revision: str | None = None
    #: stream the hub dataset instead of downloading it whole
    streaming: bool = True
    #: field holding the document text
    text_field: str = "text"
    #: documents in the seeded shuffle buffer (datasets ``IterableDataset.shuffle``);
    #: 0 = corpus order
    shuffle_buffer: int = 0
    #: read only shard ``rank`` of ``world_size`` (``datasets.distributed.
    #: split_dataset_by_node``), for separate jobs over parts of a corpus. Not for the
    #: processes of one ``t5k run`` (torchrun): they all read the whole stream and split
    #: each global batch, so a sharded corpus is refused there. -1 (configs written
    #: before 2026-12, when -1 took the launcher's RANK / WORLD_SIZE) = 0 of 1
    rank: int = 0
    world_size: int = 1
    #: malformed records (bad JSON, non-UTF-8 bytes, missing fields) raise instead of
    #: being counted and skipped with a warning
    strict: bool = False
    cleaning: C4CleanConfig = field(default_factory=C4CleanConfig)

    def __post_init__(self) -> None:
        _ints(self, 0, "shuffle_buffer")
        _ints(self, -1, "rank")
        _require(self.world_size == -1 or (isinstance(self.world_size, numbers.Integral)
                                           and self.world_size >= 1),
                 "world_size", self.world_size, "an integer >= 1")
        if self.rank >= 0 and self.world_size >= 1:
            _require(self.rank < self.world_size, "rank", self.rank,
                     f"an integer < world_size ({self.world_size})")

    def check_run(self, run: Any) -> None:
        """A shard is refused under a multi-process launch (see ``rank``)."""
        launched = _launched_processes()
        if self.world_size > 1 and launched > 1:
            raise ConfigError(
                f"corpus.world_size={self.world_size} under a {launched}-process launch: "
                "every process of a run reads the whole corpus and trains on its share of "
                "each global batch, so a sharded corpus would drop documents; leave "
                "corpus.rank / corpus.world_size at 0 / 1")


@dataclass
class C4Config(WebCorpusConfig):
    """C4 ``en`` (P §2.2): clean + dedupe + bad words + English >= 0.99."""


@dataclass
class C4UnfilteredConfig(WebCorpusConfig):
    """C4 ``en.noclean`` (P Table 8): length filter, URL dedupe and language id only."""

    hub_name: str | None = "en.noclean"
    cleaning: C4CleanConfig = field(default_factory=_c4_unfiltered_cleaning)


@dataclass
class RealNewsLikeConfig(WebCorpusConfig):
    """C4 ``realnewslike`` (P Table 8): C4 restricted to the RealNews domains."""

    hub_name: str | None = "realnewslike"
    #: Grover's ``domain_to_allowed_subdomains.json`` (domain -> true or a list of allowed
    #: subdomains); needed for raw_files / data_files, not for the hub's realnewslike
    domains_path: str | None = path_option()


@dataclass
class WebTextLikeConfig(WebCorpusConfig):
    """C4 ``webtextlike`` (P Table 8): C4 pages whose URL is in the OpenWebText list."""

    hub_name: str | None = "en"
    #: the OpenWebText URL list: one URL per line, optionally ``url<TAB>score``
    urls_path: str | None = path_option()
    #: keep URLs whose Reddit score is at least this (lines without a score are kept)
    min_score: int = 3


@dataclass
class WikipediaConfig(WebCorpusConfig):
    """English Wikipedia articles (P Table 8; the paper used the 2019-03-01 dump)."""

    hub_path: str = path_option("wikimedia/wikipedia", hub=True)
    hub_name: str | None = "20231101.en"
    #: raw_files are read as they are, like TFDS's articles (each rule can be switched on)
    cleaning: C4CleanConfig = field(default_factory=_no_cleaning)


@dataclass
class WikipediaTbcConfig(WikipediaConfig):
    """Wikipedia + Toronto Books Corpus (P Table 8), interleaved by ``tbc_probability``."""

    tbc_hub_path: str = path_option("bookcorpus/bookcorpus", hub=True)
    tbc_hub_name: str | None = None
    #: local TBC shards (text lines / jsonl / parquet with ``text``)
    tbc_files: list[str] = path_option(list_of=True)
    #: probability that the next document comes from TBC (the paper's 20 GB = 16 GB
    #: Wikipedia + ~4 GB TBC)
    tbc_probability: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        _number(self, "tbc_probability", 0.0, 1.0)


@dataclass
class DemoTaskConfig:
    """A demo downstream task derived deterministically from the embedded corpus."""

    num_train: int = 2000
    num_validation: int = 200
    seed: int = 0
    #: maximum words of a sentence / paragraph used to build an example
    max_words: int = 24
    #: maximum words of a demo_summarize paragraph (2-4 sentences of <= max_words each)
    max_paragraph_words: int = 60
    #: embedded-corpus documents whose md5 % 100 is below this are validation documents
    validation_percent: int = 10

    def __post_init__(self) -> None:
        _ints(self, 0, "num_train", "num_validation")
        # the demo tasks' sentences have at least 6 words; a summary paragraph is at least
        # two sentences of at least 3 words
        _ints(self, 6, "max_words", "max_paragraph_words")
        _ints(self, 1, "validation_percent", high=99)


# -------------------------------------------------------------------------- training
@dataclass
class ProportionalMixerConfig:
    """Examples-proportional mixing with an artificial data-set size limit K."""

    limit: int = 2**19

    def __post_init__(self) -> None:
        _ints(self, 1, "limit")


@dataclass
class TemperatureMixerConfig:
    """Temperature-scaled mixing: K-limited sizes to the power 1/T (P Table 11)."""

    temperature: float = 2.0
    limit: int = 2**21

    def __post_init__(self) -> None:
        _number(self, "temperature", 1.0)
        _ints(self, 1, "limit")


def _check_fsdp_strategy(backend: Any, run: Any) -> None:
    """FSDP shards the parameters the model has when it is prepared; a fine-tuning
    strategy that adds modules (``adapters``) cannot train them sharded, which the
    backend refuses when fine-tuning starts: refuse it before pre-training instead."""
    strategy = _unqualified(run.finetune.strategy.name)
    if (backend.parallel == "fsdp" and _launched_processes() > 1 and int(run.finetune.steps) > 0
            and strategy in FSDP_REFUSED_STRATEGIES):
        raise ConfigError(
            f"backend.parallel=fsdp cannot fine-tune with finetune.strategy.name={strategy} "
            "(its new modules would train unsharded and unsynchronised); use "
            "backend.parallel=ddp")


#: builtin fine-tuning strategies that add modules after the model is prepared
FSDP_REFUSED_STRATEGIES = ("adapters",)


@dataclass
class CpuBackendConfig:
    #: torch intra-op threads; None = torch's default
    threads: int | None = None
    #: torch.use_deterministic_algorithms
    deterministic: bool = True
    #: data parallelism when launched by torchrun (WORLD_SIZE > 1): "ddp" over gloo
    parallel: str = "ddp"
    #: how long a process waits in a collective (minutes) before the run fails: the other
    #: ranks wait while rank 0 alone trains the vocabulary, tokenises the tasks (WMT
    #: En-Fr's 40.8M pairs) and evaluates, which at paper scale can outlast torch's
    #: defaults (30 min gloo, 10 min NCCL)
    timeout_minutes: float = 120.0
    #: "fp32", or "bf16" autocast (only on CPUs with native bf16: AVX512-BF16 / AMX)
    precision: str = "fp32"
    #: nn.Module.compile the model (torch.compile with inductor's C++ backend; the first
    #: steps compile, which takes minutes on a small CPU)
    compile: bool = False
    #: evaluation decodes with fixed shapes through a torch.compile'd decoder step
    #: (``decoding.generate(compile=True)``): the same predictions; ~1.2-1.3x faster
    #: decoding at t5-small / tiny dims once compiled, which costs ~30-60 s per batch shape
    #: (rows x encoder-width bucket), so it pays for long evaluations only
    compile_decoding: bool = False
    #: glibc malloc keeps freed memory in the heap, so each step's tensors above 32 MiB
    #: reuse pages instead of mapping fresh ones (backends/heap.py: t5-small at
    #: 8 x 512/114 7-8% faster per step, peak RSS 3-14% higher); no effect under other
    #: C libraries
    keep_freed_memory: bool = True

    def __post_init__(self) -> None:
        _optional_int(self, "threads", 1)
        _one_of(self, "parallel", PARALLEL_MODES)
        _one_of(self, "precision", CPU_PRECISIONS)
        _number(self, "timeout_minutes", 0, low_open=True)

    def check_run(self, run: Any) -> None:
        _check_fsdp_strategy(self, run)


@dataclass
class CudaBackendConfig:
    """PyTorch on NVIDIA GPUs."""

    #: "bf16" autocast (falls back to "fp16" + loss scaling without bf16 support), "fp16",
    #: or "fp32"
    precision: str = "bf16"
    #: TF32 tensor cores for float32 matmuls
    tf32: bool = True
    #: nn.Module.compile the model (torch.compile, parameter names unchanged)
    compile: bool = False
    #: data parallelism when launched by torchrun (WORLD_SIZE > 1): "ddp" over NCCL
    parallel: str = "ddp"
    #: how long a process waits in a collective (minutes) before the run fails: the other
    #: ranks wait while rank 0 alone trains the vocabulary, tokenises the tasks (WMT
    #: En-Fr's 40.8M pairs) and evaluates, which at paper scale can outlast torch's
    #: defaults (30 min gloo, 10 min NCCL)
    timeout_minutes: float = 120.0

    def __post_init__(self) -> None:
        _one_of(self, "precision", CUDA_PRECISIONS)
        _one_of(self, "parallel", PARALLEL_MODES)
        _number(self, "timeout_minutes", 0, low_open=True)

    def check_run(self, run: Any) -> None:
        _check_fsdp_strategy(self, run)


@dataclass
class AdafactorConfig:
    """Adafactor as Mesh TensorFlow ran it for the paper (facts §5.1)."""

    #: None/0.0 = no first moment (the paper's setting)
    beta1: float = 0.0
    decay_exponent: float = 0.8
    clipping_threshold: float = 1.0
    factored: bool = True
    min_dim_size_to_factor: int = 128
    epsilon1: float = 1e-30
    epsilon2: float = 1e-3
    multiply_by_parameter_scale: bool = True

    def __post_init__(self) -> None:
        if self.beta1 is not None:  # None = 0.0 (the optimizer accepts both)
            _number(self, "beta1", 0.0, 1.0, high_open=True)
        _number(self, "decay_exponent", 0.0, 1.0, low_open=True)
        if self.clipping_threshold is not None:  # None = no update clipping
            _number(self, "clipping_threshold", 0.0, low_open=True)
        _ints(self, 1, "min_dim_size_to_factor")
        _number(self, "epsilon1", 0.0)
        _number(self, "epsilon2", 0.0)


@dataclass
class RsqrtScheduleConfig:
    """lr(step) = 1/sqrt(max(step, warmup_steps)), optional linear ramp-down at the end."""

    warmup_steps: int = 10000
    #: fraction of the stage's steps over which lr decays linearly to 0 (0 = paper)
    linear_decay_fraction: float = 0.0

    def __post_init__(self) -> None:
        _ints(self, 1, "warmup_steps")
        _number(self, "linear_decay_fraction", 0.0, 1.0)


@dataclass
class ConstantScheduleConfig:
    value: float = 1e-3

    def __post_init__(self) -> None:
        _number(self, "value", 0.0)


@dataclass
class RougeConfig:
    #: rouge-score types; the paper reports rouge1, rouge2 and rougeLsum
    types: list[str] = field(default_factory=lambda: ["rouge1", "rouge2", "rougeLsum"])
    use_stemmer: bool = False
    #: bootstrap-aggregate and report the median (mid) F-measure, as T5 does
    bootstrap: bool = True
    #: seed of numpy's global generator while bootstrapping (T5 leaves it unseeded; a
    #: fixed seed makes scores reproducible; the caller's numpy state is restored)
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        types = list(self.types)
        _require(bool(types) and all(isinstance(t, str) and ROUGE_TYPE.match(t) for t in types),
                 "types", types, "a non-empty list of rougeN (N >= 1), rougeL, rougeLsum")
        _ints(self, 0, "bootstrap_seed", high=2**32 - 1)  # numpy.random.seed's range


@dataclass
class BleuConfig:
    #: sacrebleu tokenizer; T5 uses "intl"
    tokenize: str = "intl"
    smooth_method: str = "exp"
    lowercase: bool = False

    def __post_init__(self) -> None:
        _one_of(self, "smooth_method", BLEU_SMOOTH_METHODS)


# --- SQuAD / CNN-DM / WMT tasks and paper metrics
@dataclass
class HubTaskSource:
    """Where a downstream task comes from when no local file is configured: the Hugging
    Face hub dataset ``hub_path`` / ``hub_name`` at ``revision`` (needs internet unless
    cached). ``streaming`` reads it without downloading it whole (then the number of
    examples is unknown)."""

    hub_path: str = path_option("", hub=True)
    hub_name: str | None = None
    revision: str | None = None
    streaming: bool = False


@dataclass
class SquadConfig(HubTaskSource):
    """SQuAD v1.1 (facts §8.4, T5 task ``squad_v010_allanswers``).

    Local official JSON files (``{"data": [...], "version": "1.1"}``) are used when
    either file is set; the splits are the files given. Else the hub's ``rajpurkar/squad``.
    """

    hub_path: str = path_option("rajpurkar/squad", hub=True)
    #: e.g. train-v1.1.json
    train_file: str | None = path_option()
    #: e.g. dev-v1.1.json
    validation_file: str | None = path_option()
    #: how question, context and answers are spaced: "nonword" = the paper-era T5 code
    #: (spaces around every character outside [0-9A-Za-z_], RE2's \W); "punct" = later T5
    #: (around ASCII punctuation only, RE2's [[:punct:]])
    pad_punctuation: str = "nonword"

    def __post_init__(self) -> None:
        _one_of(self, "pad_punctuation", SQUAD_PAD_PUNCTUATION)


@dataclass
class CnnDailymailConfig(HubTaskSource):
    """CNN / Daily Mail (facts §8.4, T5 task ``cnn_dailymail_v002``).

    One source: ``stories_dirs`` + ``url_lists_dir`` (the original ``.story`` files and
    ``all_{train,val,test}.txt`` URL lists, read as TFDS ``tfds_version`` does), else JSON
    lines (``*_files``) with ``article_field`` / ``summary_field``, else the hub.
    """

    hub_path: str = path_option("abisee/cnn_dailymail", hub=True)
    hub_name: str | None = "3.0.0"
    #: directories holding <sha1 of URL>.story files (TFDS: cnn/stories, dailymail/stories)
    stories_dirs: list[str] = path_option(list_of=True)
    #: directory with all_train.txt / all_val.txt / all_test.txt
    url_lists_dir: str | None = path_option()
    #: how .story files become text, as this TFDS cnn_dailymail version did: "1.0.0" (the
    #: paper's): lowercased, highlights joined with spaces; "2.0.0": lowercased, joined
    #: with newlines; "3.0.0"/"3.1.0": cased, newlines; "3.2.0"+: also no space before an
    #: added period
    tfds_version: str = "1.0.0"
    train_files: list[str] = path_option(list_of=True)
    validation_files: list[str] = path_option(list_of=True)
    test_files: list[str] = path_option(list_of=True)
    article_field: str = "article"
    summary_field: str = "highlights"

    def __post_init__(self) -> None:
        _one_of(self, "tfds_version", CNNDM_TFDS_VERSIONS)


@dataclass
class WmtConfig(HubTaskSource):
    """A WMT pair translated from ``source_language`` (facts §8.4).

    Local plain-text parallel files: each prefix P names ``P.<source>`` and ``P.<target>``
    (one segment per line, e.g. ``.../newstest2014-deen``); the splits are those with
    prefixes. Else the hub, whose rows are ``{"translation": {lang: text}}``.
    """

    hub_path: str = path_option("wmt/wmt14", hub=True)
    hub_name: str | None = "de-en"
    source_language: str = "en"
    target_language: str = "de"
    train_prefixes: list[str] = path_option(list_of=True)
    validation_prefixes: list[str] = path_option(list_of=True)
    test_prefixes: list[str] = path_option(list_of=True)

    def __post_init__(self) -> None:
        for key in ("source_language", "target_language"):  # a code, optionally with a region
            value = getattr(self, key)
            _require(isinstance(value, str) and value[:2] in WMT_LANGUAGES, key, value,
                     "a language code starting with one of " + ", ".join(WMT_LANGUAGES))
        _require(self.target_language != self.source_language, "target_language",
                 self.target_language, f"a language other than source_language "
                 f"({self.source_language!r})")


@dataclass
class WmtEnDeConfig(WmtConfig):
    """WMT English-German (T5 ``wmt_t2t_ende_v003``: WMT14 training data, validation
    newstest2013, test newstest2014)."""


@dataclass
class WmtEnFrConfig(WmtConfig):
    """WMT English-French. The paper used WMT15 (``wmt15_enfr_v003``: validation
    newstest2014, test newstest2015); the default hub source is WMT14 fr-en, whose training
    data is nearly the same (set hub_path=wmt/wmt15 for the WMT15 splits)."""

    hub_name: str | None = "fr-en"
    target_language: str = "fr"


@dataclass
class WmtEnRoConfig(WmtConfig):
    """WMT16 English-Romanian (T5 ``wmt16_enro_v003``; test newstest2016)."""

    hub_path: str = path_option("wmt/wmt16", hub=True)
    hub_name: str | None = "ro-en"
    target_language: str = "ro"


# --- GLUE / SuperGLUE tasks
@dataclass
class GlueTaskConfig:
    """A GLUE task (facts §8.2): local files in GLUE's own TSV layout, else the hub.

    Local files are read when any ``*_file`` is set (each split read then needs its
    file); with none set, ``datasets.load_dataset(hub_path, hub_name, revision=...)``.
    """

    #: GLUE's ``train.tsv`` (MRPC: also SentEval's ``msr_paraphrase_train.txt`` layout)
    train_file: str | None = path_option()
    #: GLUE's ``dev.tsv`` (MNLI: ``dev_matched.tsv``)
    validation_file: str | None = path_option()
    hub_path: str = path_option("nyu-mll/glue", hub=True)
    #: hub config; None = the task's own (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli)
    hub_name: str | None = None
    revision: str | None = None


@dataclass
class MnliTaskConfig(GlueTaskConfig):
    """GLUE MNLI: train, validation (matched) and validation_mismatched."""

    #: GLUE's ``dev_mismatched.tsv``
    validation_mismatched_file: str | None = path_option()


@dataclass
class SuperGlueTaskConfig(GlueTaskConfig):
    """A SuperGLUE task (facts §8.3): the official ``train.jsonl`` / ``val.jsonl``, else
    the hub (config: boolq, cb, copa, multirc, record, rte, wic, wsc.fixed)."""

    hub_path: str = path_option("aps/super_glue", hub=True)
