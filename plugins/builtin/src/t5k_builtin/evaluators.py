"""T5's metrics, computed with the libraries T5 used (facts §8.5; T5:t5/evaluation/metrics.py).

Each evaluator is built as ``Cls(config, context)`` and called as
``evaluator(predictions, references) -> {metric: value}`` with values ×100 (the paper's
scale).  Keys follow T5: ``accuracy``, ``matthews_corrcoef``, the ROUGE types
(``rouge1``, ``rouge2``, ``rougeLsum``), ``bleu``, ``f1`` (invalid predictions counted
wrong), ``pearson_corrcoef`` / ``spearman_corrcoef``, ``mean_3class_f1``, MultiRC's
``f1a`` / ``exact_match`` and SQuAD's ``em`` / ``f1``.
"""

from __future__ import annotations

import collections
import re
import string
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sacrebleu
import scipy.stats
import sklearn.metrics
from rouge_score import rouge_scorer, scoring

from t5kernel.errors import ConfigError, DataError

#: the ROUGE types rouge-score can compute
_ROUGE_TYPE = re.compile(r"^rouge([1-9][0-9]*|L|Lsum)$")
#: what the official SQuAD normalisation deletes, and the articles it drops
_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _check_pair(name: str, predictions: Sequence[Any], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise DataError(
            f"{name}: {len(predictions)} predictions but {len(references)} references; "
            "they must pair up one to one"
        )
    if len(predictions) == 0:
        raise DataError(f"{name}: nothing to score (no predictions and no references)")


def _check_strings(name: str, what: str, values: Sequence[Any]) -> None:
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise DataError(f"{name}: {what}[{i}] is {type(value).__name__}, expected str")


def _sklearn(name: str, fn: Any, references: Sequence[Any], predictions: Sequence[Any]) -> float:
    try:
        return float(fn(list(references), list(predictions)))
    except ValueError as error:  # e.g. a mix of string and integer labels
        raise DataError(f"{name}: cannot compare these labels: {error}") from error


class Accuracy:
    """``100 * sklearn.metrics.accuracy_score(references, predictions)``."""

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.config = config

    def __call__(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        _check_pair("accuracy", predictions, references)
        value = _sklearn("accuracy", sklearn.metrics.accuracy_score, references, predictions)
        return {"accuracy": 100.0 * value}


class MatthewsCorr:
    """``100 * sklearn.metrics.matthews_corrcoef`` (CoLA's metric)."""

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.config = config

    def __call__(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        _check_pair("matthews_corr", predictions, references)
        value = _sklearn(
            "matthews_corr", sklearn.metrics.matthews_corrcoef, references, predictions
        )
        return {"matthews_corrcoef": 100.0 * value}


class Rouge:
    """rouge-score ROUGE F-measure ×100, as T5's ``metrics.rouge``.

    Both strings get ``" . "`` -> ``" .\\n"`` (so rougeLsum sees sentences), each pair is
    scored with ``RougeScorer(types, use_stemmer)``, and the per-example scores are
    aggregated with ``BootstrapAggregator`` (1000 resamples) reporting the ``mid`` (median
    of the bootstrap means).  rouge-score resamples with numpy's *global* generator, which
    T5 leaves unseeded; here it is seeded with ``bootstrap_seed`` for the aggregation and
    the caller's generator state is restored afterwards.  ``bootstrap=False`` reports the
    plain mean instead.
    """

    def __init__(self, config: Any, context: Any = None) -> None:
        types = list(config.types)
        bad = [t for t in types if not _ROUGE_TYPE.match(t)]
        if not types or bad:
            raise ConfigError(
                f"rouge: types must be non-empty and each rougeN (N >= 1), rougeL or "
                f"rougeLsum; got {types}"
            )
        self.scorer = rouge_scorer.RougeScorer(types, use_stemmer=config.use_stemmer)
        self.types = types
        self.bootstrap = config.bootstrap
        self.seed = config.bootstrap_seed

    @staticmethod
    def _prepare(summary: str) -> str:
        return summary.replace(" . ", " .\n")

    def __call__(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        _check_pair("rouge", predictions, references)
        _check_strings("rouge", "predictions", predictions)
        _check_strings("rouge", "references", references)
        scores = [
            self.scorer.score(target=self._prepare(ref), prediction=self._prepare(pred))
            for pred, ref in zip(predictions, references, strict=True)
        ]
        if not self.bootstrap:
            return {
                key: 100.0 * float(np.mean([s[key].fmeasure for s in scores])) for key in self.types
            }
        aggregator = scoring.BootstrapAggregator()
        for score in scores:
            aggregator.add_scores(score)
        saved = np.random.get_state()
        np.random.seed(self.seed)
        try:
            result = aggregator.aggregate()
        finally:
            np.random.set_state(saved)
        return {key: 100.0 * float(result[key].mid.fmeasure) for key in self.types}


class Bleu:
    """sacrebleu corpus BLEU with T5's settings (exp smoothing, ``intl`` tokenizer).

    A reference may be a string or a sequence of strings (several references per
    example; every example must then have the same number).
    """

    def __init__(self, config: Any, context: Any = None) -> None:
        self.tokenize = config.tokenize
        self.smooth_method = config.smooth_method
        self.lowercase = config.lowercase
        try:
            sacrebleu.BLEU(tokenize=self.tokenize, smooth_method=self.smooth_method)
        except Exception as error:  # sacrebleu raises various types for bad names
            raise ConfigError(
                f"bleu: tokenize={self.tokenize!r} / smooth_method={self.smooth_method!r} "
                f"not accepted by sacrebleu: {error}"
            ) from error

    def _streams(self, references: Sequence[Any]) -> list[list[str]]:
        if all(isinstance(r, str) for r in references):
            return [list(references)]
        counts = set()
        for i, ref in enumerate(references):
            if isinstance(ref, str) or not all(isinstance(x, str) for x in ref):
                raise DataError(
                    f"bleu: references[{i}] must be a string or a list of strings like the others"
                )
            counts.add(len(ref))
        if len(counts) != 1 or 0 in counts:
            raise DataError(
                f"bleu: every example needs the same non-zero number of references, got {counts}"
            )
        return [list(stream) for stream in zip(*references, strict=True)]

    def __call__(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        _check_pair("bleu", predictions, references)
        _check_strings("bleu", "predictions", predictions)
        result = sacrebleu.corpus_bleu(
            list(predictions),
            self._streams(references),
            smooth_method=self.smooth_method,
            smooth_value=0.0,
            force=False,
            lowercase=self.lowercase,
            tokenize=self.tokenize,
            use_effective_order=False,
        )
        return {"bleu": float(result.score)}


# ------------------------------------------------------------- GLUE / SuperGLUE / SQuAD
def _is_binary(value: Any) -> bool:
    """0 or 1 as an integer (bool and numpy integers included); anything else is invalid."""
    return isinstance(value, (int, np.integer)) and value in (0, 1)


def _binary_references(name: str, references: Sequence[Any]) -> list[int]:
    for i, ref in enumerate(references):
        if not _is_binary(ref):
            raise DataError(f"{name}: references[{i}] is {ref!r}; binary labels must be 0 or 1")
    return [int(r) for r in references]


def _f1_with_invalid(name: str, predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """T5's ``f1_score_with_invalid``: a prediction that is not 0/1 becomes the opposite
    of its target (always wrong), then binary sklearn F1, x100."""
    targets = _binary_references(name, references)
    preds = [int(p) if _is_binary(p) else 1 - t for p, t in zip(predictions, targets, strict=True)]
    return 100.0 * float(sklearn.metrics.f1_score(targets, preds, zero_division=0.0))


class F1WithInvalid:
    """Binary F1 x100 where invalid predictions count wrong (MRPC, QQP; facts §8.5).

    A prediction is valid when it is the integer 0 or 1; T5's class-id postprocessing
    maps any other decoded string to -1, which is invalid.
    """

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.config = config

    def __call__(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        _check_pair("f1_invalid", predictions, references)
        return {"f1": _f1_with_invalid("f1_invalid", predictions, references)}


def _numbers(name: str, what: str, values: Sequence[Any]) -> list[float]:
    out = []
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise DataError(f"{name}: {what}[{i}] is {value!r}, expected a number (the task's "
                            "postprocess maps unparseable predictions to a number, T5 uses -1)")
        out.append(float(value))
    return out


class PearsonSpearman:
    """Pearson and Spearman correlation x100 with scipy.stats (STS-B; facts §8.5).

    A constant input has no correlation: scipy then returns NaN, and so does this
    evaluator (as T5 would), with scipy's warning silenced.
    """

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.config = config

    def __call__(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        _check_pair("pearson_spearman", predictions, references)
        preds = _numbers("pearson_spearman", "predictions", predictions)
        refs = _numbers("pearson_spearman", "references", references)
        if len(preds) < 2:
            raise DataError("pearson_spearman: a correlation needs at least 2 examples")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConstantInputWarning -> NaN, reported as NaN
            pearson = scipy.stats.pearsonr(refs, preds)[0]
            spearman = scipy.stats.spearmanr(refs, preds)[0]
        return {"pearson_corrcoef": 100.0 * float(pearson),
                "spearman_corrcoef": 100.0 * float(spearman)}


class MeanClassF1:
    """Unweighted mean of the per-class F1 over classes 0, 1, 2, x100 (CB; facts §8.5).

    ``sklearn.metrics.fbeta_score(beta=1, labels=[0, 1, 2], average="macro")`` as T5's
    ``mean_multiclass_f1(3)``; an invalid prediction (-1) is a miss for its true class.
    """

    NUM_CLASSES = 3

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.config = config

    def __call__(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        _check_pair("mean_3class_f1", predictions, references)
        labels = list(range(self.NUM_CLASSES))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class never predicted: F1 0 for it, as T5
            value = _sklearn(
                "mean_3class_f1",
                lambda refs, preds: sklearn.metrics.fbeta_score(
                    refs, preds, beta=1, labels=labels, average="macro", zero_division=0.0),
                references, predictions,
            )
        return {f"mean_{self.NUM_CLASSES}class_f1": 100.0 * value}


class MultiRC:
    """MultiRC's F1a and EM (facts §8.3, §8.5; T5 ``multirc_f1_over_all_answers`` and
    ``mean_group_metric(all_match)``).

    References are ``{"group": question id, "value": 0/1}``; predictions are
    ``{"value": int}`` (a ``group`` there is ignored, as T5 takes it from the target) or a
    bare int. ``f1a`` = binary F1 with invalid predictions counted wrong over all answers;
    ``exact_match`` = the mean over questions of 100 when every answer of the question is
    predicted correctly, else 0.
    """

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.config = config

    @staticmethod
    def _value(item: Any, what: str, i: int) -> Any:
        if isinstance(item, Mapping):
            if "value" not in item:
                raise DataError(f"multirc: {what}[{i}] has no 'value' key")
            return item["value"]
        return item

    def __call__(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        _check_pair("multirc", predictions, references)
        groups, refs = [], []
        for i, ref in enumerate(references):
            if not isinstance(ref, Mapping) or "group" not in ref:
                raise DataError(f"multirc: references[{i}] must be a dict with 'group' and "
                                "'value'")
            group = ref["group"]
            groups.append(tuple(group) if isinstance(group, list) else group)
            refs.append(self._value(ref, "references", i))
        preds = [self._value(p, "predictions", i) for i, p in enumerate(predictions)]
        f1a = _f1_with_invalid("multirc", preds, refs)
        correct: dict[Any, bool] = {}
        for group, pred, ref in zip(groups, preds, refs, strict=True):
            right = _is_binary(pred) and int(pred) == int(ref)
            correct[group] = correct.get(group, True) and right
        exact = 100.0 * float(np.mean([float(v) for v in correct.values()]))
        return {"f1a": f1a, "exact_match": exact}


def normalize_squad(text: str) -> str:
    """The official SQuAD v1.1 answer normalisation (facts §8.5): lowercase, delete every
    ``string.punctuation`` character, replace the words a/an/the by a space, collapse
    whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_f1(target: str, prediction: str) -> float:
    """Token F1 of two normalised answers (0 when they share no token)."""
    pred, gold = prediction.split(), target.split()
    same = sum((collections.Counter(pred) & collections.Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


class Squad:
    """SQuAD v1.1 exact match and token F1 x100, each the max over the gold answers and
    averaged over questions (official ``evaluate-v1.1.py``; T5 ``metrics.squad``).

    A prediction is a string; a reference is the list of gold answers (a single string
    is one answer).
    """

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.config = config

    def __call__(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        _check_pair("squad", predictions, references)
        _check_strings("squad", "predictions", predictions)
        em, f1 = [], []
        for i, (pred, golds) in enumerate(zip(predictions, references, strict=True)):
            golds = [golds] if isinstance(golds, str) else list(golds)
            if not golds:
                raise DataError(f"squad: references[{i}] has no gold answer")
            _check_strings("squad", f"references[{i}]", golds)
            p = normalize_squad(pred)
            gold = [normalize_squad(g) for g in golds]
            em.append(max(float(p == g) for g in gold))
            f1.append(max(squad_f1(g, p) for g in gold))
        return {"em": 100.0 * float(np.mean(em)), "f1": 100.0 * float(np.mean(f1))}
