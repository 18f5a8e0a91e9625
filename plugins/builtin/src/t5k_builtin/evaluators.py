"""T5's metrics, computed with the libraries T5 used (facts §8.5; T5:t5/evaluation/metrics.py).

Each evaluator is built as ``Cls(config, context)`` and called as
``evaluator(predictions, references) -> {metric: value}`` with values ×100 (the paper's
scale).  Keys follow T5: ``accuracy``, ``matthews_corrcoef``, the ROUGE types
(``rouge1``, ``rouge2``, ``rougeLsum``) and ``bleu``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import sacrebleu
import sklearn.metrics
from rouge_score import rouge_scorer, scoring

from t5kernel.errors import ConfigError, DataError

#: the ROUGE types rouge-score can compute
_ROUGE_TYPE = re.compile(r"^rouge([1-9][0-9]*|L|Lsum)$")


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
