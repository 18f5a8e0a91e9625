"""SentencePiece vocabulary with T5's special ids and sentinels (facts §1.10).

As the paper's code (``t5/data/sentencepiece_vocabulary.py`` of the T5 repository):
pad=0, eos=1 (``</s>``), unk=2 (``<unk>``), no BOS; ``extra_ids`` (100) sentinels appended
after the pieces and numbered from the end, ``<extra_id_k>`` = ``vocab_size - 1 - k``;
``decode`` maps every id >= the piece count to unk and stops at the first EOS. Encoding
never produces a sentinel: objectives insert them. (Later SeqIO, and transformers'
``T5Tokenizer``, add the sentinels to the SentencePiece model as pieces, so they encode
the text ``<extra_id_0>`` as one id and decode sentinels by name; ids are the same.) A
model file that already ends with those pieces (SeqIO's ``cc_all.32000.100extra``) keeps
them as its sentinels, with the same ids; its encoding then turns the text
``<extra_id_k>`` into the sentinel, as SeqIO's does.

``build_sentencepiece`` loads ``config.model_file`` or trains a model on the run's corpus
texts with sentencepiece's own trainer (deterministic: one thread, no sampling or
shuffling), caching it in ``<run_dir>/vocab/spm.model`` so a resumed run reuses it.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from t5kernel.errors import ConfigError, DataError

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
MODEL_FILENAME = "spm.model"
#: beside a trained ``spm.model``: the options it was trained with
OPTIONS_FILENAME = "spm.options.json"
TRAINING_OPTIONS = ("size", "model_type", "character_coverage", "max_training_texts",
                    "max_text_chars")
#: fixed seed for sentencepiece's global generator: same texts -> same model bytes
_TRAIN_SEED = 0
_MODEL_TYPES = ("unigram", "bpe", "char", "word")


class SentencePieceVocabulary:
    """A SentencePiece model plus ``extra_ids`` sentinels (satisfies ``api.Vocabulary``)."""

    pad_id = PAD_ID
    eos_id = EOS_ID
    unk_id = UNK_ID

    def __init__(self, model_proto: bytes, extra_ids: int = 100, source: str | None = None):
        where = f" {source}" if source else ""
        if extra_ids < 0:
            raise ConfigError(f"vocabulary.extra_ids must be >= 0, got {extra_ids}")
        try:
            sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except (RuntimeError, TypeError) as exc:
            raise DataError(f"not a SentencePiece model{where}: {_first_line(exc)}") from None
        ids = (sp.pad_id(), sp.eos_id(), sp.unk_id())
        if ids != (PAD_ID, EOS_ID, UNK_ID):
            raise DataError(
                f"SentencePiece model{where} has pad/eos/unk ids {ids}; T5 needs "
                f"(0, 1, 2): train it with pad_id=0 eos_id=1 unk_id=2 bos_id=-1"
            )
        self._proto = bytes(model_proto)
        self._sp = sp
        self.extra_ids = int(extra_ids)
        pieces = int(sp.get_piece_size())
        built_in = _sentinel_pieces(sp)
        if built_in and built_in != self.extra_ids:
            raise ConfigError(
                f"SentencePiece model{where} ends with {built_in} sentinel pieces "
                f"<extra_id_{built_in - 1}> ... <extra_id_0> (a SeqIO-built model, e.g. "
                f"cc_all.32000.100extra); set vocabulary.extra_ids={built_in} to use them "
                f"(got {self.extra_ids})")
        #: the pieces before the sentinels: its own ones when the model already has them
        self.base_vocab_size = pieces - built_in
        self.vocab_size = self.base_vocab_size + self.extra_ids

    @classmethod
    def from_file(cls, path: str | os.PathLike, extra_ids: int = 100) -> SentencePieceVocabulary:
        """Load a ``.model`` file; DataError if it is missing or not a SentencePiece model."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"SentencePiece model file not found: {path}")
        return cls(path.read_bytes(), extra_ids, source=str(path))

    @classmethod
    def planned_size(cls, config: Any) -> int:
        """The ``vocab_size`` :func:`build_sentencepiece` will give for ``config``, cheaply.

        Lets ``t5k describe`` size a model without training a vocabulary: the pieces of
        ``model_file`` plus ``extra_ids``, or ``size + extra_ids`` when one is to be
        trained (sentencepiece yields exactly ``size`` pieces or fails).
        """
        _validate(config)
        if config.model_file:
            return cls.from_file(config.model_file, config.extra_ids).vocab_size
        return int(config.size) + int(config.extra_ids)

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model."""
        return self._proto

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text, out_type=int))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` up to the first EOS; sentinels and unknown ids read as unk."""
        clean = [int(i) for i in ids]
        if EOS_ID in clean:
            clean = clean[: clean.index(EOS_ID)]
        base = self.base_vocab_size
        clean = [i if 0 <= i < base else UNK_ID for i in clean]
        return self._sp.decode(clean)

    def sentinel_id(self, k: int) -> int:
        """Id of ``<extra_id_k>``: ``vocab_size - 1 - k``."""
        if not 0 <= k < self.extra_ids:
            raise ValueError(f"sentinel index {k} out of range [0, {self.extra_ids})")
        return self.vocab_size - 1 - k

    def id_to_piece(self, i: int) -> str:
        """The piece string of an id, ``<extra_id_k>`` for sentinels (for display)."""
        if self.base_vocab_size <= i < self.vocab_size:
            return f"<extra_id_{self.vocab_size - 1 - i}>"
        return self._sp.id_to_piece(int(i))

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``spm.model`` into ``directory`` (``from_file`` reloads it)."""
        _atomic_write(Path(directory) / MODEL_FILENAME, self._proto)

    def __getstate__(self) -> dict[str, Any]:
        return {"proto": self._proto, "extra_ids": self.extra_ids}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["proto"], state["extra_ids"])

    def __repr__(self) -> str:
        return (
            f"SentencePieceVocabulary(base_vocab_size={self.base_vocab_size}, "
            f"extra_ids={self.extra_ids})"
        )


def _sentinel_pieces(sp: Any) -> int:
    """How many pieces at the model's end are T5's sentinels, numbered from the end as
    SeqIO adds them (``▁<extra_id_0>`` last; with or without the ``▁``)."""
    pieces, k = int(sp.get_piece_size()), 0
    while k < pieces and sp.id_to_piece(pieces - 1 - k).lstrip("\u2581") == f"<extra_id_{k}>":
        k += 1
    return k


def build_sentencepiece(config: Any, context: Any) -> SentencePieceVocabulary:
    """The ``sentencepiece`` vocabulary plugin: load ``model_file`` or train on the corpus."""
    _validate(config)
    if config.model_file:
        return SentencePieceVocabulary.from_file(config.model_file, config.extra_ids)
    run_dir = getattr(context, "run_dir", None)
    cached = Path(run_dir) / "vocab" / MODEL_FILENAME if run_dir is not None else None
    if cached is not None and cached.is_file():
        vocab = SentencePieceVocabulary.from_file(cached, config.extra_ids)
        if vocab.base_vocab_size != config.size:
            raise DataError(
                f"cached vocabulary {cached} has {vocab.base_vocab_size} pieces but "
                f"vocabulary.size={config.size}; use the same size or delete the file"
            )
        _check_training_options(cached.with_name(OPTIONS_FILENAME), config)
        return vocab
    texts = (getattr(context, "extras", None) or {}).get("texts")
    if texts is None:
        raise DataError(
            "vocabulary sentencepiece: no vocabulary.model_file and no training texts "
            "(context.extras['texts'])"
        )
    proto = train_sentencepiece(texts, config)
    if cached is not None:
        options = json.dumps(_training_options(config), indent=1, sort_keys=True) + "\n"
        _atomic_write(cached.with_name(OPTIONS_FILENAME), options.encode())
        _atomic_write(cached, proto)
    return SentencePieceVocabulary(proto, config.extra_ids)


def _training_options(config: Any) -> dict[str, Any]:
    """The options that shape a trained model (beside ``size``, which the model shows)."""
    return {key: getattr(config, key) for key in TRAINING_OPTIONS}


def _check_training_options(path: Path, config: Any) -> None:
    """A cached model trained with other options is refused, not silently reused (a run
    directory written before the options were recorded is checked by size only)."""
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cached vocabulary options {path} are unreadable ({exc}); delete "
                        "the vocab folder to train the vocabulary again") from None
    for key, value in _training_options(config).items():
        if key in saved and saved[key] != value:
            raise DataError(
                f"cached vocabulary {path.parent / MODEL_FILENAME} was trained with "
                f"vocabulary.{key}={saved[key]!r} but the run asks for {value!r}; use the "
                "same options or delete the vocab folder")


#: the kernel looks for the optional ``planned_size`` on the plugin's target
build_sentencepiece.planned_size = SentencePieceVocabulary.planned_size  # type: ignore[attr-defined]


def train_sentencepiece(texts: Iterable[str], config: Any) -> bytes:
    """Train a model on at most ``max_training_texts`` texts; returns the model bytes.

    Texts are split into lines and lines longer than ``max_text_chars`` are cut at a
    space, since sentencepiece silently skips over-long sentences.
    """
    stats = {"texts": 0, "sentences": 0, "error": None}
    sentences = _training_sentences(texts, config.max_training_texts, config.max_text_chars, stats)
    writer = io.BytesIO()
    spm.set_random_generator_seed(_TRAIN_SEED)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences,
            model_writer=writer,
            vocab_size=config.size,
            model_type=config.model_type,
            character_coverage=config.character_coverage,
            pad_id=PAD_ID,
            eos_id=EOS_ID,
            unk_id=UNK_ID,
            bos_id=-1,
            num_threads=1,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            max_sentence_length=4 * config.max_text_chars + 16,
            minloglevel=2,
        )
    except RuntimeError as exc:
        if stats["error"] is not None:
            raise stats["error"] from None
        raise _training_error(exc, config, stats) from None
    return writer.getvalue()


def _training_sentences(
    texts: Iterable[str], max_texts: int, max_chars: int, stats: dict[str, Any]
) -> Iterator[str]:
    for text in texts:
        if stats["texts"] >= max_texts:
            return
        if not isinstance(text, str):
            stats["error"] = DataError(
                f"vocabulary training texts must be str, got {type(text).__name__}"
            )
            raise stats["error"]
        stats["texts"] += 1
        for line in text.splitlines():
            for piece in _cut(line.strip(), max_chars):
                stats["sentences"] += 1
                yield piece


def _cut(line: str, max_chars: int) -> Iterator[str]:
    """Pieces of at most ``max_chars`` characters, cut at the last space when there is one."""
    while len(line) > max_chars:
        cut = line.rfind(" ", 0, max_chars + 1)
        cut = cut if cut > 0 else max_chars
        yield line[:cut]
        line = line[cut:].lstrip()
    if line:
        yield line


def _training_error(exc: RuntimeError, config: Any, stats: dict[str, Any]) -> DataError:
    seen = f"{stats['texts']} texts, {stats['sentences']} non-empty lines"
    if stats["sentences"] == 0:
        return DataError(f"vocabulary training texts are empty ({seen})")
    message = str(exc)
    too_high = re.search(r"Vocabulary size too high \((\d+)\).*?<= (\d+)", message)
    if too_high:
        return DataError(
            f"vocabulary.size={config.size} is too large for the training texts ({seen}): "
            f"they allow at most {too_high.group(2)} pieces; lower vocabulary.size or "
            f"give more text"
        )
    too_low = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
    if too_low:
        return DataError(
            f"vocabulary.size={config.size} is smaller than the {too_low.group(2)} pieces "
            f"needed for the characters of the training texts; raise vocabulary.size or "
            f"lower vocabulary.character_coverage"
        )
    return DataError(f"SentencePiece training failed ({seen}): {_first_line(exc)}")


def _validate(config: Any) -> None:
    if config.model_type not in _MODEL_TYPES:
        raise ConfigError(
            f"vocabulary.model_type must be one of {', '.join(_MODEL_TYPES)}, "
            f"got {config.model_type!r}"
        )
    for key, low in (
        ("size", 4),
        ("extra_ids", 0),
        ("max_training_texts", 1),
        ("max_text_chars", 1),
    ):
        if int(getattr(config, key)) < low:
            raise ConfigError(f"vocabulary.{key} must be >= {low}, got {getattr(config, key)}")
    if not 0.0 < float(config.character_coverage) <= 1.0:
        raise ConfigError(
            f"vocabulary.character_coverage must be in (0, 1], got {config.character_coverage}"
        )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
