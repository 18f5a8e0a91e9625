"""Three small downstream tasks derived deterministically from the embedded corpus (DESIGN §6).

They exist so that ``t5k run`` with no arguments fine-tunes and scores every evaluator
family offline, the way the paper scores GLUE, CNN/DM and WMT (facts §8):

* ``demo_acceptability``: CoLA's format (facts §8.2, ``cola sentence: S`` -> ``acceptable``
  / ``unacceptable``), real sentences vs. the same words shuffled; accuracy and Matthews
  correlation on class ids, with T5's ``string_label_to_class_id`` postprocessing (facts
  §8.1: exact match, anything else -> -1, always wrong).
* ``demo_summarize``: CNN/DM's format (``summarize: <text>``, facts §8.4): a 2-4 sentence
  paragraph -> its lead sentence, scored with ROUGE.
* ``demo_pig_latin``: WMT's format (``translate English to Pig Latin: <en>``, facts §8.4):
  a sentence -> its rule-based Pig Latin (:func:`pig_latin`), scored with BLEU.

Splits come from the embedded corpus's own document split (a stable md5 of each
document, see :mod:`t5k_builtin.corpora.embedded`), so no validation document contributes
to training, and a validation example whose text also occurs inside a training document
is dropped. Each split is then shuffled with ``random.Random`` seeded by (task, split,
``config.seed``) and cut to ``num_train`` / ``num_validation``; when fewer candidates
exist the split holds all of them and :meth:`num_examples` says how many.

``DemoTaskConfig.validation_percent`` (default 10) is the embedded split used here: the
embedded corpus's own default (2%) leaves too few paragraphs for a 200-example
validation set. Documents in the 2% pre-training validation split are a subset of it
(the same md5 test with a larger threshold).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterator, Mapping
from typing import Any

from t5k_builtin.configs import DemoTaskConfig, EmbeddedCorpusConfig
from t5k_builtin.corpora.embedded import EmbeddedCorpus
from t5kernel.errors import ConfigError, DataError

SPLITS = ("train", "validation")
ACCEPTABILITY_LABELS = ("unacceptable", "acceptable")  # class id = index, as GLUE CoLA
MIN_SENTENCE_WORDS = 6
MIN_PARAGRAPH_SENTENCES, MAX_PARAGRAPH_SENTENCES = 2, 4

# A sentence ends at . ! ? (closing quotes/brackets allowed) before whitespace and a capital.
_BOUNDARY = re.compile(r"[.!?][)\"'’”]*(?=\s+[(\"'‘“]?[A-Z])")
_ABBREVIATIONS = frozenset(
    "e.g. i.e. etc. vs. cf. al. approx. mr. mrs. dr. no. resp. incl. esp. ca. viz.".split()
)
# A plain word: letters with inner apostrophes/hyphens, optionally followed by , ; or :.
_PLAIN = re.compile(r"^[A-Za-z]+(?:['’-][A-Za-z]+)*[,;:]?$")
_TERMINAL = re.compile(r"^[A-Za-z]+(?:['’-][A-Za-z]+)*[.!?]$")


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences at ``.``/``!``/``?`` followed by a capitalised word.

    Common abbreviations (``e.g.``, ``i.e.``, ``etc.``, ...) and single-letter initials
    do not end a sentence.
    """
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        word = text[: m.start() + 1].rsplit(None, 1)[-1].lower()
        if word in _ABBREVIATIONS or re.fullmatch(r"[(\"']?[a-z]\.", word):
            continue
        out.append(text[start : m.end()].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def is_plain_sentence(sentence: str, min_words: int, max_words: int) -> bool:
    """A capitalised sentence of plain words only (no code, numbers or quotes).

    ``min_words <= words <= max_words``, ends with ``.``, ``!`` or ``?``, and at least two
    different words (so a word shuffle can always change it).
    """
    words = sentence.split()
    if not min_words <= len(words) <= max_words or not sentence[0].isupper():
        return False
    if not _TERMINAL.match(words[-1]) or not all(_PLAIN.match(w) for w in words[:-1]):
        return False
    return len({w.lower() for w in words}) > 1


# ------------------------------------------------------------------------------ Pig Latin
_VOWELS = "aeiouAEIOU"


def _pig_latin_core(word: str) -> str:
    """Pig Latin of a run of letters (and apostrophes), lowercase-insensitive."""
    i = 0
    while (
        i < len(word)
        and not (word[i] in _VOWELS or (i > 0 and word[i] in "yY"))
        and word[i] not in "'’"
    ):
        i += 1
    if i == 0:
        return word + "way"
    if word[i - 1 : i + 1].lower() == "qu":  # "qu" moves as one consonant: quiet -> ietquay
        i += 1
    return word[i:] + word[:i] + "ay"


def _pig_latin_part(part: str) -> str:
    """One hyphen-free word; keeps its capitalisation pattern."""
    moved = _pig_latin_core(part)
    if len(part) > 1 and part.isupper():
        return moved.upper()
    if part[0].isupper():
        return moved[0].upper() + moved[1:].lower()
    return moved


def pig_latin_word(token: str) -> str:
    """Pig Latin of one whitespace token; trailing punctuation stays at the end.

    Rule: a word starting with a vowel (a, e, i, o, u) gets "way" appended
    (``eat`` -> ``eatway``); otherwise its leading consonant cluster, up to the first
    vowel, moves to the end followed by "ay" (``string`` -> ``ingstray``). ``y`` is a
    vowel except as the first letter (``rhythm`` -> ``ythmrhay``, ``yellow`` ->
    ``ellowyay``), ``qu`` after the cluster moves with it (``square`` -> ``aresquay``), a
    word without vowels moves whole (``nth`` -> ``nthay``). Hyphenated parts are
    translated separately. A capitalised word stays capitalised (``Hello`` ->
    ``Ellohay``), an all-caps one stays all caps (``URL`` -> ``URLWAY``).
    """
    m = re.match(r"^(.*?)([^A-Za-z]*)$", token)
    assert m is not None
    body, tail = m.group(1), m.group(2)
    if not body:
        return token
    parts = re.split(r"(-)", body)
    return "".join(p if p == "-" or not p else _pig_latin_part(p) for p in parts) + tail


def pig_latin(sentence: str) -> str:
    """Pig Latin of a sentence, word by word (see :func:`pig_latin_word`)."""
    return " ".join(pig_latin_word(w) for w in sentence.split())


# ------------------------------------------------------------------------------ shuffling
def _bare(token: str) -> tuple[str, str]:
    """(word, trailing punctuation) of a token."""
    word = token.rstrip(",;:.!?")
    return word, token[len(word) :]


def shuffle_words(sentence: str, rng: random.Random) -> str:
    """The sentence's words in a random order different from the original.

    Punctuation stays where it was (a comma after the third word stays after the third
    word, the final mark at the end) and only the first word is capitalised, so neither
    punctuation nor capital letters give the answer away; only word order does. The
    first word is lowercased unless it is ``I`` or has more capitals (``HTTP``,
    ``OrderedDict``). The words, as a multiset, are unchanged.
    """
    words, marks = zip(*(_bare(t) for t in sentence.split()), strict=True)
    words = list(words)
    first = words[0]
    if first[1:].islower() and first != "I":
        words[0] = first[0].lower() + first[1:]
    if len(set(words)) < 2:
        raise ValueError(f"cannot shuffle {sentence!r}: all words are the same")
    original = list(words)
    while words == original:
        rng.shuffle(words)
    words[0] = words[0][0].upper() + words[0][1:]
    return " ".join(w + m for w, m in zip(words, marks, strict=True))


# ------------------------------------------------------------------------------ the tasks
@functools.cache
def _documents(validation_percent: int) -> dict[str, tuple[str, ...]]:
    corpus = EmbeddedCorpus(EmbeddedCorpusConfig(validation_percent=validation_percent), None)
    return {split: corpus.documents(split) for split in SPLITS}


def _check_config(config: DemoTaskConfig, name: str) -> None:
    for key in ("num_train", "num_validation"):
        if getattr(config, key) < 0:
            raise ConfigError(f"{name}: {key}={getattr(config, key)} must be >= 0")
    if config.max_words < MIN_SENTENCE_WORDS:
        raise ConfigError(f"{name}: max_words={config.max_words} must be >= {MIN_SENTENCE_WORDS}")
    if not 1 <= config.validation_percent <= 99:
        raise ConfigError(
            f"{name}: validation_percent={config.validation_percent} must be in 1..99"
        )


class _DemoTask:
    """Shared machinery: candidate texts per split -> seeded shuffle -> cut -> examples."""

    name = ""
    supervised = True
    splits = SPLITS
    evaluators: tuple[str, ...] = ()

    def __init__(self, config: DemoTaskConfig, context: Any = None) -> None:
        _check_config(config, self.name)
        self.config = config
        self._cache: dict[str, tuple[dict[str, Any], ...]] = {}

    # subclasses: the candidate texts of one document, and the examples of chosen texts
    def _candidates(self, doc: str) -> Iterator[str]:
        raise NotImplementedError

    def _make(self, chosen: list[str], rng: random.Random) -> list[dict[str, Any]]:
        raise NotImplementedError

    @functools.cached_property
    def _pools(self) -> dict[str, list[str]]:
        """Unique candidates per split, in document order.

        A validation candidate whose text occurs anywhere in a training document (the same
        sentence can sit in two paragraphs) is dropped.
        """
        docs = _documents(self.config.validation_percent)
        pools = {
            split: list(dict.fromkeys(c for d in docs[split] for c in self._candidates(d)))
            for split in SPLITS
        }
        train_text = "\n".join(docs["train"])
        pools["validation"] = [c for c in pools["validation"] if c not in train_text]
        return pools

    def _build(self, split: str) -> tuple[dict[str, Any], ...]:
        if split not in SPLITS:
            raise DataError(f"{self.name} has no split {split!r}; splits: {list(SPLITS)}")
        if split not in self._cache:
            rng = random.Random(f"{self.name}/{split}/{self.config.seed}")
            pool = list(self._pools[split])
            rng.shuffle(pool)
            limit = self.config.num_train if split == "train" else self.config.num_validation
            chosen = pool[:limit]
            if not chosen and limit:
                raise DataError(f"{self.name}: no candidate examples for split {split!r}")
            self._cache[split] = tuple(self._make(chosen, rng))
        return self._cache[split]

    def examples(self, split: str) -> Iterator[dict[str, Any]]:
        for ex in self._build(split):
            yield dict(ex)

    def num_examples(self, split: str) -> int:
        return len(self._build(split))

    def postprocess(self, prediction: str, example: Mapping[str, Any]) -> Any:
        return prediction

    def reference(self, example: Mapping[str, Any]) -> Any:
        return example["targets"]


class Acceptability(_DemoTask):
    """``cola sentence: S`` -> ``acceptable`` (a real sentence) / ``unacceptable`` (shuffled).

    Exactly ``n // 2`` of a split's ``n`` sentences, chosen by the seeded generator, are
    word-shuffled. Examples carry ``label`` (1 acceptable, 0 unacceptable) and
    ``sentence`` (the original).
    """

    name = "demo_acceptability"
    evaluators = ("accuracy", "matthews_corr")

    def _candidates(self, doc: str) -> Iterator[str]:
        for s in split_sentences(doc):
            if is_plain_sentence(s, MIN_SENTENCE_WORDS, self.config.max_words):
                yield s

    def _make(self, chosen: list[str], rng: random.Random) -> list[dict[str, Any]]:
        n = len(chosen)
        shuffled = set(rng.sample(range(n), n // 2))
        out = []
        for i, text in enumerate(chosen):
            label = 0 if i in shuffled else 1
            sentence = shuffle_words(text, rng) if label == 0 else text
            out.append(
                {
                    "inputs": f"cola sentence: {sentence}",
                    "targets": ACCEPTABILITY_LABELS[label],
                    "label": label,
                    "sentence": text,
                }
            )
        return out

    def postprocess(self, prediction: str, example: Mapping[str, Any]) -> int:
        """T5's ``string_label_to_class_id``: exact label match -> class id, else -1."""
        return ACCEPTABILITY_LABELS.index(prediction) if prediction in ACCEPTABILITY_LABELS else -1

    def reference(self, example: Mapping[str, Any]) -> int:
        return int(example["label"])


class Summarize(_DemoTask):
    """``summarize: <2-4 sentences>`` -> the first (lead) sentence, like CNN/DM's lead.

    A document's sentences are grouped greedily, in order, into runs of up to four
    consecutive sentences (each capitalised, ending in . ! or ?, of at least three words)
    totalling at most ``max_paragraph_words`` words; runs of two or more become examples.
    """

    name = "demo_summarize"
    evaluators = ("rouge",)

    def _is_sentence(self, s: str) -> bool:
        words = s.split()
        return len(words) >= MIN_SENTENCE_WORDS // 2 and s[0].isupper() and s[-1] in ".!?"

    def _candidates(self, doc: str) -> Iterator[str]:
        run: list[str] = []
        limit = self.config.max_paragraph_words
        for s in split_sentences(doc) + [""]:
            fits = (
                s
                and self._is_sentence(s)
                and len(run) < MAX_PARAGRAPH_SENTENCES
                and len(" ".join(run + [s]).split()) <= limit
            )
            if fits:
                run.append(s)
                continue
            if len(run) >= MIN_PARAGRAPH_SENTENCES:
                yield " ".join(run)
            run = [s] if s and self._is_sentence(s) and len(s.split()) <= limit else []

    def _make(self, chosen: list[str], rng: random.Random) -> list[dict[str, Any]]:
        return [{"inputs": f"summarize: {t}", "targets": split_sentences(t)[0]} for t in chosen]


class PigLatin(_DemoTask):
    """``translate English to Pig Latin: <sentence>`` -> :func:`pig_latin` of it."""

    name = "demo_pig_latin"
    evaluators = ("bleu",)

    def _candidates(self, doc: str) -> Iterator[str]:
        for s in split_sentences(doc):
            if is_plain_sentence(s, MIN_SENTENCE_WORDS // 2, self.config.max_words):
                yield s

    def _make(self, chosen: list[str], rng: random.Random) -> list[dict[str, Any]]:
        prefix = "translate English to Pig Latin: "
        return [{"inputs": prefix + t, "targets": pig_latin(t)} for t in chosen]
