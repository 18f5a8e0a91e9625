"""T5's metrics (facts §8.5) against reference values stored in /work/shared/data.

Data-dependent tests skip when the shared data folder is absent; nothing is copied here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics
from rouge_score import rouge_scorer

from t5k_builtin.configs import BleuConfig, RougeConfig
from t5k_builtin.evaluators import Accuracy, Bleu, MatthewsCorr, Rouge
from t5kernel.api import BuildContext, Evaluator, NoConfig
from t5kernel.errors import ConfigError, DataError

DATA = Path("/work/shared/data")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file {path} not available")
    return path


def _lines(path: Path) -> list[str]:
    text = _need(path).read_text(encoding="utf-8")
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


def _cola_labels() -> list[int]:
    rows = _lines(DATA / "glue/CoLA/dev.tsv")
    return [int(row.split("\t")[1]) for row in rows]


# ------------------------------------------------------------------ accuracy / matthews
def test_accuracy_and_matthews_on_cola_labels_by_hand():
    refs = _cola_labels()
    assert len(refs) == 1043
    preds = [1 - r if i % 7 == 0 or (r == 0 and i % 3 == 0) else r for i, r in enumerate(refs)]
    tp = sum(p == 1 and r == 1 for p, r in zip(preds, refs, strict=True))
    tn = sum(p == 0 and r == 0 for p, r in zip(preds, refs, strict=True))
    fp = sum(p == 1 and r == 0 for p, r in zip(preds, refs, strict=True))
    fn = sum(p == 0 and r == 1 for p, r in zip(preds, refs, strict=True))
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))

    acc = Accuracy(NoConfig(), BuildContext())(preds, refs)
    assert acc == {"accuracy": pytest.approx(100 * (tp + tn) / len(refs), abs=1e-12)}
    mat = MatthewsCorr(NoConfig(), BuildContext())(preds, refs)
    assert mat == {"matthews_corrcoef": pytest.approx(100 * mcc, abs=1e-10)}
    assert mat["matthews_corrcoef"] == pytest.approx(
        100 * sklearn.metrics.matthews_corrcoef(refs, preds), abs=1e-12
    )


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
def test_matthews_degenerate_and_invalid_labels():
    # T5 maps unparseable predictions to -1: a third class for sklearn, still well defined.
    mat = MatthewsCorr(NoConfig(), BuildContext())
    assert mat([1, 1, 1], [1, 1, 1]) == {"matthews_corrcoef": 0.0}
    assert mat([1, -1, 0, 1], [1, 0, 0, 1])["matthews_corrcoef"] > 0
    assert Accuracy()(["positive", "negative"], ["positive", "positive"]) == {"accuracy": 50.0}


@pytest.mark.parametrize(
    "evaluator",
    [Accuracy(), MatthewsCorr(), Rouge(RougeConfig()), Bleu(BleuConfig())],
    ids=["accuracy", "matthews", "rouge", "bleu"],
)
def test_length_mismatch_and_empty_input_are_clear_errors(evaluator):
    assert isinstance(evaluator, Evaluator)
    with pytest.raises(DataError, match="2 predictions but 1 references"):
        evaluator(["a", "b"], ["a"])
    with pytest.raises(DataError, match="nothing to score"):
        evaluator([], [])


# ------------------------------------------------------------------------------- BLEU
def test_bleu_equals_published_international_tokenization_value():
    root = DATA / "metrics/sacrebleu_wmt17_en_de"
    expected = json.loads(_need(root / "expected_scores.json").read_text())["systems"]
    refs = _lines(root / "newstest2017-ende-ref.de")
    bleu = Bleu(BleuConfig(), BuildContext())
    for system in ("newstest2017.LIUM-NMT.4900.en-de", "newstest2017.online-A.0.en-de"):
        hyps = _lines(root / "systems" / system)
        assert len(hyps) == len(refs) == 3004
        values = expected[system]
        score = bleu(hyps, refs)["bleu"]
        assert score == pytest.approx(
            values["computed_here_sacrebleu_2.4.3"]["bleu_intl"], abs=1e-9
        )
        if "bleu_mteval_v14_international_tokenization" in values["published_expected"]:
            published = values["published_expected"]["bleu_mteval_v14_international_tokenization"]
            assert score == pytest.approx(published, abs=0.01)


def test_bleu_unit_cases_including_multiple_references():
    cases = json.loads(_need(DATA / "metrics/sacrebleu_unit_test_cases.json").read_text())
    corpus = [
        c
        for c in cases["cases"]
        if c["test"] == "test_corpus_bleu" and c["kwargs"] in ({}, {"tokenize": "intl"})
    ]
    intl = [c for c in corpus if c["kwargs"] == {"tokenize": "intl"}]
    assert intl, "the intl multi-reference case is expected in the shared file"
    bleu = Bleu(BleuConfig(tokenize="intl"), BuildContext())
    bleu_13a = Bleu(BleuConfig(tokenize="13a"), BuildContext())
    for case in corpus:
        per_example = [
            list(refs) for refs in zip(*case["refs"], strict=True)
        ]  # streams -> per example
        scorer = bleu if case["kwargs"] else bleu_13a
        assert scorer(case["hyps"], per_example)["bleu"] == pytest.approx(
            case["expected"], abs=1e-6
        )
    with pytest.raises(DataError, match="same non-zero number"):
        bleu(["a", "b"], [["a"], ["b", "c"]])


def test_bleu_config_is_checked():
    with pytest.raises(ConfigError, match="tokenize"):
        Bleu(BleuConfig(tokenize="no-such-tokenizer"), BuildContext())


# ------------------------------------------------------------------------------ ROUGE
def _frank():
    path = _need(DATA / "cnn_dailymail/frank_cnndm_test_250.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    expected = json.loads(
        _need(DATA / "cnn_dailymail/frank_cnndm_test_250.rouge_score_0.1.2.json").read_text()
    )["results"]["use_stemmer=False"]
    return rows, expected


def test_rouge_means_match_stored_rouge_score_values_on_frank_cnndm():
    rows, expected = _frank()
    config = RougeConfig(types=["rouge1", "rouge2", "rougeL"], bootstrap=False)
    rouge = Rouge(config, BuildContext())
    for system in ("bart", "pgn"):
        got = rouge([r[system] for r in rows], [r[f"{system}_reference"] for r in rows])
        for key in ("rouge1", "rouge2", "rougeL"):
            assert got[key] == pytest.approx(100 * expected[system][f"{key}_f_mean"], abs=1e-9)


def test_rouge_bootstrap_mid_is_deterministic_and_leaves_numpy_state_alone():
    rows, expected = _frank()
    preds = [r["bart"] for r in rows]
    refs = [r["bart_reference"] for r in rows]
    rouge = Rouge(RougeConfig(), BuildContext())
    np.random.seed(123)
    untouched = np.random.rand()
    np.random.seed(123)
    first = rouge(preds, refs)
    assert np.random.rand() == untouched
    assert rouge(preds, refs) == first
    assert set(first) == {"rouge1", "rouge2", "rougeLsum"}
    # The bootstrap median of the mean is close to the plain mean.
    assert first["rouge1"] == pytest.approx(100 * expected["bart"]["rouge1_f_mean"], abs=0.3)
    assert first["rouge2"] == pytest.approx(100 * expected["bart"]["rouge2_f_mean"], abs=0.3)
    # rougeLsum sees sentences only thanks to the " . " -> " .\n" split.
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=False)
    split = np.mean(
        [
            scorer.score(r.replace(" . ", " .\n"), p.replace(" . ", " .\n"))["rougeLsum"].fmeasure
            for p, r in zip(preds, refs, strict=True)
        ]
    )
    unsplit = 100 * expected["bart"]["rougeL_f_mean"]
    assert abs(100 * split - unsplit) > 1.0
    assert first["rougeLsum"] == pytest.approx(100 * split, abs=0.3)


def test_rouge_matches_rouge155_ground_truth_on_rouge_score_testdata():
    root = DATA / "metrics/rouge_score_testdata"
    cases = json.loads(_need(root / "expected_scores.json").read_text())["cases"]
    targets = _need(root / "target.txt").read_text().splitlines(keepends=True)
    predictions = _need(root / "prediction.txt").read_text().splitlines(keepends=True)
    for case in cases:
        config = RougeConfig(types=[case["rouge_type"]], use_stemmer=case["use_stemmer"])
        if case["pair"].startswith("line"):
            i = int(case["pair"].split()[1])
            pred, ref = predictions[i], targets[i]
        else:
            pred = (root / "pyrouge_files/prediction_multi.0.txt").read_text()
            ref = (root / "pyrouge_files/target_multi.0.txt").read_text()
        # A single example: the bootstrap median equals that example's score.
        got = Rouge(config, BuildContext())([pred], [ref])[case["rouge_type"]]
        assert got == pytest.approx(100 * case["fmeasure"], abs=1e-3)


def test_rouge_bad_type_is_a_config_error():
    for types in (["rouge9x"], [], ["rouge0"]):
        with pytest.raises(ConfigError, match="rouge"):
            Rouge(RougeConfig(types=types), BuildContext())
