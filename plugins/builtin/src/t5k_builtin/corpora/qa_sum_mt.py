"""The paper's QA, summarization and translation tasks (P §2.3; facts §8.4).

* ``squad`` (:class:`Squad`): SQuAD v1.1 as T5's ``squad_v010_allanswers``. Question,
  context and every answer are spaced by :func:`pad_punctuation`; input
  ``question: Q context: C`` (joined with spaces, whitespace runs collapsed), target = the
  first answer; scored against *all* (spaced) answers with SQuAD EM/F1, as T5's ``qa``
  postprocessor does with the preprocessed example.
* ``cnn_dailymail`` (:class:`CnnDailymail`): ``summarize: <article>`` -> highlights
  (T5's ``summarize``), ROUGE.
* ``wmt_ende`` / ``wmt_enfr`` / ``wmt_enro`` (:class:`WmtEnDe`, ...):
  ``translate English to German: <en>`` -> the raw reference (T5's ``translate``), BLEU.

Sources, one per task: local files in their original formats (SQuAD JSON; ``.story``
files with URL lists, or JSON lines; plain-text parallel files) or the Hugging Face hub.
Every class separates *reading* a source from *formatting* an example
(``example_from_*``), and says what it would ask the hub for (``hub_arguments``), so both
can be checked without a network. Examples are deterministic per split (file order).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from t5kernel.errors import ConfigError, DataError

# ----------------------------------------------------------------------------- helpers
#: RE2's \s (TF regex_replace): ASCII whitespace only, without \v
_RE2_SPACE = re.compile(r"[\t\n\f\r ]+")
#: RE2's \W: every character outside [0-9A-Za-z_] (RE2 classes are ASCII-only), so the
#: paper-era code also spaces out non-ASCII letters ("Beyoncé" -> "Beyonc é")
_NONWORD = re.compile(r"([^0-9A-Za-z_])")
#: RE2's [[:punct:]]: the 32 ASCII punctuation characters (= string.punctuation)
_PUNCT = re.compile(r"""([!-/:-@\[-`{-~])""")
PAD_MODES = {"nonword": _NONWORD, "punct": _PUNCT}


@functools.lru_cache(maxsize=64)  # questions of one paragraph share its context
def pad_punctuation(text: str, mode: str = "nonword") -> str:
    """T5's ``_pad_punctuation``: a space on both sides of every matched character, then
    each whitespace run -> one space (leading/trailing spaces stay, as in T5).

    ``mode="nonword"`` is the paper-era pattern ``\\W``; ``"punct"`` is later T5's
    ``[[:punct:]]`` (facts §8.4). Both follow RE2's ASCII-only classes.
    """
    if mode not in PAD_MODES:
        raise ConfigError(f"pad_punctuation={mode!r}; allowed: {sorted(PAD_MODES)}")
    return _RE2_SPACE.sub(" ", PAD_MODES[mode].sub(r" \1 ", text))


def string_join(parts: list[str]) -> str:
    """T5's ``_string_join``: join on a space and collapse whitespace runs."""
    return _RE2_SPACE.sub(" ", " ".join(parts))


def _local_or_hub(config: Any, local: bool, name: str) -> None:
    if not local and not config.hub_path:
        raise ConfigError(f"{name}: no local files and no hub_path; set one of them")


def _hub_load(arguments: dict[str, Any], name: str) -> Any:
    """The hub split (``web.load_hub``: quiet, one-line errors)."""
    from t5k_builtin.corpora.web import load_hub

    return load_hub(arguments, name, "set the task's local file options to read local copies")


def _check_file(path: str | Path, what: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"{what}: file {str(path)!r} does not exist")
    return file


class _Task:
    """Shared Task surface: splits, per-split local reader or hub rows, counting."""

    name = ""
    benchmark = ""
    supervised = True
    evaluators: tuple[str, ...] = ()
    #: hub split names for our split names
    hub_splits: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Any, context: Any = None) -> None:
        self.config = config
        self._counts: dict[str, int] = {}
        self._hub_data: dict[str, Any] = {}

    # subclasses: local splits and readers, hub row -> example
    def _local_splits(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _local_examples(self, split: str) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def example_from_hub(self, row: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def uses_hub(self) -> bool:
        return not self._local_splits()

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.hub_splits) if self.uses_hub else self._local_splits()

    def hub_arguments(self, split: str) -> dict[str, Any]:
        """What ``datasets.load_dataset`` receives for ``split``."""
        self._check_split(split)
        c = self.config
        return {"path": c.hub_path, "name": c.hub_name, "revision": c.revision,
                "split": self.hub_splits[split], "streaming": c.streaming}

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise DataError(f"{self.name} has no split {split!r}; splits: {list(self.splits)}")

    def _hub(self, split: str) -> Any:
        if split not in self._hub_data:
            self._hub_data[split] = _hub_load(self.hub_arguments(split), self.name)
        return self._hub_data[split]

    def examples(self, split: str) -> Iterator[dict[str, Any]]:
        self._check_split(split)
        if self.uses_hub:
            for row in self._hub(split):
                yield self.example_from_hub(row)
        else:
            yield from self._local_examples(split)

    def num_examples(self, split: str) -> int | None:
        self._check_split(split)
        if self.uses_hub:
            return None if self.config.streaming else len(self._hub(split))
        if split not in self._counts:
            self._counts[split] = sum(1 for _ in self._local_examples(split))
        return self._counts[split]

    def postprocess(self, prediction: str, example: Mapping[str, Any]) -> Any:
        return prediction

    def reference(self, example: Mapping[str, Any]) -> Any:
        return example["targets"]


# ------------------------------------------------------------------------------ SQuAD
class Squad(_Task):
    """SQuAD v1.1, T5's ``squad_v010_allanswers`` (facts §8.4; T5 ``preprocessors.squad``).

    Each example carries the spaced ``question``, ``context`` and ``answers`` and the
    question ``id``. :meth:`reference` is the list of all spaced answers (what T5's ``qa``
    postprocessor takes from the preprocessed example); predictions are scored as decoded.
    """

    name = "squad"
    benchmark = "squad"
    evaluators = ("squad",)
    hub_splits: ClassVar[dict[str, str]] = {"train": "train", "validation": "validation"}

    def __init__(self, config: Any, context: Any = None) -> None:
        super().__init__(config, context)
        if config.pad_punctuation not in PAD_MODES:
            raise ConfigError(f"squad: pad_punctuation={config.pad_punctuation!r}; "
                              f"allowed: {sorted(PAD_MODES)}")
        _local_or_hub(config, bool(self._local_splits()), self.name)

    def _local_splits(self) -> tuple[str, ...]:
        c = self.config
        return tuple(s for s, f in (("train", c.train_file), ("validation", c.validation_file))
                     if f)

    def format(self, qid: str, question: str, context: str, answers: list[str]
               ) -> dict[str, Any]:
        """One question as T5's ``squad`` preprocessor makes it."""
        if not answers:
            raise DataError(f"squad: question {qid!r} has no answer (SQuAD v1.1 always has "
                            "one; unanswerable SQuAD 2.0 questions are not supported)")
        mode = self.config.pad_punctuation
        q, c = pad_punctuation(question, mode), pad_punctuation(context, mode)
        a = [pad_punctuation(x, mode) for x in answers]
        return {"inputs": string_join(["question:", q, "context:", c]), "targets": a[0],
                "id": qid, "question": q, "context": c, "answers": a}

    def example_from_hub(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A ``rajpurkar/squad`` row: id, title, context, question, answers{text, ...}."""
        return self.format(row["id"], row["question"], row["context"],
                           list(row["answers"]["text"]))

    def _local_examples(self, split: str) -> Iterator[dict[str, Any]]:
        path = self.config.train_file if split == "train" else self.config.validation_file
        file = _check_file(path, f"squad {split}")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))["data"]
            for article in data:
                for paragraph in article["paragraphs"]:
                    for qa in paragraph["qas"]:
                        yield self.format(qa["id"], qa["question"], paragraph["context"],
                                          [a["text"] for a in qa["answers"]])
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"squad: {str(file)!r} is not official SQuAD JSON "
                            f"(data/paragraphs/qas/answers): {type(err).__name__}: {err}"
                            ) from err

    def reference(self, example: Mapping[str, Any]) -> list[str]:
        return list(example["answers"])


# ----------------------------------------------------------------------- CNN/DailyMail
#: sentence endings after which TFDS adds no period (``END_TOKENS``)
END_TOKENS = (".", "!", "?", "...", "'", "`", '"', "\u2019", "\u201d", ")")
TFDS_VERSIONS = ("0.0.2", "1.0.0", "2.0.0", "3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0")
URL_LISTS = {"train": "all_train.txt", "validation": "all_val.txt", "test": "all_test.txt"}


def url_hash(url: str) -> str:
    """A story's file name stem: the SHA-1 hex digest of its URL (UTF-8)."""
    return hashlib.sha1(url.encode("utf-8")).hexdigest()


def read_story(text: str, tfds_version: str = "1.0.0") -> tuple[str, str]:
    """(article, highlights) of a ``.story`` file's text, as TFDS ``_get_art_abs`` at
    ``tfds_version`` made them.

    Lines are stripped; before 3.0.0 lowercased; a line not ending in one of
    :data:`END_TOKENS` (and not ``@highlight``) gets " ." (from 3.2.0 "."); the line after
    each ``@highlight`` is a highlight, other non-empty lines are the article (joined with
    spaces); highlights are joined with spaces before 2.0.0, with newlines from then on.
    """
    if tfds_version not in TFDS_VERSIONS:
        raise ConfigError(f"cnn_dailymail: tfds_version={tfds_version!r}; allowed: "
                          f"{list(TFDS_VERSIONS)}")
    lines = [line.strip() for line in text.split("\n")]
    if tfds_version < "3.0.0":
        lines = [line.lower() for line in lines]
    period = "." if tfds_version >= "3.2.0" else " ."
    lines = [line if "@highlight" in line or not line or line.endswith(END_TOKENS)
             else line + period for line in lines]
    article, highlights, next_is_highlight = [], [], False
    for line in lines:
        if not line:
            continue
        if line.startswith("@highlight"):
            next_is_highlight = True
        elif next_is_highlight:
            highlights.append(line)
        else:
            article.append(line)
    joiner = "\n" if tfds_version >= "2.0.0" else " "
    return " ".join(article), joiner.join(highlights)


class CnnDailymail(_Task):
    """CNN / Daily Mail, T5's ``cnn_dailymail_v002`` (facts §8.4; T5 ``summarize``).

    ``.story`` sources follow TFDS: a split is the stories whose URL hash is in its URL
    list, taken directory by directory (config order) in sorted file order; stories with
    an empty article or no highlight are skipped (TFDS does the same). :attr:`report`
    counts, per split, listed URLs without a story file and skipped stories.
    """

    name = "cnn_dailymail"
    benchmark = "cnn_dailymail"
    evaluators = ("rouge",)
    hub_splits: ClassVar[dict[str, str]] = {
        "train": "train", "validation": "validation", "test": "test"}

    def __init__(self, config: Any, context: Any = None) -> None:
        super().__init__(config, context)
        self.report: dict[str, dict[str, int]] = {}
        c = config
        files = c.train_files or c.validation_files or c.test_files
        if c.stories_dirs and files:
            raise ConfigError("cnn_dailymail: set stories_dirs or the *_files JSON lines, "
                              "not both")
        if c.stories_dirs and not c.url_lists_dir:
            raise ConfigError("cnn_dailymail: stories_dirs needs url_lists_dir (the folder "
                              "with all_train.txt / all_val.txt / all_test.txt)")
        if c.tfds_version not in TFDS_VERSIONS:
            raise ConfigError(f"cnn_dailymail: tfds_version={c.tfds_version!r}; allowed: "
                              f"{list(TFDS_VERSIONS)}")
        _local_or_hub(config, bool(self._local_splits()), self.name)

    @staticmethod
    def format(article: str, highlights: str, **extra: Any) -> dict[str, Any]:
        return {"inputs": f"summarize: {article}", "targets": highlights, **extra}

    def example_from_hub(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """An ``abisee/cnn_dailymail`` row: article, highlights, id."""
        return self.format(row["article"], row["highlights"], id=row.get("id", ""))

    def _local_splits(self) -> tuple[str, ...]:
        c = self.config
        if c.stories_dirs:
            folder = Path(c.url_lists_dir).expanduser()
            found = tuple(s for s, f in URL_LISTS.items() if (folder / f).is_file())
            if not found:
                raise DataError(f"cnn_dailymail: url_lists_dir {c.url_lists_dir!r} holds none "
                                f"of {list(URL_LISTS.values())}")
            return found
        files = {"train": c.train_files, "validation": c.validation_files,
                 "test": c.test_files}
        return tuple(s for s, f in files.items() if f)

    def _local_examples(self, split: str) -> Iterator[dict[str, Any]]:
        if self.config.stories_dirs:
            yield from self._stories(split)
        else:
            yield from self._jsonl(split)

    def _stories(self, split: str) -> Iterator[dict[str, Any]]:
        c = self.config
        url_file = Path(c.url_lists_dir).expanduser() / URL_LISTS[split]
        urls = [u.strip() for u in url_file.read_text(encoding="utf-8").split("\n")]
        wanted = {url_hash(u) for u in urls if u}
        found, skipped = 0, 0
        for directory in c.stories_dirs:
            folder = Path(directory).expanduser()
            if not folder.is_dir():
                raise DataError(f"cnn_dailymail: stories directory {directory!r} does not "
                                "exist")
            for path in sorted(folder.glob("*.story")):
                if path.stem not in wanted:
                    continue
                found += 1
                article, highlights = read_story(path.read_text(encoding="utf-8"),
                                                 c.tfds_version)
                if not article or not highlights:
                    skipped += 1
                    continue
                yield self.format(article, highlights, id=path.stem)
        self.report[split] = {"missing_stories": len(wanted) - found, "skipped": skipped}
        if not found:
            raise DataError(f"cnn_dailymail: no .story file of the {len(wanted)} URLs in "
                            f"{str(url_file)!r} is in {list(c.stories_dirs)}")

    def _jsonl(self, split: str) -> Iterator[dict[str, Any]]:
        c = self.config
        keys = (c.article_field, c.summary_field)
        files = {"train": c.train_files, "validation": c.validation_files,
                 "test": c.test_files}[split]
        for name in files:
            file = _check_file(name, f"cnn_dailymail {split}")
            with file.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                        article, summary = (row[k] for k in keys)
                    except (ValueError, KeyError, TypeError) as err:
                        raise DataError(f"cnn_dailymail: {str(file)!r} line {number}: need a "
                                        f"JSON object with {list(keys)} ({err})") from err
                    if not isinstance(article, str) or not isinstance(summary, str):
                        raise DataError(f"cnn_dailymail: {str(file)!r} line {number}: "
                                        f"{list(keys)} must be strings")
                    yield self.format(article, summary, id=str(row.get("id", "")))


# -------------------------------------------------------------------------------- WMT
#: English names of WMT languages, as babel's ``Locale(code).english_name`` gives them
#: (T5's ``translate`` preprocessor uses babel)
LANGUAGE_NAMES = {
    "cs": "Czech", "de": "German", "en": "English", "et": "Estonian", "fi": "Finnish",
    "fr": "French", "gu": "Gujarati", "hi": "Hindi", "kk": "Kazakh", "lt": "Lithuanian",
    "lv": "Latvian", "ro": "Romanian", "ru": "Russian", "tr": "Turkish", "zh": "Chinese",
}


def _read_lines(path: Path) -> list[str]:
    """A plain-text segment file: one segment per line (UTF-8, a BOM dropped, CR/LF
    endings removed, a final newline not counted as an extra empty segment)."""
    text = path.read_text(encoding="utf-8-sig")
    if text.endswith("\n"):
        text = text[:-1]
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


class Wmt(_Task):
    """A WMT pair as T5's ``translate`` preprocessor formats it (facts §8.4):
    ``translate <Source> to <Target>: <source text>`` -> the raw target text."""

    name = "wmt"
    evaluators = ("bleu",)
    hub_splits: ClassVar[dict[str, str]] = {
        "train": "train", "validation": "validation", "test": "test"}

    def __init__(self, config: Any, context: Any = None) -> None:
        super().__init__(config, context)
        for key in ("source_language", "target_language"):
            code = getattr(config, key)
            if code[:2] not in LANGUAGE_NAMES:
                raise ConfigError(f"{self.name}: {key}={code!r}; known: "
                                  f"{sorted(LANGUAGE_NAMES)}")
        if config.source_language == config.target_language:
            raise ConfigError(f"{self.name}: source and target language are both "
                              f"{config.source_language!r}")
        _local_or_hub(config, bool(self._local_splits()), self.name)

    @property
    def prefix(self) -> str:
        c = self.config
        return (f"translate {LANGUAGE_NAMES[c.source_language[:2]]} to "
                f"{LANGUAGE_NAMES[c.target_language[:2]]}: ")

    def format(self, source: str, target: str) -> dict[str, Any]:
        c = self.config
        return {"inputs": self.prefix + source, "targets": target,
                c.source_language: source, c.target_language: target}

    def vocabulary_texts(self) -> dict[str, Iterator[str]]:
        """The training split's non-English side(s), for a vocabulary trained on an
        English corpus to cover (P §3.1.3 mixes C4 10:1:1:1 with German, French and
        Romanian); nothing without a training split."""
        if "train" not in self.splits:
            return {}

        def side(lang: str) -> Iterator[str]:
            return (ex[lang] for ex in self.examples("train"))

        return {lang: side(lang)
                for lang in (self.config.source_language, self.config.target_language)
                if lang[:2] != "en"}

    def example_from_hub(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A ``wmt/wmt1x`` row: ``{"translation": {"de": ..., "en": ...}}``."""
        pair = row["translation"]
        return self.format(pair[self.config.source_language], pair[self.config.target_language])

    def _prefixes(self, split: str) -> list[str]:
        c = self.config
        return {"train": c.train_prefixes, "validation": c.validation_prefixes,
                "test": c.test_prefixes}[split]

    def _local_splits(self) -> tuple[str, ...]:
        return tuple(s for s in ("train", "validation", "test") if self._prefixes(s))

    def _local_examples(self, split: str) -> Iterator[dict[str, Any]]:
        c = self.config
        for prefix in self._prefixes(split):
            src_file = _check_file(f"{prefix}.{c.source_language}", f"{self.name} {split}")
            tgt_file = _check_file(f"{prefix}.{c.target_language}", f"{self.name} {split}")
            sources, targets = _read_lines(src_file), _read_lines(tgt_file)
            if len(sources) != len(targets):
                raise DataError(f"{self.name}: {str(src_file)!r} has {len(sources)} lines but "
                                f"{str(tgt_file)!r} has {len(targets)}; parallel files must "
                                "align line by line")
            for source, target in zip(sources, targets, strict=True):
                yield self.format(source, target)


class WmtEnDe(Wmt):
    """English-German, T5's ``wmt_t2t_ende_v003`` (EnDe column)."""

    name = "wmt_ende"
    benchmark = "wmt_ende"


class WmtEnFr(Wmt):
    """English-French, T5's ``wmt15_enfr_v003`` (EnFr column)."""

    name = "wmt_enfr"
    benchmark = "wmt_enfr"


class WmtEnRo(Wmt):
    """English-Romanian, T5's ``wmt16_enro_v003`` (EnRo column)."""

    name = "wmt_enro"
    benchmark = "wmt_enro"
