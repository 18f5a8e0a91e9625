"""Config dataclasses of every built-in plugin.

Kept in one light module (no torch import) so that listing plugins, validating a config
or printing a schema never imports an implementation. Defaults are the paper's
(T5 v1.0 baseline, Raffel et al. 2020 §3.1); the embedded default run scales them down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


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


# ------------------------------------------------------------------------ vocabulary
@dataclass
class SentencePieceConfig:
    """SentencePiece vocabulary plus ``extra_ids`` sentinels numbered from the end."""

    #: an existing SentencePiece ``.model`` file; None = train one on the run's corpus
    model_file: str | None = None
    #: number of SentencePiece pieces to train (32000 in the paper)
    size: int = 32000
    extra_ids: int = 100
    model_type: str = "unigram"
    character_coverage: float = 0.9995
    #: at most this many texts (documents) are read from the corpus for training
    max_training_texts: int = 100000
    #: texts longer than this many characters are cut into pieces before training
    max_text_chars: int = 4000


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


@dataclass
class PrefixLmConfig:
    """Prefix LM (P Table 4): split each chunk at a uniformly random point.

    No noise density: the reference's ``random_prefix_noise_mask`` is defined for 0.5
    only (facts §3.2). Documents are not concatenated (prefix_lm.gin).
    """

    max_document_tokens: int = 65536


@dataclass
class LmConfig:
    """Plain language modelling (P Table 2 "LM"): predict the chunk left to right."""

    concat_documents: int = 128
    max_document_tokens: int = 65536


@dataclass
class BertConfig:
    """BERT-style (P Tables 4, 5): 15% i.i.d. noise, 90% -> mask id, 10% -> random id."""

    noise_density: float = 0.15
    #: probability that a corrupted token becomes a random id instead of the mask id
    random_prob: float = 0.1
    concat_documents: int = 128
    max_document_tokens: int = 65536


@dataclass
class MassConfig:
    """MASS-style (P Table 5): 15% i.i.d. noise, every corrupted token -> the mask id."""

    noise_density: float = 0.15
    concat_documents: int = 128
    max_document_tokens: int = 65536


@dataclass
class DeshuffleConfig:
    """Deshuffling (P Table 4): the inputs are the chunk's tokens in random order.

    ``noise_density`` < 1 shuffles only an i.i.d. subset of positions among themselves
    (the reference's ``permute_noise_tokens``); the paper's setting is 1.0.
    """

    noise_density: float = 1.0
    max_document_tokens: int = 65536


@dataclass
class IidDropConfig:
    """Drop corrupted tokens (P Table 5): i.i.d. noise removed from the inputs."""

    noise_density: float = 0.15
    concat_documents: int = 128
    max_document_tokens: int = 65536


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


@dataclass
class TextFilesConfig:
    """Local .txt / .jsonl / .json / .parquet files read through the datasets library."""

    paths: list[str] = field(default_factory=list)
    #: field holding the text in .jsonl/.json/.parquet files
    text_field: str = "text"
    #: paths for the validation split (optional)
    validation_paths: list[str] = field(default_factory=list)
    #: .txt files: "line" = one document per line, "paragraph" = blank-line separated,
    #: "file" = one document per file
    txt_unit: str = "paragraph"


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


@dataclass
class GradualUnfreezeConfig:
    """Gradual unfreezing (P §3.5.1, Table 10): top blocks first, in equal episodes."""

    #: number of episodes; 0 = one per block of the deepest stack (the paper: 12)
    episodes: int = 0
    #: the shared embedding / output matrix trains throughout
    train_embedding: bool = True


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
    badwords_path: str | None = None
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


def _c4_unfiltered_cleaning() -> C4CleanConfig:
    return C4CleanConfig(clean=False, dedupe="none", badwords=False)


@dataclass
class WebCorpusConfig:
    """A pre-training corpus from the Hugging Face hub, local shards, or raw web pages.

    Exactly one source is used, in this order: ``raw_files`` (raw pages cleaned here
    with ``cleaning``), ``data_files`` (local shards in the hub's schema), else the hub
    dataset ``hub_path`` / ``hub_name`` at ``revision`` (needs internet unless cached).
    """

    #: raw web pages: Common Crawl WET files (.wet, .warc.wet, optionally .gz) or JSON
    #: lines with ``url`` and ``text`` (.jsonl, .jsonl.gz); files, directories or globs
    raw_files: list[str] = field(default_factory=list)
    #: local shards in the hub schema (.json/.jsonl, optionally .gz, or .parquet)
    data_files: list[str] = field(default_factory=list)
    #: local shards of the validation split
    validation_files: list[str] = field(default_factory=list)
    hub_path: str = "allenai/c4"
    hub_name: str | None = "en"
    revision: str | None = None
    #: stream the hub dataset instead of downloading it whole
    streaming: bool = True
    #: field holding the document text
    text_field: str = "text"
    #: documents in the seeded shuffle buffer (datasets ``IterableDataset.shuffle``);
    #: 0 = corpus order
    shuffle_buffer: int = 0
    #: this process's shard of the data (``datasets.distributed.split_dataset_by_node``);
    #: -1 = from the RANK / WORLD_SIZE environment variables (single process: 0 of 1)
    rank: int = -1
    world_size: int = -1
    #: malformed records (bad JSON, non-UTF-8 bytes, missing fields) raise instead of
    #: being counted and skipped with a warning
    strict: bool = False
    cleaning: C4CleanConfig = field(default_factory=C4CleanConfig)


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
    domains_path: str | None = None


@dataclass
class WebTextLikeConfig(WebCorpusConfig):
    """C4 ``webtextlike`` (P Table 8): C4 pages whose URL is in the OpenWebText list."""

    hub_name: str | None = "en"
    #: the OpenWebText URL list: one URL per line, optionally ``url<TAB>score``
    urls_path: str | None = None
    #: keep URLs whose Reddit score is at least this (lines without a score are kept)
    min_score: int = 3


@dataclass
class WikipediaConfig(WebCorpusConfig):
    """English Wikipedia articles (P Table 8; the paper used the 2019-03-01 dump)."""

    hub_path: str = "wikimedia/wikipedia"
    hub_name: str | None = "20231101.en"
    cleaning: C4CleanConfig = field(default_factory=_c4_unfiltered_cleaning)


@dataclass
class WikipediaTbcConfig(WikipediaConfig):
    """Wikipedia + Toronto Books Corpus (P Table 8), interleaved by ``tbc_probability``."""

    tbc_hub_path: str = "bookcorpus/bookcorpus"
    tbc_hub_name: str | None = None
    #: local TBC shards (text lines / jsonl / parquet with ``text``)
    tbc_files: list[str] = field(default_factory=list)
    #: probability that the next document comes from TBC (the paper's 20 GB = 16 GB
    #: Wikipedia + ~4 GB TBC)
    tbc_probability: float = 0.2


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


# -------------------------------------------------------------------------- training
@dataclass
class ProportionalMixerConfig:
    """Examples-proportional mixing with an artificial data-set size limit K."""

    limit: int = 2**19


@dataclass
class TemperatureMixerConfig:
    """Temperature-scaled mixing: K-limited sizes to the power 1/T (P Table 11)."""

    temperature: float = 2.0
    limit: int = 2**21


@dataclass
class CpuBackendConfig:
    #: torch intra-op threads; None = torch's default
    threads: int | None = None
    #: torch.use_deterministic_algorithms
    deterministic: bool = True
    #: data parallelism when launched by torchrun (WORLD_SIZE > 1): "ddp" over gloo
    parallel: str = "ddp"


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


@dataclass
class RsqrtScheduleConfig:
    """lr(step) = 1/sqrt(max(step, warmup_steps)), optional linear ramp-down at the end."""

    warmup_steps: int = 10000
    #: fraction of the stage's steps over which lr decays linearly to 0 (0 = paper)
    linear_decay_fraction: float = 0.0


@dataclass
class ConstantScheduleConfig:
    value: float = 1e-3


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


@dataclass
class BleuConfig:
    #: sacrebleu tokenizer; T5 uses "intl"
    tokenize: str = "intl"
    smooth_method: str = "exp"
    lowercase: bool = False


# --- SQuAD / CNN-DM / WMT tasks and paper metrics
@dataclass
class HubTaskSource:
    """Where a downstream task comes from when no local file is configured: the Hugging
    Face hub dataset ``hub_path`` / ``hub_name`` at ``revision`` (needs internet unless
    cached). ``streaming`` reads it without downloading it whole (then the number of
    examples is unknown)."""

    hub_path: str = ""
    hub_name: str | None = None
    revision: str | None = None
    streaming: bool = False


@dataclass
class SquadConfig(HubTaskSource):
    """SQuAD v1.1 (facts §8.4, T5 task ``squad_v010_allanswers``).

    Local official JSON files (``{"data": [...], "version": "1.1"}``) are used when
    either file is set; the splits are the files given. Else the hub's ``rajpurkar/squad``.
    """

    hub_path: str = "rajpurkar/squad"
    #: e.g. train-v1.1.json
    train_file: str | None = None
    #: e.g. dev-v1.1.json
    validation_file: str | None = None
    #: how question, context and answers are spaced: "nonword" = the paper-era T5 code
    #: (spaces around every character outside [0-9A-Za-z_], RE2's \W); "punct" = later T5
    #: (around ASCII punctuation only, RE2's [[:punct:]])
    pad_punctuation: str = "nonword"


@dataclass
class CnnDailymailConfig(HubTaskSource):
    """CNN / Daily Mail (facts §8.4, T5 task ``cnn_dailymail_v002``).

    One source: ``stories_dirs`` + ``url_lists_dir`` (the original ``.story`` files and
    ``all_{train,val,test}.txt`` URL lists, read as TFDS ``tfds_version`` does), else JSON
    lines (``*_files``) with ``article_field`` / ``summary_field``, else the hub.
    """

    hub_path: str = "abisee/cnn_dailymail"
    hub_name: str | None = "3.0.0"
    #: directories holding <sha1 of URL>.story files (TFDS: cnn/stories, dailymail/stories)
    stories_dirs: list[str] = field(default_factory=list)
    #: directory with all_train.txt / all_val.txt / all_test.txt
    url_lists_dir: str | None = None
    #: how .story files become text, as this TFDS cnn_dailymail version did: "1.0.0" (the
    #: paper's): lowercased, highlights joined with spaces; "2.0.0": lowercased, joined
    #: with newlines; "3.0.0"/"3.1.0": cased, newlines; "3.2.0"+: also no space before an
    #: added period
    tfds_version: str = "1.0.0"
    train_files: list[str] = field(default_factory=list)
    validation_files: list[str] = field(default_factory=list)
    test_files: list[str] = field(default_factory=list)
    article_field: str = "article"
    summary_field: str = "highlights"


@dataclass
class WmtConfig(HubTaskSource):
    """A WMT pair translated from ``source_language`` (facts §8.4).

    Local plain-text parallel files: each prefix P names ``P.<source>`` and ``P.<target>``
    (one segment per line, e.g. ``.../newstest2014-deen``); the splits are those with
    prefixes. Else the hub, whose rows are ``{"translation": {lang: text}}``.
    """

    hub_path: str = "wmt/wmt14"
    hub_name: str | None = "de-en"
    source_language: str = "en"
    target_language: str = "de"
    train_prefixes: list[str] = field(default_factory=list)
    validation_prefixes: list[str] = field(default_factory=list)
    test_prefixes: list[str] = field(default_factory=list)


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

    hub_path: str = "wmt/wmt16"
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
    train_file: str | None = None
    #: GLUE's ``dev.tsv`` (MNLI: ``dev_matched.tsv``)
    validation_file: str | None = None
    hub_path: str = "nyu-mll/glue"
    #: hub config; None = the task's own (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli)
    hub_name: str | None = None
    revision: str | None = None


@dataclass
class MnliTaskConfig(GlueTaskConfig):
    """GLUE MNLI: train, validation (matched) and validation_mismatched."""

    #: GLUE's ``dev_mismatched.tsv``
    validation_mismatched_file: str | None = None


@dataclass
class SuperGlueTaskConfig(GlueTaskConfig):
    """A SuperGLUE task (facts §8.3): the official ``train.jsonl`` / ``val.jsonl``, else
    the hub (config: boolq, cb, copa, multirc, record, rte, wic, wsc.fixed)."""

    hub_path: str = "aps/super_glue"
