"""The paper's remaining metrics and the GLUE / SuperGLUE average (facts §8.5, §9).

Each metric is checked on hand-worked cases and, where the shared data folder has the
labels, on real validation labels against the official formula computed here from
counts. The SQuAD metric is checked against the outputs of the official evaluate-v1.1.py
stored with the data. Data tests skip when the folder (``T5K_SHARED_DATA``) is absent.
"""

from __future__ import annotations

import collections
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from t5k_builtin.averages import PaperAverages, benchmark_averages, classify, paper_summary
from t5k_builtin.evaluators import (
    F1WithInvalid,
    MeanClassF1,
    MultiRC,
    PearsonSpearman,
    Squad,
    normalize_squad,
)
from t5kernel.api import BuildContext, Evaluator, NoConfig
from t5kernel.errors import DataError

DATA = Path(os.environ.get("T5K_SHARED_DATA", "/work/shared/data"))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data {path} not available")
    return path


def _f1(tp: int, fp: int, fn: int) -> float:
    return 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0


# -------------------------------------------------------------------------- f1_invalid
def test_f1_invalid_by_hand():
    f1 = F1WithInvalid(NoConfig(), BuildContext())
    assert isinstance(f1, Evaluator)
    # -1 and 2 are invalid: each becomes the opposite of its target (1 -> 0 here)
    assert f1([1, -1, 0, 1, 2], [1, 1, 0, 0, 1]) == {"f1": pytest.approx(40.0)}
    # an invalid prediction on a negative example becomes a false positive
    assert f1([-1, 1], [0, 1]) == {"f1": pytest.approx(_f1(1, 1, 0))}
    assert f1([np.int64(1), True], [1, 1]) == {"f1": 100.0}
    assert f1([0, 0], [0, 0]) == {"f1": 0.0}
    with pytest.raises(DataError, match="must be 0 or 1"):
        f1([0, 1], [0, 2])
    with pytest.raises(DataError, match="pair up"):
        f1([0], [0, 1])


def test_f1_invalid_on_mrpc_labels():
    rows = _need(DATA / "glue/MRPC/dev.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]
    refs = [int(r.split("\t")[0]) for r in rows]
    assert len(refs) == 408 and sum(refs) == 279
    preds = [-1 if i % 11 == 0 else (1 - r if i % 5 == 0 else r) for i, r in enumerate(refs)]
    fixed = [1 - r if p == -1 else p for p, r in zip(preds, refs, strict=True)]
    tp = sum(p == r == 1 for p, r in zip(fixed, refs, strict=True))
    fp = sum(p == 1 and r == 0 for p, r in zip(fixed, refs, strict=True))
    fn = sum(p == 0 and r == 1 for p, r in zip(fixed, refs, strict=True))
    assert F1WithInvalid()(preds, refs)["f1"] == pytest.approx(_f1(tp, fp, fn), abs=1e-12)


# -------------------------------------------------------------------- pearson_spearman
def test_pearson_spearman_by_hand():
    ps = PearsonSpearman()
    assert ps([1, 3, 2], [1, 2, 3]) == {"pearson_corrcoef": pytest.approx(50.0),
                                        "spearman_corrcoef": pytest.approx(50.0)}
    # monotone but not linear: Spearman 100, Pearson below
    out = ps([1.0, 2.0, 4.0, 8.0, 16.0], [1, 2, 3, 4, 5])
    assert out["spearman_corrcoef"] == pytest.approx(100.0) and out["pearson_corrcoef"] < 100
    assert ps([5, 4, 3, 2, 1], [1, 2, 3, 4, 5])["pearson_corrcoef"] == pytest.approx(-100.0)
    constant = ps([2.0, 2.0, 2.0], [1, 2, 3])
    assert math.isnan(constant["pearson_corrcoef"]) and math.isnan(constant["spearman_corrcoef"])
    with pytest.raises(DataError, match="expected a number"):
        ps(["2.0", 1.0], [1.0, 2.0])
    with pytest.raises(DataError, match="at least 2"):
        ps([1.0], [1.0])


def test_pearson_spearman_on_stsb_scores():
    rows = _need(DATA / "glue/STS-B/dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    refs = np.array([float(r.split("\t")[-1]) for r in rows])
    assert len(refs) == 1500
    # T5 predicts round(5 * label) / 5 strings; perturb some, mark some unparseable (-1)
    preds = np.round(refs * 5) / 5
    preds[::7] = np.clip(preds[::7] + 1.2, 0, 5)
    preds[::31] = -1.0
    pearson = np.corrcoef(preds, refs)[0, 1]
    # Spearman = Pearson of the average ranks (ties share the mean rank)
    def ranks(x):
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(1, len(x) + 1)
        for value in np.unique(x):
            r[x == value] = r[x == value].mean()
        return r
    spearman = np.corrcoef(ranks(preds), ranks(refs))[0, 1]
    out = PearsonSpearman()(list(preds), list(refs))
    assert out["pearson_corrcoef"] == pytest.approx(100 * pearson, abs=1e-9)
    assert out["spearman_corrcoef"] == pytest.approx(100 * spearman, abs=1e-9)


# ---------------------------------------------------------------------- mean_3class_f1
def test_mean_3class_f1_by_hand():
    # class 0: F1 1; class 1: P 1/2, R 1/2; class 2: P 1, R 1/2 (-1 is a miss for class 1)
    out = MeanClassF1()([0, 1, 1, 0, -1, 2], [0, 1, 2, 0, 1, 2])
    assert out == {"mean_3class_f1": pytest.approx(100 * (1 + 0.5 + 2 / 3) / 3)}
    # a class never predicted nor present still counts (F1 0), as labels=[0, 1, 2] says
    assert MeanClassF1()([0, 1], [0, 1]) == {"mean_3class_f1": pytest.approx(200 / 3)}


def test_mean_3class_f1_on_cb_labels():
    classes = ("entailment", "contradiction", "neutral")  # T5's CB label order
    lines = _need(DATA / "superglue/CB/val.jsonl").read_text(encoding="utf-8").splitlines()
    refs = [classes.index(json.loads(line)["label"]) for line in lines]
    assert len(refs) == 56
    preds = [(r + 1) % 3 if i % 4 == 0 else (-1 if i % 9 == 0 else r)
             for i, r in enumerate(refs)]
    f1s = []
    for c in range(3):
        tp = sum(p == r == c for p, r in zip(preds, refs, strict=True))
        fp = sum(p == c != r for p, r in zip(preds, refs, strict=True))
        fn = sum(r == c != p for p, r in zip(preds, refs, strict=True))
        f1s.append(_f1(tp, fp, fn))
    assert MeanClassF1()(preds, refs)["mean_3class_f1"] == pytest.approx(np.mean(f1s), abs=1e-9)


# ------------------------------------------------------------------------------ multirc
def test_multirc_by_hand():
    refs = [{"group": g, "value": v} for g, v in
            [("q1", 1), ("q1", 0), ("q1", 1), ("q2", 0), ("q2", 1), ("q3", 1)]]
    preds = [{"value": v} for v in (1, 0, 1, 0, 0)] + [-1]
    out = MultiRC()(preds, refs)
    # q1 all right, q2 one wrong, q3 invalid -> EM 1/3; F1a: tp 2, fp 0, fn 2
    assert out == {"f1a": pytest.approx(_f1(2, 0, 2)), "exact_match": pytest.approx(100 / 3)}
    # the group key may be a list (JSON round trip of a tuple)
    listed = [{"group": ["p", 1], "value": 1}, {"group": ["p", 1], "value": 1}]
    assert MultiRC()([1, 1], listed) == {"f1a": 100.0, "exact_match": 100.0}
    with pytest.raises(DataError, match="'group' and 'value'"):
        MultiRC()([1], [1])
    with pytest.raises(DataError, match="no 'value'"):
        MultiRC()([{"group": "g"}], [{"group": "g", "value": 1}])


def test_multirc_on_validation_answers():
    lines = _need(DATA / "superglue/MultiRC/val.jsonl").read_text(encoding="utf-8").splitlines()
    refs = []
    for line in lines:
        passage = json.loads(line)
        for question in passage["passage"]["questions"]:
            for answer in question["answers"]:
                refs.append({"group": (passage["idx"], question["idx"]),
                             "value": int(answer["label"])})
    groups = collections.defaultdict(list)
    for i, ref in enumerate(refs):
        groups[ref["group"]].append(i)
    assert (len(refs), len(groups)) == (4848, 953)  # the official val sizes
    preds = [{"value": -1 if i % 13 == 0 else (1 - r["value"] if i % 6 == 0 else r["value"])}
             for i, r in enumerate(refs)]
    ok = [p["value"] == r["value"] for p, r in zip(preds, refs, strict=True)]
    em = 100 * np.mean([all(ok[i] for i in members) for members in groups.values()])
    fixed = [1 - r["value"] if p["value"] == -1 else p["value"]
             for p, r in zip(preds, refs, strict=True)]
    values = [r["value"] for r in refs]
    tp = sum(p == v == 1 for p, v in zip(fixed, values, strict=True))
    fp = sum(p == 1 and v == 0 for p, v in zip(fixed, values, strict=True))
    fn = sum(p == 0 and v == 1 for p, v in zip(fixed, values, strict=True))
    out = MultiRC()(preds, refs)
    assert out["exact_match"] == pytest.approx(em, abs=1e-9)
    assert out["f1a"] == pytest.approx(_f1(tp, fp, fn), abs=1e-9)


# -------------------------------------------------------------------------------- SQuAD
def test_squad_normalisation_and_max_over_golds_by_hand():
    assert normalize_squad("The  DENVER Broncos.") == "denver broncos"
    assert normalize_squad("Theater, an anthem!") == "theater anthem"
    assert normalize_squad("1 . 5") == "1 5" and normalize_squad("1.5") == "15"
    sq = Squad()
    assert sq(["The DENVER BRONCOS."], [["Denver Broncos"]]) == {"em": 100.0, "f1": 100.0}
    # partial: P 1, R 2/3 -> F1 0.8; max over golds picks the better one
    assert sq(["Santa Clara"], [["Santa Clara, California"]]) == {
        "em": 0.0, "f1": pytest.approx(80.0)}
    assert sq(["Santa Clara"], [["Levi's Stadium", "Santa Clara"]])["em"] == 100.0
    assert sq(["", "x"], ["a b", "x"]) == {"em": 50.0, "f1": 50.0}  # a string is one gold
    with pytest.raises(DataError, match="no gold answer"):
        sq(["x"], [[]])
    with pytest.raises(DataError, match="expected str"):
        sq([None], [["x"]])


@pytest.fixture(scope="module")
def squad_official():
    folder = DATA / "squad_v1.1"
    data = json.loads(_need(folder / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    qas = [(qa["id"], [a["text"] for a in qa["answers"]])
           for article in data for p in article["paragraphs"] for qa in p["qas"]]
    expected = json.loads((folder / "evaluate-v1.1_expected.json").read_text())["results"]
    return folder, qas, {Path(r["prediction_file"]).name: r["output"] for r in expected}


def test_squad_reproduces_official_evaluate_v11(squad_official):
    folder, qas, expected = squad_official
    golds = [g for _, g in qas]
    perturbed = json.loads((folder / "predictions_perturbed.json").read_text())
    out = Squad()([perturbed[qid] for qid, _ in qas], golds)
    official = expected["predictions_perturbed.json"]
    assert out["em"] == pytest.approx(official["exact_match"], abs=1e-9)
    assert out["f1"] == pytest.approx(official["f1"], abs=1e-9)
    assert Squad()([g[0] for g in golds], golds) == {"em": 100.0, "f1": 100.0}
    # first 5000 answered only: the official script scores the rest 0 over all 10570
    partial = json.loads((folder / "predictions_perturbed_first5000_only.json").read_text())
    answered = [(partial[qid], g) for qid, g in qas if qid in partial]
    sub = Squad()([p for p, _ in answered], [g for _, g in answered])
    official = expected["predictions_perturbed_first5000_only.json"]
    assert sub["em"] * len(answered) / len(qas) == pytest.approx(official["exact_match"],
                                                                 abs=1e-9)
    assert sub["f1"] * len(answered) / len(qas) == pytest.approx(official["f1"], abs=1e-9)


# ---------------------------------------------------------------------------- averages
#: P Table 16, baseline row (facts §9), as task results named like the plugins
TABLE16 = {
    "glue_cola": {"matthews_corrcoef": 53.84}, "glue_sst2": {"accuracy": 92.68},
    "glue_mrpc": {"f1": 92.07, "accuracy": 88.92},
    "glue_stsb": {"pearson_corrcoef": 88.02, "spearman_corrcoef": 87.94},
    "glue_qqp": {"f1": 88.67, "accuracy": 91.56},
    "glue_mnli_matched": {"accuracy": 84.24}, "glue_mnli_mismatched": {"accuracy": 84.57},
    "glue_qnli": {"accuracy": 90.48}, "glue_rte": {"accuracy": 76.28},
    "cnn_dailymail": {"rouge1": 41.33, "rouge2": 19.24, "rougeLsum": 38.77},
    "squad": {"em": 80.88, "f1": 88.81},
    "super_glue_boolq": {"accuracy": 76.62},
    "super_glue_cb": {"mean_3class_f1": 91.22, "accuracy": 91.96},
    "super_glue_copa": {"accuracy": 66.20},
    "super_glue_multirc": {"f1a": 66.13, "exact_match": 25.78},
    "super_glue_record": {"f1": 69.05, "em": 68.16},
    "super_glue_rte": {"accuracy": 75.34}, "super_glue_wic": {"accuracy": 68.04},
    "super_glue_wsc": {"accuracy": 78.56},
}
BENCH = {n: "glue" for n in TABLE16 if n.startswith("glue_")} | {
    n: "super_glue" for n in TABLE16 if n.startswith("super_glue_")} | {
    "squad": "squad", "cnn_dailymail": "cnn_dailymail"}


def test_table16_baseline_averages_reproduce_the_paper():
    out = benchmark_averages(TABLE16, BENCH)
    assert round(out["glue_average"], 2) == 83.28 and round(out["super_glue_average"], 2) == 71.36
    # exact values of the rule: group means first (MNLI m/mm is one group of 8)
    glue = (53.84 + 92.68 + (92.07 + 88.92) / 2 + (88.02 + 87.94) / 2 + (88.67 + 91.56) / 2
            + (84.24 + 84.57) / 2 + 90.48 + 76.28) / 8
    assert out["glue_average"] == pytest.approx(glue, abs=1e-12)
    assert out["glue_tasks"] == out["super_glue_tasks"] == 8
    # a plain mean over the 9 results (MNLI counted twice) would not give the paper's number
    flat = np.mean([np.mean(list(m.values())) for n, m in TABLE16.items() if "glue_" == n[:5]])
    assert round(flat, 2) != 83.28
    assert paper_summary(TABLE16, BENCH) == {
        "GLUE": pytest.approx(83.284375), "CNNDM": 19.24, "SQuAD": 80.88,
        "SGLUE": pytest.approx(71.36375), "EnDe": None, "EnFr": None, "EnRo": None}
    # the names alone are enough
    assert benchmark_averages(TABLE16) == out


def test_averages_exclusions_partial_coverage_and_naming():
    extra = dict(TABLE16, glue_wnli={"accuracy": 0.0}, glue_ax={"accuracy": 0.0},
                 dpr={"accuracy": 0.0}, super_glue_axb={"matthews_corrcoef": 0.0})
    assert benchmark_averages(extra) == benchmark_averages(TABLE16)
    # only the matched MNLI result: that group is left out, with a warning
    partial = {k: v for k, v in TABLE16.items() if k != "glue_mnli_mismatched"}
    with pytest.warns(UserWarning, match="mnli_mismatched"):
        out = benchmark_averages(partial)
    assert out["glue_tasks"] == 7
    # a group missing one of its metrics (MRPC without F1) is left out too
    with pytest.warns(UserWarning, match="lacks metric f1"):
        assert benchmark_averages({"glue_mrpc": {"accuracy": 90.0},
                                   "glue_rte": {"accuracy": 70.0}}) == {
            "glue_average": 70.0, "glue_tasks": 1}
    # no GLUE/SuperGLUE task: no average keys at all
    assert benchmark_averages({"squad": {"em": 1.0}}) == {}
    # one lone MNLI task counts as the whole group; names without the prefix need the label
    assert classify("glue_mnli") == ("glue", "mnli", "")
    assert classify("glue_mnli_mismatched_v002") == ("glue", "mnli", "mismatched")
    assert classify("cola", "glue") == ("glue", "cola", "")
    assert classify("super_glue_wsc_v102_simple_eval") == ("super_glue", "wsc", "")
    assert classify("my_rte", "super_glue_rte") == ("super_glue", "rte", "")
    assert classify("glue_wnli") is None and classify("squad", "squad") is None
    # T5's MultiRC key "f1" is accepted for F1a
    alias = dict(TABLE16, super_glue_multirc={"f1": 66.13, "exact_match": 25.78})
    assert benchmark_averages(alias)["super_glue_average"] == pytest.approx(71.36375)
    with pytest.raises(DataError, match="both count as glue 'cola'"):
        benchmark_averages({"glue_cola": {"matthews_corrcoef": 1.0},
                            "glue_cola_v2": {"matthews_corrcoef": 2.0}})


def test_paper_summary_columns_and_the_aggregator_plugin():
    results = dict(TABLE16, wmt_ende={"bleu": 26.98}, my_fr={"bleu": 39.82},
                   wmt_enro={"bleu": 27.65})
    bench = dict(BENCH, wmt_ende="wmt_ende", my_fr="wmt_enfr", wmt_enro="wmt_enro")
    summary = paper_summary(results, bench)
    assert (summary["EnDe"], summary["EnFr"], summary["EnRo"]) == (26.98, 39.82, 27.65)
    out = PaperAverages(NoConfig(), BuildContext()).aggregate(results, bench)
    assert out["GLUE"] == out["glue_average"] and out["SGLUE"] == out["super_glue_average"]
    assert out["SQuAD"] == 80.88 and out["EnFr"] == 39.82
    only_squad = PaperAverages().aggregate({"squad": {"em": 70.0, "f1": 80.0}}, {})
    assert only_squad == {"SQuAD": 70.0}
    with pytest.raises(DataError, match="not a task evaluator"):
        PaperAverages()(["x"], ["x"])
    with pytest.raises(DataError, match="needs exactly one"):
        paper_summary({"a": {"bleu": 1.0}, "b": {"bleu": 2.0}},
                      {"a": "wmt_ende", "b": "wmt_ende"})
