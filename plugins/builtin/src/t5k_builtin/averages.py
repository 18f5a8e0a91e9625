"""The paper's summary numbers from per-task results (P §3.1.5; facts §8.5, §9).

:func:`benchmark_averages` is T5's ``compute_avg_glue`` rule
(T5:t5/evaluation/eval_utils.py): the metrics of one task *group* are averaged first,
then the groups of the benchmark. GLUE has 8 groups (CoLA, SST-2, MRPC{F1, acc}, STS-B
{Pearson, Spearman}, QQP{F1, acc}, MNLI{matched, mismatched}, QNLI, RTE; WNLI and AX
excluded), SuperGLUE 8 (BoolQ, CB{F1, acc}, COPA, MultiRC{F1a, EM}, ReCoRD{F1, EM}, RTE,
WiC, WSC; DPR and AX-b/AX-g excluded). The Table 16 baseline row gives 83.28 and 71.36.

One difference on purpose: T5 computes an average only when *every* group is present;
here it is computed from the complete groups present and ``<bench>_tasks`` says how many
(8 = the paper's average). A group is complete when all its metrics are there (for
MNLI: both the matched and the mismatched result); an incomplete one is left out with a
warning.

Task results are named by plugin (``glue_cola``, ``super_glue_boolq``; a task evaluated
on several splits reports e.g. ``glue_mnli_matched`` / ``glue_mnli_mismatched``), and
tasks declare a benchmark (``glue``, ``super_glue``, ``squad``, ...).

:func:`paper_summary` gives the paper's columns (P Table 1 onwards): GLUE, CNNDM
(ROUGE-2-F), SQuAD (EM, as the paper's tables: baseline 80.88 = Table 16's EM), SGLUE,
EnDe, EnFr, EnRo (BLEU); None where the run has no such result.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from t5kernel.errors import DataError

#: group -> its metrics; each metric is a tuple of accepted result keys (first found wins)
GLUE_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "cola": (("matthews_corrcoef",),),
    "sst2": (("accuracy",),),
    "mrpc": (("f1",), ("accuracy",)),
    "stsb": (("pearson_corrcoef",), ("spearman_corrcoef",)),
    "qqp": (("f1",), ("accuracy",)),
    "mnli": (("accuracy",),),
    "qnli": (("accuracy",),),
    "rte": (("accuracy",),),
}
SUPER_GLUE_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "boolq": (("accuracy",),),
    "cb": (("mean_3class_f1",), ("accuracy",)),
    "copa": (("accuracy",),),
    "multirc": (("f1a", "f1"), ("exact_match",)),
    "record": (("f1",), ("em", "exact_match")),
    "rte": (("accuracy",),),
    "wic": (("accuracy",),),
    "wsc": (("accuracy",),),
}
#: benchmark -> (result-name prefix, groups, tasks not in the average)
BENCHMARKS: dict[str, tuple[str, dict[str, tuple[tuple[str, ...], ...]], tuple[str, ...]]] = {
    "glue": ("glue_", GLUE_GROUPS, ("wnli", "ax")),
    "super_glue": ("super_glue_", SUPER_GLUE_GROUPS, ("dpr", "axb", "axg", "ax_b", "ax_g", "ax")),
}
#: MNLI's two validation sets; both belong to the one group "mnli"
MNLI_PARTS = ("matched", "mismatched")

#: the paper's summary columns -> (benchmark, metric); GLUE/SGLUE come from the averages
PAPER_COLUMNS: dict[str, tuple[str, str]] = {
    "GLUE": ("glue", "glue_average"),
    "CNNDM": ("cnn_dailymail", "rouge2"),
    "SQuAD": ("squad", "em"),
    "SGLUE": ("super_glue", "super_glue_average"),
    "EnDe": ("wmt_ende", "bleu"),
    "EnFr": ("wmt_enfr", "bleu"),
    "EnRo": ("wmt_enro", "bleu"),
}


def _starts(rest: str, word: str) -> bool:
    return rest == word or rest.startswith(word + "_")


def classify(name: str, benchmark: str | None = None) -> tuple[str, str, str] | None:
    """(benchmark, group, member) of a result, or None when it is in no average.

    The benchmark is ``benchmark`` when that is ``glue`` / ``super_glue``, else read from
    the name's prefix (``super_glue_`` before ``glue_``); the group is the first word(s)
    after the prefix (``glue_cola_v002`` -> ``cola``). ``member`` tells MNLI's matched /
    mismatched results apart ("" for other groups and for a lone ``glue_mnli``).
    """
    labels = [benchmark] if benchmark in BENCHMARKS else []
    for candidate in (name, benchmark or ""):
        for bench in ("super_glue", "glue"):
            prefix = BENCHMARKS[bench][0]
            if candidate.startswith(prefix) and (not labels or labels[0] == bench):
                rest = candidate[len(prefix):]
                found = _group(bench, rest)
                if found is not None:
                    return (bench, *found)
                return None
    if labels:  # declared glue / super_glue, name without the prefix: "cola", "mnli_matched"
        found = _group(labels[0], name)
        return None if found is None else (labels[0], *found)
    return None


def _group(bench: str, rest: str) -> tuple[str, str] | None:
    _prefix, groups, excluded = BENCHMARKS[bench]
    if any(_starts(rest, word) for word in excluded):
        return None
    for group in groups:
        if _starts(rest, group):
            member = ""
            if group == "mnli":
                tail = rest[len("mnli_"):]
                # "mismatched" first: "matched" would not match it anyway, but be explicit
                member = next((p for p in reversed(MNLI_PARTS) if _starts(tail, p)), "")
            return group, member
    return None


def _metric(metrics: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    return next((float(metrics[k]) for k in keys if k in metrics), None)


def benchmark_averages(results: Mapping[str, Mapping[str, Any]],
                       benchmarks: Mapping[str, str] | None = None) -> dict[str, float | int]:
    """``{"glue_average", "glue_tasks", "super_glue_average", "super_glue_tasks"}`` for the
    benchmarks with at least one complete group (see the module docstring).

    ``results`` maps result names to ``{metric: value}``; ``benchmarks`` maps result names
    to the benchmark their task declared (optional: names are enough).
    """
    benchmarks = benchmarks or {}
    # bench -> group -> member -> (result name, metrics)
    found: dict[str, dict[str, dict[str, tuple[str, Mapping[str, Any]]]]] = {}
    for name, metrics in results.items():
        where = classify(name, benchmarks.get(name))
        if where is None:
            continue
        bench, group, member = where
        members = found.setdefault(bench, {}).setdefault(group, {})
        if member in members:
            raise DataError(f"benchmark averages: results {members[member][0]!r} and {name!r} "
                            f"both count as {bench} {group!r}; evaluate only one of them")
        members[member] = (name, metrics)
    out: dict[str, float | int] = {}
    for bench, groups in found.items():
        values = []
        for group, members in groups.items():
            value = _group_value(bench, group, members)
            if value is not None:
                values.append(value)
        if values:
            out[f"{bench}_average"] = float(np.mean(values))
            out[f"{bench}_tasks"] = len(values)
    return out


def _group_value(bench: str, group: str,
                 members: dict[str, tuple[str, Mapping[str, Any]]]) -> float | None:
    """Mean of the group's metrics over its members, or None (warned) if incomplete."""
    if group == "mnli" and any(members.get(p) for p in MNLI_PARTS):
        members = {p: m for p, m in members.items() if p}  # parts win over a lone "mnli"
        missing = [f"mnli_{p}" for p in MNLI_PARTS if p not in members]
        if missing:
            _warn(bench, group, f"no {' / '.join(missing)} result")
            return None
    values = []
    for name, metrics in members.values():
        for keys in BENCHMARKS[bench][1][group]:
            value = _metric(metrics, keys)
            if value is None:
                _warn(bench, group, f"result {name!r} lacks metric {' / '.join(keys)}")
                return None
            values.append(value)
    return float(np.mean(values))


def _warn(bench: str, group: str, why: str) -> None:
    warnings.warn(f"{bench} average: group {group!r} left out ({why})", stacklevel=3)


def paper_summary(results: Mapping[str, Mapping[str, Any]],
                  benchmarks: Mapping[str, str] | None = None) -> dict[str, float | None]:
    """The paper's columns GLUE, CNNDM, SQuAD, SGLUE, EnDe, EnFr, EnRo (None = absent).

    A column's task is the result whose declared benchmark (else its name) is
    ``cnn_dailymail`` / ``squad`` / ``wmt_ende`` / ``wmt_enfr`` / ``wmt_enro``.
    """
    benchmarks = benchmarks or {}
    averages = benchmark_averages(results, benchmarks)
    out: dict[str, float | None] = {}
    for column, (bench, metric) in PAPER_COLUMNS.items():
        if bench in BENCHMARKS:
            value = averages.get(metric)
            out[column] = None if value is None else float(value)
            continue
        names = [n for n in results if benchmarks.get(n, n) == bench]
        if len(names) > 1:
            raise DataError(f"paper summary: results {names} all declare benchmark {bench!r}; "
                            f"the {column} column needs exactly one")
        out[column] = _metric(results[names[0]], (metric,)) if names else None
    return out


class PaperAverages:
    """Evaluator plugin that aggregates a run's task results (``eval.averages``).

    :meth:`aggregate` returns :func:`benchmark_averages` plus the non-missing
    :func:`paper_summary` columns; it does not score predictions itself.
    """

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.config = config

    def __call__(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        raise DataError("paper_averages aggregates task results (eval.averages); it is not a "
                        "task evaluator")

    def aggregate(self, results: Mapping[str, Mapping[str, Any]],
                  benchmarks: Mapping[str, str] | None = None) -> dict[str, float | int]:
        out: dict[str, float | int] = dict(benchmark_averages(results, benchmarks))
        summary = paper_summary(results, benchmarks)
        out.update({k: v for k, v in summary.items() if v is not None})
        return out
