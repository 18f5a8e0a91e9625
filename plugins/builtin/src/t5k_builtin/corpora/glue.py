"""GLUE and SuperGLUE as text-to-text tasks, exactly as the T5 code casts them (facts §8.1-8.3).

One class per plugin (``glue_cola`` ... ``super_glue_wsc``). Each reads one source:

* local files in the ORIGINAL distribution formats when any ``*_file`` of its config is
  set (then every split that is read needs its own file): GLUE's TSVs, parsed as TFDS
  ``glue`` 1.0.0 parses them (``csv`` with tab delimiter and no quoting, ``idx`` = row
  number, rows with a missing field dropped, CoLA train/dev without header and MRPC's
  UTF-8 BOM handled), SuperGLUE's JSON lines as TFDS ``super_glue`` 1.0.2 turns them into
  records (MultiRC: one record per answer; ReCoRD: one per query with the sorted unique
  entity strings and answers; WSC: the ``wsc.fixed`` span repairs);
* else the Hugging Face hub, ``datasets.load_dataset(**task.hub_arguments(split))``
  (GLUE ``nyu-mll/glue``, SuperGLUE ``aps/super_glue``, config = the task), whose rows
  :meth:`_Task.from_hub` maps to the same records.

Records are then formatted by the T5 preprocessors (facts §8.1): the generic
``"<task> <f1>: <v1> <f2>: <v2> ..."`` with the features in sorted order unless the task
lists them (MultiRC, WiC), target = the label's class name, ``<unk>`` for label -1; STS-B's
score rounded to the 0.2 grid; MultiRC without ``<br>``/``<b>`` markup; ReCoRD with its
entities and ``@highlight`` rewriting; WSC in the "simple" referent format.

Scoring follows T5's postprocessors (``t5/data/postprocessors.py``) and metrics (facts
§8.5): the reference is the postprocessed *target string* (seqio scores
``postprocess_fn(targets_pretokenized, is_target=True)``), so STS-B is scored against the
rounded score, not the raw one.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from t5k_builtin.configs import GlueTaskConfig, MnliTaskConfig, SuperGlueTaskConfig
from t5kernel.errors import ConfigError, DataError

SPLITS = ("train", "validation")
BOOL_LABELS = ("False", "True")
UNK = "<unk>"

#: T5's ``wsc_simple`` postprocessor ignores these words (facts §8.3).
WSC_DETERMINERS = frozenset(
    "a an few her his each every many much my our some that the their these this those "
    "which whose your".split()
)

#: Two WSC texts whose ``span2_index`` does not point at the pronoun; T5's ``_wsc_inputs``
#: gives their masked text literally (the pronoun replaced by ``X``).
WSC_SPECIAL_CASES = {
    "The boy continued to whip the pony , and eventually the pony threw him over. John "
    'laughed out quite loud. "Good for him," he said. ':
    "The boy continued to whip the pony , and eventually the pony threw him over. John "
    'laughed out quite loud. "Good for X ," he said.',
    "When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the "
    "magic pebble in an iron safe . Some day they might want to use it , but really for "
    "now, what more could they wish for?":
    "When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the "
    "magic pebble in an iron safe . Some day they might want to use X , but really for "
    "now, what more could they wish for?",
}
#: WSC spans TFDS's ``wsc.fixed`` leaves alone: words in between make them non-substrings.
_WSC_UNFIXABLE = ("Kamenev and Zinoviev", "Kamenev, Zinoviev, and Stalin")

_HIGHLIGHT_AFTER_PUNCT = re.compile(r"([.?!\"'])\n@highlight\n")
_MULTIRC_BOLD = re.compile(r"<(/)?b>")


# ------------------------------------------------------------------------ formatting rules
def label_id(prediction: str, labels: tuple[str, ...]) -> int:
    """T5's ``string_label_to_class_id``: exact match -> class index, anything else -1."""
    return labels.index(prediction) if prediction in labels else -1


def string_to_float(prediction: str) -> float:
    """T5's ``string_to_float``: ``float(prediction)``, or -1.0 when that fails."""
    try:
        return float(prediction)
    except ValueError:
        return -1.0


def stsb_target(score: float) -> str:
    """STS-B target: ``tf.round(label * 5) / 5`` in float32 (half to even), one decimal.

    2.57 -> "2.6", 3.25 -> "3.2" (16.25 rounds to 16), 5.0 -> "5.0"; a test label -1
    gives "-1.0" (T5's ``stsb`` preprocessor has no ``<unk>`` case).
    """
    x = np.float32(score)
    return f"{float(np.round(x * np.float32(5)) / np.float32(5)):.1f}"


def glue_inputs(prefix: str, record: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """``"<prefix> k1: v1 k2: v2 ..."`` joined by single spaces (T5 ``glue``)."""
    parts = [prefix]
    for key in keys:
        parts += [f"{key}:", record[key]]
    return " ".join(parts)


def multirc_clean(text: str) -> str:
    """MultiRC: every ``<br>`` becomes a space, ``<b>``/``</b>`` vanish (whole input)."""
    return _MULTIRC_BOLD.sub("", text.replace("<br>", " "))


def record_passage(passage: str) -> str:
    """ReCoRD: ``\\n@highlight\\n`` -> ``" "`` after . ? ! " ', else -> ``". "``."""
    return _HIGHLIGHT_AFTER_PUNCT.sub(r"\1 ", passage).replace("\n@highlight\n", ". ")


def record_inputs(record: Mapping[str, Any]) -> str:
    """``record query: Q entities: e1, e2, ... passage: P`` (facts §8.3)."""
    return " ".join(["record query:", record["query"], "entities:",
                     ", ".join(record["entities"]), "passage:",
                     record_passage(record["passage"])])


def fix_wsc_spans(record: dict[str, Any]) -> dict[str, Any]:
    """TFDS ``wsc.fixed``: repair span texts that are not substrings of the text.

    The first letter takes the case of the text's word at the span index, a trailing "."
    and newlines go. The "theyscold" example only gets ``span2_index = 10`` (TFDS meant
    to fix its text too but discards the result). Idempotent, so hub rows (already fixed)
    may pass through again.
    """
    for key in ("span1", "span2"):
        span, index = record[f"{key}_text"], record[f"{key}_index"]
        if span in record["text"] or span in _WSC_UNFIXABLE:
            continue
        if "theyscold" in span:
            record["span2_index"] = 10
        words = record["text"].split()
        if not 0 <= index < len(words) or not span:
            raise DataError(f"WSC idx {record['idx']}: {key}_index {index} is outside the text")
        head = span[0].lower() if words[index][0].islower() else span[0].upper()
        span = (head + span[1:]).rstrip(".").replace("\n", " ")
        if span not in record["text"]:
            raise DataError(f"WSC idx {record['idx']}: {key}_text {span!r} is not in the text")
        record[f"{key}_text"] = span
    return record


def wsc_simple_inputs(record: Mapping[str, Any]) -> str:
    """``wsc: <text with the pronoun at span2_index wrapped as *pronoun*>`` (T5 ``wsc_simple``).

    The pronoun is replaced by ``X`` (pieces joined by single spaces, so a final pronoun
    leaves ``"... X "``), then every ``" X "`` becomes ``" *<span2_text>* "``.
    """
    text = record["text"]
    masked = WSC_SPECIAL_CASES.get(text)
    if masked is None:
        words = text.split(" ")
        i = record["span2_index"]
        if not 0 <= i < len(words) or words[i] != record["span2_text"]:
            raise DataError(
                f"WSC idx {record['idx']}: word {i} of the text is not the pronoun "
                f"{record['span2_text']!r}")
        masked = " ".join([" ".join(words[:i]), "X", " ".join(words[i + 1:])])
    pronoun = f" *{record['span2_text']}* "
    return "wsc: " + re.sub(" X ", lambda _: pronoun, masked)


def wsc_simple_prediction(prediction: str, referent: str) -> int:
    """T5's ``wsc_simple`` postprocessor: 1 if the prediction names the referent, else 0.

    Both are lowercased, stripped and freed of determiners; an empty prediction is -1;
    exactly one of them containing an apostrophe is 0 ("Bob" vs "Bob's hat"); otherwise 1
    iff one word set contains the other ("fuzzy bunny" vs "bunny").
    """
    def clean(s: str) -> str:
        return " ".join(w for w in s.strip().lower().split(" ") if w not in WSC_DETERMINERS)

    pred, ref = clean(prediction), clean(referent)
    if not pred:
        return -1
    if ("'" in pred) != ("'" in ref):
        return 0
    pred_words, ref_words = set(pred.split(" ")), set(ref.split(" "))
    return int(pred_words <= ref_words or ref_words <= pred_words)


# ---------------------------------------------------------------------------- the tasks
class _Task:
    """A GLUE/SuperGLUE task: records from local files or the hub -> T5 text-to-text.

    Subclasses set the class attributes and, where T5 differs from the generic ``glue``
    preprocessor, override :meth:`to_examples`, :meth:`postprocess` or :meth:`reference`.
    """

    name = ""
    benchmark = ""
    #: the word that starts every input (T5's ``benchmark_name``)
    prefix = ""
    #: TFDS/HF config of the task
    hub_config = ""
    #: class names by label id; () for STS-B and ReCoRD
    labels: tuple[str, ...] = ()
    #: the text features of the TFDS/HF record (inputs use them in sorted order ...)
    features: tuple[str, ...] = ()
    #: ... unless the task gives its own order
    feature_order: tuple[str, ...] | None = None
    evaluators: tuple[str, ...] = ("accuracy",)
    supervised = True
    splits = SPLITS
    #: our split -> the hub's split name, where they differ
    hub_splits: dict[str, str] = {}
    #: our split -> the config field holding its local file
    split_files = {"train": "train_file", "validation": "validation_file"}

    def __init__(self, config: GlueTaskConfig, context: Any = None) -> None:
        self.config = config
        # (each file is checked when its split is read, so that `t5k eval` of a finished
        # run does not need the training file, and a run checks every split it will read
        # before training: Runner._check_task_data)
        self.files = {split: getattr(config, key) for split, key in self.split_files.items()}
        if not self.local and not config.hub_path:
            raise ConfigError(
                f"{self.name}: no source: set hub_path or a local file "
                f"({', '.join(self.split_files.values())})")
        self._counts: dict[str, int] = {}

    # -- sources ------------------------------------------------------------------------
    @property
    def local(self) -> bool:
        """Local files are read when any is configured; else the hub."""
        return any(path is not None for path in self.files.values())

    def hub_arguments(self, split: str) -> dict[str, Any]:
        """What ``datasets.load_dataset`` receives for ``split`` (no streaming: small)."""
        c = self.config
        return {"path": c.hub_path, "name": c.hub_name or self.hub_config,
                "revision": c.revision, "split": self.hub_splits.get(split, split)}

    def records(self, split: str) -> Iterator[dict[str, Any]]:
        """The split's records (TFDS/HF schema: features, ``label`` id, ``idx``)."""
        self._check_split(split)
        if not self.local:
            for row in self._hub_rows(split):
                yield self.from_hub(row)
            return
        path = self.files[split]
        if path is None:
            raise DataError(
                f"{self.name}: no local file for split {split!r}: set "
                f"{self.split_files[split]} (local files are read because "
                f"{', '.join(k for s, k in self.split_files.items() if self.files[s])} is set)")
        if not Path(path).expanduser().is_file():
            raise DataError(f"{self.name}: {self.split_files[split]} {path!r} does not exist "
                            "or is not a file")
        try:
            yield from self.read_local(Path(path).expanduser())
        except UnicodeDecodeError as err:
            raise DataError(f"{self.name}: {path} is not UTF-8 text ({err.reason})") from err

    def _hub_rows(self, split: str) -> Iterator[Mapping[str, Any]]:
        from t5k_builtin.corpora.web import load_hub

        yield from load_hub(self.hub_arguments(split), self.name,
                            "set train_file/validation_file to read local copies")

    def read_local(self, path: Path) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def from_hub(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """An HF row -> record: the features, the integer ``label`` (-1 = test), ``idx``."""
        record = {f: row[f] for f in self.features}
        record["label"] = int(row["label"])
        record["idx"] = row["idx"]
        return record

    # -- Task protocol --------------------------------------------------------------------
    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise DataError(f"{self.name} has no split {split!r}; splits: {list(self.splits)}")

    def examples(self, split: str) -> Iterator[dict[str, Any]]:
        for record in self.records(split):
            yield from self.to_examples(record, split)

    def num_examples(self, split: str) -> int:
        if split not in self._counts:
            self._counts[split] = sum(1 for _ in self.examples(split))
        return self._counts[split]

    def target(self, label: int) -> str:
        return UNK if label == -1 else self.labels[label]

    def to_examples(self, record: Mapping[str, Any], split: str) -> Iterator[dict[str, Any]]:
        """T5's generic ``glue`` preprocessor: one example per record."""
        keys = self.feature_order or tuple(sorted(self.features))
        yield {"inputs": glue_inputs(self.prefix, record, keys),
               "targets": self.target(record["label"]),
               "label": record["label"], "idx": record["idx"]}

    def postprocess(self, prediction: str, example: Mapping[str, Any]) -> Any:
        return label_id(prediction, self.labels)

    def reference(self, example: Mapping[str, Any]) -> Any:
        """The target string through the postprocessor, as seqio scores targets."""
        return label_id(example["targets"], self.labels)


# ------------------------------------------------------------------------------- GLUE
class _GlueTask(_Task):
    """A GLUE task read from GLUE's TSV files as TFDS ``glue`` 1.0.0 reads them."""

    benchmark = "glue"
    #: feature -> TSV column
    columns: dict[str, str] = {}
    label_column = "label"

    def __init__(self, config: GlueTaskConfig | None = None, context: Any = None) -> None:
        super().__init__(config if config is not None else GlueTaskConfig(), context)

    def _rows(self, path: Path) -> Iterator[Mapping[str, str | None]]:
        """Header-keyed rows (``utf-8-sig`` drops MRPC's BOM; no quoting: MRPC has lone
        ``"``)."""
        with path.open(encoding="utf-8-sig", newline="") as f:
            yield from csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)

    def read_local(self, path: Path) -> Iterator[dict[str, Any]]:
        for n, row in enumerate(self._rows(path)):
            record: dict[str, Any] = {f: row.get(col) for f, col in self.columns.items()}
            record["idx"] = n
            record["label"] = self._label(row[self.label_column], path, n) \
                if self.label_column in row else -1
            if all(v is not None for v in record.values()):  # TFDS drops corrupted rows
                yield record

    def _label(self, value: str | None, path: Path, n: int) -> int | float | None:
        """Class name or integer id (``""`` -> None: a corrupted row, dropped)."""
        if value in self.labels:
            return self.labels.index(value)
        if not value:
            return None
        try:
            label = int(value)
        except ValueError:
            label = None
        if label is None or not -1 <= label < len(self.labels):
            raise DataError(f"{self.name}: {path} row {n}: label {value!r} is not one of "
                            f"{list(self.labels)} or a class id")
        return label


class GlueCola(_GlueTask):
    """CoLA: ``cola sentence: S`` -> unacceptable / acceptable; Matthews corr (facts §8.2)."""

    name, prefix, hub_config = "glue_cola", "cola", "cola"
    labels = ("unacceptable", "acceptable")
    features = ("sentence",)
    evaluators = ("matthews_corr",)

    def read_local(self, path: Path) -> Iterator[dict[str, Any]]:
        """CoLA's train/dev TSVs have no header: source, label, original mark, sentence.
        A file starting ``index<TAB>sentence`` is GLUE's unlabeled test layout."""
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            first = next(rows, None)
            if first == ["index", "sentence"]:
                for n, row in enumerate(rows):
                    if len(row) >= 2:
                        yield {"sentence": row[1], "label": -1, "idx": n}
                return
            for n, row in enumerate(rows if first is None else _chain(first, rows)):
                if not row:  # a blank line
                    continue
                if len(row) < 4:
                    raise DataError(f"{self.name}: {path} row {n} has {len(row)} columns; "
                                    "CoLA rows have 4 (source, label, mark, sentence)")
                label = self._label(row[1], path, n)
                if label is not None:
                    yield {"sentence": row[3], "label": label, "idx": n}


def _chain(first: list[str], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield first
    yield from rest


class GlueSst2(_GlueTask):
    """SST-2: ``sst2 sentence: S`` -> negative / positive; accuracy."""

    name, prefix, hub_config = "glue_sst2", "sst2", "sst2"
    labels = ("negative", "positive")
    features = ("sentence",)
    columns = {"sentence": "sentence"}


class GlueMrpc(_GlueTask):
    """MRPC: ``mrpc sentence1: A sentence2: B`` -> not_equivalent / equivalent; F1 + acc.

    Reads GLUE's ``train.tsv``/``dev.tsv`` or SentEval's ``msr_paraphrase_*.txt`` (same
    columns: Quality, #1 ID, #2 ID, #1 String, #2 String; BOM allowed).
    """

    name, prefix, hub_config = "glue_mrpc", "mrpc", "mrpc"
    labels = ("not_equivalent", "equivalent")
    features = ("sentence1", "sentence2")
    columns = {"sentence1": "#1 String", "sentence2": "#2 String"}
    label_column = "Quality"
    evaluators = ("f1_invalid", "accuracy")


class GlueQqp(_GlueTask):
    """QQP: ``qqp question1: A question2: B`` -> not_duplicate / duplicate; F1 + acc."""

    name, prefix, hub_config = "glue_qqp", "qqp", "qqp"
    labels = ("not_duplicate", "duplicate")
    features = ("question1", "question2")
    columns = {"question1": "question1", "question2": "question2"}
    label_column = "is_duplicate"
    evaluators = ("f1_invalid", "accuracy")


class GlueStsb(_GlueTask):
    """STS-B: ``stsb sentence1: A sentence2: B`` -> score on the 0.2 grid; Pearson/Spearman.

    Predictions are ``float(prediction)`` (-1.0 when unparseable); references are the
    target strings as floats (the rounded score).
    """

    name, prefix, hub_config = "glue_stsb", "stsb", "stsb"
    features = ("sentence1", "sentence2")
    columns = {"sentence1": "sentence1", "sentence2": "sentence2"}
    label_column = "score"
    evaluators = ("pearson_spearman",)

    def _label(self, value: str | None, path: Path, n: int) -> float | None:
        if not value:
            return None
        try:
            return float(np.float32(value))
        except ValueError as err:
            raise DataError(f"{self.name}: {path} row {n}: score {value!r} is not a number") \
                from err

    def from_hub(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {"sentence1": row["sentence1"], "sentence2": row["sentence2"],
                "label": float(row["label"]), "idx": row["idx"]}

    def to_examples(self, record: Mapping[str, Any], split: str) -> Iterator[dict[str, Any]]:
        yield {"inputs": glue_inputs("stsb", record, ("sentence1", "sentence2")),
               "targets": stsb_target(record["label"]),
               "label": record["label"], "idx": record["idx"]}

    def postprocess(self, prediction: str, example: Mapping[str, Any]) -> float:
        return string_to_float(prediction)

    def reference(self, example: Mapping[str, Any]) -> float:
        return string_to_float(example["targets"])


class GlueMnli(_GlueTask):
    """MNLI: ``mnli hypothesis: H premise: P`` (sorted names: hypothesis first) ->
    entailment / neutral / contradiction; accuracy on matched and mismatched validation.

    ``validation`` = dev_matched, ``validation_mismatched`` = dev_mismatched;
    :attr:`eval_splits` names both results.
    """

    name, prefix, hub_config = "glue_mnli", "mnli", "mnli"
    labels = ("entailment", "neutral", "contradiction")
    features = ("premise", "hypothesis")
    columns = {"premise": "sentence1", "hypothesis": "sentence2"}
    label_column = "gold_label"
    splits = ("train", "validation", "validation_mismatched")
    hub_splits = {"validation": "validation_matched"}
    split_files = {"train": "train_file", "validation": "validation_file",
                   "validation_mismatched": "validation_mismatched_file"}
    eval_splits = {"glue_mnli_matched": "validation",
                   "glue_mnli_mismatched": "validation_mismatched"}

    def __init__(self, config: MnliTaskConfig | None = None, context: Any = None) -> None:
        super().__init__(config if config is not None else MnliTaskConfig(), context)


class GlueQnli(_GlueTask):
    """QNLI: ``qnli question: Q sentence: S`` -> entailment / not_entailment; accuracy."""

    name, prefix, hub_config = "glue_qnli", "qnli", "qnli"
    labels = ("entailment", "not_entailment")
    features = ("question", "sentence")
    columns = {"question": "question", "sentence": "sentence"}


class GlueRte(_GlueTask):
    """GLUE RTE: ``rte sentence1: A sentence2: B`` -> entailment / not_entailment."""

    name, prefix, hub_config = "glue_rte", "rte", "rte"
    labels = ("entailment", "not_entailment")
    features = ("sentence1", "sentence2")
    columns = {"sentence1": "sentence1", "sentence2": "sentence2"}


class GlueWnli(_GlueTask):
    """WNLI: ``wnli sentence1: A sentence2: B`` -> not_entailment / entailment; accuracy.

    The paper neither trains on it nor reports it on validation (facts §8.2); kept for
    completeness in the generic GLUE format.
    """

    name, prefix, hub_config = "glue_wnli", "wnli", "wnli"
    labels = ("not_entailment", "entailment")
    features = ("sentence1", "sentence2")
    columns = {"sentence1": "sentence1", "sentence2": "sentence2"}


# -------------------------------------------------------------------------- SuperGLUE
class _SuperGlueTask(_Task):
    """A SuperGLUE task read from the official JSON lines as TFDS ``super_glue`` 1.0.2."""

    benchmark = "super_glue"
    labels = BOOL_LABELS

    def __init__(self, config: SuperGlueTaskConfig | None = None, context: Any = None) -> None:
        super().__init__(config if config is not None else SuperGlueTaskConfig(), context)

    def read_local(self, path: Path) -> Iterator[dict[str, Any]]:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{self.name}: {path} line {number} is not JSON: "
                                    f"{err.msg}") from err
                try:
                    yield from self.from_json(row)
                except (KeyError, TypeError) as err:
                    raise DataError(f"{self.name}: {path} line {number} lacks field "
                                    f"{err}") from err

    def from_json(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """An official JSON line -> record(s): the features, label id, ``idx``."""
        record = {f: row[f] for f in self.features}
        record["idx"] = row["idx"]
        record["label"] = self.parse_label(row.get("label"))
        yield record

    def parse_label(self, value: Any) -> int:
        """A JSON label -> class id: a class name, a bool or 0/1 for False/True, "true" /
        "false" in any case (some copies store them as strings); missing -> -1 (test)."""
        if value is None:
            return -1
        if isinstance(value, str):
            if value in self.labels:
                return self.labels.index(value)
            if self.labels == BOOL_LABELS and value.lower() in ("false", "true"):
                return int(value.lower() == "true")
        elif isinstance(value, (bool, int)) and value in (0, 1):
            return int(value)
        raise DataError(f"{self.name}: label {value!r} is not one of {list(self.labels)}")


class SuperGlueBoolq(_SuperGlueTask):
    """BoolQ: ``boolq passage: P question: Q`` -> False / True; accuracy."""

    name, prefix, hub_config = "super_glue_boolq", "boolq", "boolq"
    features = ("question", "passage")


class SuperGlueCb(_SuperGlueTask):
    """CB: ``cb hypothesis: H premise: P`` -> entailment / contradiction / neutral;
    macro-F1 over the 3 classes and accuracy."""

    name, prefix, hub_config = "super_glue_cb", "cb", "cb"
    labels = ("entailment", "contradiction", "neutral")
    features = ("premise", "hypothesis")
    evaluators = ("mean_3class_f1", "accuracy")


class SuperGlueCopa(_SuperGlueTask):
    """COPA: ``copa choice1: A choice2: B premise: P question: cause|effect`` -> choice1 /
    choice2 (the JSON label 0/1 picks the choice); accuracy."""

    name, prefix, hub_config = "super_glue_copa", "copa", "copa"
    labels = ("choice1", "choice2")
    features = ("premise", "choice1", "choice2", "question")


class SuperGlueRte(_SuperGlueTask):
    """SuperGLUE RTE: ``rte hypothesis: H premise: P`` -> entailment / not_entailment."""

    name, prefix, hub_config = "super_glue_rte", "rte", "rte"
    labels = ("entailment", "not_entailment")
    features = ("premise", "hypothesis")


class SuperGlueWic(_SuperGlueTask):
    """WiC: ``wic sentence1: A sentence2: B word: W`` (no indices) -> False / True."""

    name, prefix, hub_config = "super_glue_wic", "wic", "wic"
    features = ("word", "sentence1", "sentence2")
    feature_order = ("sentence1", "sentence2", "word")


class SuperGlueMultirc(_SuperGlueTask):
    """MultiRC: ``multirc question: Q answer: A paragraph: P`` per answer, markup removed,
    -> False / True; F1 over all answers and per-question exact match.

    Postprocessed predictions and references are ``{"group": question idx, "value": id}``
    (question ids are unique across the file, as T5 groups by them alone).
    """

    name, prefix, hub_config = "super_glue_multirc", "multirc", "multirc"
    features = ("paragraph", "question", "answer")
    feature_order = ("question", "answer", "paragraph")
    evaluators = ("multirc",)

    def from_json(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        passage = row["passage"]
        for question in passage["questions"]:
            for answer in question["answers"]:
                label = answer.get("label")  # 0/1 (TFDS casts it through bool)
                yield {"paragraph": passage["text"], "question": question["question"],
                       "answer": answer["text"],
                       "label": self.parse_label(label),
                       "idx": {"paragraph": row["idx"], "question": question["idx"],
                               "answer": answer["idx"]}}

    def from_hub(self, row: Mapping[str, Any]) -> dict[str, Any]:
        record = super().from_hub(row)
        record["idx"] = {k: int(row["idx"][k]) for k in ("paragraph", "question", "answer")}
        return record

    def to_examples(self, record: Mapping[str, Any], split: str) -> Iterator[dict[str, Any]]:
        for ex in super().to_examples(record, split):
            ex["inputs"] = multirc_clean(ex["inputs"])
            ex["group"] = record["idx"]["question"]
            yield ex

    def postprocess(self, prediction: str, example: Mapping[str, Any]) -> dict[str, int]:
        return {"group": example["group"], "value": label_id(prediction, self.labels)}

    def reference(self, example: Mapping[str, Any]) -> dict[str, int]:
        return {"group": example["group"], "value": label_id(example["targets"], self.labels)}


class SuperGlueRecord(_SuperGlueTask):
    """ReCoRD: ``record query: Q entities: e1, ... passage: P`` -> an answer entity.

    Training yields one example per gold answer (same inputs; ``<unk>`` when a query has
    none); validation one example per query (targets = the first sorted answer), which
    is what T5's ``deduplicate_metric`` scores. SQuAD EM/F1, max over the gold answers.
    """

    name, prefix, hub_config = "super_glue_record", "record", "record"
    labels = ()
    evaluators = ("squad",)

    def from_json(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        passage = row["passage"]
        text = passage["text"]
        entities = sorted({text[e["start"]:e["end"] + 1] for e in passage["entities"]})
        for qa in row["qas"]:
            yield {"passage": text, "query": qa["query"], "entities": entities,
                   "answers": sorted({a["text"] for a in qa.get("answers", [])}),
                   "idx": {"passage": row["idx"], "query": qa["idx"]}}

    def from_hub(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {"passage": row["passage"], "query": row["query"],
                "entities": sorted(set(row["entities"])),
                "answers": sorted(set(row["answers"])),
                "idx": {"passage": int(row["idx"]["passage"]),
                        "query": int(row["idx"]["query"])}}

    def to_examples(self, record: Mapping[str, Any], split: str) -> Iterator[dict[str, Any]]:
        inputs = record_inputs(record)
        answers = list(record["answers"])
        targets = answers if split == "train" else answers[:1]
        for target in targets or [UNK]:
            yield {"inputs": inputs, "targets": target, "answers": answers,
                   "idx": dict(record["idx"])}

    def postprocess(self, prediction: str, example: Mapping[str, Any]) -> str:
        return prediction

    def reference(self, example: Mapping[str, Any]) -> list[str]:
        return list(example["answers"])


class SuperGlueWsc(_SuperGlueTask):
    """WSC in T5's "simple" format (``super_glue_wsc_v102_simple_*``, facts §8.3).

    ``wsc: <text with *pronoun*>`` -> the candidate referent (span1). Training keeps only
    label-True examples (the referent is right); validation keeps all, and a prediction
    scores by whether it names the candidate (:func:`wsc_simple_prediction`) against the
    gold True/False label.
    """

    name, prefix, hub_config = "super_glue_wsc", "wsc", "wsc.fixed"
    features = ("text", "span1_index", "span2_index", "span1_text", "span2_text")

    def from_json(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        merged = {**row, **row["target"]}
        for record in super().from_json(merged):
            yield fix_wsc_spans(record)

    def from_hub(self, row: Mapping[str, Any]) -> dict[str, Any]:
        record = super().from_hub(row)
        for key in ("span1_index", "span2_index"):
            record[key] = int(record[key])
        return fix_wsc_spans(record)

    def to_examples(self, record: Mapping[str, Any], split: str) -> Iterator[dict[str, Any]]:
        if split == "train" and record["label"] != 1:
            return
        yield {"inputs": wsc_simple_inputs(record), "targets": record["span1_text"],
               "label": record["label"], "idx": record["idx"]}

    def postprocess(self, prediction: str, example: Mapping[str, Any]) -> int:
        return wsc_simple_prediction(prediction, example["targets"])

    def reference(self, example: Mapping[str, Any]) -> int:
        return int(example["label"])


#: plugin name -> class, in the paper's table order.
TASKS: dict[str, type[_Task]] = {
    cls.name: cls
    for cls in (GlueCola, GlueSst2, GlueMrpc, GlueQqp, GlueStsb, GlueMnli, GlueQnli,
                GlueRte, GlueWnli, SuperGlueBoolq, SuperGlueCb, SuperGlueCopa,
                SuperGlueMultirc, SuperGlueRecord, SuperGlueRte, SuperGlueWic, SuperGlueWsc)
}
