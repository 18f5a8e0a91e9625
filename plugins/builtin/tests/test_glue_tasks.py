"""GLUE / SuperGLUE tasks (facts §8.1-8.3, §8.5): formats on real data, postprocessors,
hub-row mapping (no network) and config errors.

Expected strings below are written by hand from the raw files (the raw line is quoted
in a comment where it helps) and the T5 rules, not produced by the code under test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from t5k_builtin.configs import GlueTaskConfig, MnliTaskConfig, SuperGlueTaskConfig
from t5k_builtin.corpora import glue
from t5kernel.api import Task
from t5kernel.errors import ConfigError, DataError

SHARED = Path(os.environ.get("T5K_SHARED_DATA", "/work/shared/data"))
needs_data = pytest.mark.skipif(not (SHARED / "glue").is_dir(), reason="no shared data")


def _first(task, split="validation"):
    return next(iter(task.examples(split)))


def _glue(cls, rel, **kw):
    return cls(GlueTaskConfig(validation_file=str(SHARED / "glue" / rel), **kw))


def _sg(cls, rel, train=False):
    path = str(SHARED / "superglue" / rel)
    return cls(SuperGlueTaskConfig(validation_file=path, train_file=path if train else None))


# --------------------------------------------------------------------- GLUE, real files
@needs_data
@pytest.mark.parametrize(("cls", "rel", "n", "inputs", "targets"), [
    # CoLA: no header; "gj04\t1\t\tThe sailors rode the breeze clear of the rocks."
    (glue.GlueCola, "CoLA/dev.tsv", 1043,
     "cola sentence: The sailors rode the breeze clear of the rocks.", "acceptable"),
    # SST-2 keeps the space GLUE leaves before the tab
    (glue.GlueSst2, "SST-2/dev.tsv", 872,
     "sst2 sentence: it 's a charming and often affecting journey . ", "positive"),
    # MRPC: BOM-prefixed header, a lone '"' that must not start a quoted field
    (glue.GlueMrpc, "MRPC/dev.tsv", 408,
     "mrpc sentence1: He said the foodservice pie business doesn't fit the company's "
     "long-term growth strategy. sentence2: \"The foodservice pie business does not fit our "
     "long-term growth strategy.", "equivalent"),
    (glue.GlueQqp, "QQP/dev.first9rows.tsv", 9,
     "qqp question1: Why are African-Americans so beautiful? question2: Why are hispanics "
     "so beautiful?", "not_duplicate"),
    (glue.GlueStsb, "STS-B/dev.tsv", 1500,
     "stsb sentence1: A man with a hard hat is dancing. sentence2: A man wearing a hard hat "
     "is dancing.", "5.0"),
    (glue.GlueQnli, "QNLI/dev.tsv", 5463,
     "qnli question: What came into force after the new constitution was herald? sentence: "
     "As of that day, the new constitution heralding the Second Republic came into force.",
     "entailment"),
    (glue.GlueRte, "RTE/dev.first2rows.tsv", 2,
     "rte sentence1: Dana Reeve, the widow of the actor Christopher Reeve, has died of lung "
     "cancer at age 44, according to the Christopher Reeve Foundation. sentence2: "
     "Christopher Reeve had an accident.", "not_entailment"),
    (glue.GlueWnli, "WNLI/dev.tsv", 71,
     "wnli sentence1: The drain is clogged with hair. It has to be cleaned. sentence2: The "
     "hair has to be cleaned.", "not_entailment"),
])
def test_glue_first_example_of_real_files(cls, rel, n, inputs, targets):
    task = _glue(cls, rel)
    assert isinstance(task, Task) and task.benchmark == "glue" and task.supervised
    ex = _first(task)
    assert (ex["inputs"], ex["targets"], ex["idx"]) == (inputs, targets, 0)
    assert task.num_examples("validation") == n
    assert task.reference(ex) == task.postprocess(targets, ex)


@needs_data
def test_mnli_hypothesis_first_and_both_validation_splits():
    d = SHARED / "glue" / "MNLI"
    task = glue.GlueMnli(MnliTaskConfig(
        validation_file=str(d / "dev_matched.first2rows.tsv"),
        validation_mismatched_file=str(d / "dev_mismatched.first2rows.tsv")))
    matched = list(task.examples("validation"))
    # sentence2 keeps its trailing space; gold_label is the last column
    assert matched[0]["inputs"] == ("mnli hypothesis: Everyone really likes the newest "
                                    "benefits  premise: The new rights are nice enough")
    assert [ex["targets"] for ex in matched] == ["neutral", "contradiction"]
    mism = _first(task, "validation_mismatched")
    assert mism["inputs"].startswith("mnli hypothesis: Your contributions were of no help")
    assert mism["targets"] == "contradiction" and task.reference(mism) == 2
    assert task.splits == ("train", "validation", "validation_mismatched")
    assert task.eval_splits == {"glue_mnli_matched": "validation",
                                "glue_mnli_mismatched": "validation_mismatched"}


@needs_data
def test_stsb_real_rounding():
    exs = {ex["idx"]: ex for ex in _glue(glue.GlueStsb, "STS-B/dev.tsv").examples("validation")}
    # idx 163 score 3.250 -> 16.25 -> 16 -> "3.2"; idx 50 0.500 -> 2.5 -> 2 (half to even)
    # -> "0.4"; idx 60 3.500 -> 17.5 -> 18 -> "3.6"
    assert [exs[i]["targets"] for i in (163, 50, 60)] == ["3.2", "0.4", "3.6"]
    assert glue.GlueStsb().reference(exs[163]) == pytest.approx(3.2)
    assert len({ex["targets"] for ex in exs.values()}) == 26  # the 0.2 grid over 0..5


@pytest.mark.parametrize(("score", "text"), [
    (2.57, "2.6"), (3.25, "3.2"), (5.0, "5.0"), (0.0, "0.0"), (0.1, "0.0"), (0.3, "0.4"),
    (4.9, "4.8"), (1.0, "1.0"), (-1.0, "-1.0")])
def test_stsb_target_rounding(score, text):
    assert glue.stsb_target(score) == text


def test_stsb_postprocess():
    task = glue.GlueStsb()
    assert task.postprocess("3.4", {}) == 3.4
    assert task.postprocess(" 2.0 ", {}) == 2.0  # Python float() tolerates spaces, as T5
    for bad in ("", "three", "3.2.1", "<unk>"):
        assert task.postprocess(bad, {}) == -1.0


def test_label_postprocessors_exact_match_only():
    cola, cb = glue.GlueCola(), glue.SuperGlueCb()
    assert cola.postprocess("acceptable", {}) == 1
    assert cola.postprocess("unacceptable", {}) == 0
    for odd in ("", "Acceptable", " acceptable", "acceptable ", "maybe", "<unk>"):
        assert cola.postprocess(odd, {}) == -1
    assert [cb.postprocess(w, {}) for w in ("entailment", "contradiction", "neutral")] == [0, 1, 2]
    assert glue.SuperGlueBoolq().postprocess("true", {}) == -1
    assert glue.SuperGlueCopa().postprocess("choice2", {}) == 1


# ---------------------------------------------------------------- SuperGLUE, real files
@needs_data
@pytest.mark.parametrize(("cls", "rel", "n", "inputs", "targets"), [
    (glue.SuperGlueCb, "CB/val.jsonl", 56,
     "cb hypothesis: Valence was helping premise: Valence the void-brain, Valence the "
     "virtuous valet. Why couldn't the figger choose his own portion of titanic anatomy to "
     "shaft? Did he think he was helping?", "contradiction"),
    # label 1 -> choice2; features sorted: choice1, choice2, premise, question
    (glue.SuperGlueCopa, "COPA/val.jsonl", 100,
     "copa choice1: The toilet filled with water. choice2: Water flowed from the spout. "
     "premise: The man turned on the faucet. question: effect", "choice2"),
    (glue.SuperGlueRte, "RTE/val.jsonl", 277,
     "rte hypothesis: Christopher Reeve had an accident. premise: Dana Reeve, the widow of "
     "the actor Christopher Reeve, has died of lung cancer at age 44, according to the "
     "Christopher Reeve Foundation.", "not_entailment"),
    # label stored as the string "false" in this copy
    (glue.SuperGlueWic, "WiC/val.jsonl", 638,
     "wic sentence1: An emerging professional class. sentence2: Apologizing for losing your "
     "temper, even though you were badly provoked, showed real class. word: class", "False"),
])
def test_super_glue_first_example_of_real_files(cls, rel, n, inputs, targets):
    task = _sg(cls, rel)
    assert isinstance(task, Task) and task.benchmark == "super_glue"
    ex = _first(task)
    assert (ex["inputs"], ex["targets"]) == (inputs, targets)
    assert task.num_examples("validation") == n


@needs_data
def test_boolq_passage_before_question():
    ex = _first(_sg(glue.SuperGlueBoolq, "BoolQ/val.jsonl"))
    assert ex["inputs"].startswith("boolq passage: Ethanol fuel -- All biomass goes through")
    assert ex["inputs"].endswith(" question: does ethanol take more energy make that produces")
    assert ex["targets"] == "False"


@needs_data
def test_multirc_one_example_per_answer_with_question_groups():
    task = _sg(glue.SuperGlueMultirc, "MultiRC/val.jsonl")
    exs = list(task.examples("validation"))
    assert len(exs) == 4848 and len({ex["group"] for ex in exs}) == 953
    first = exs[0]
    assert first["inputs"].startswith(
        "multirc question: Would the mass of a baseball affect how much force you have to use "
        "to pick it up? answer: No paragraph: What causes a change in motion? The application")
    assert [ex["targets"] for ex in exs[:4]] == ["False", "True", "True", "False"]
    assert {ex["group"] for ex in exs[:4]} == {0} and exs[4]["group"] == 1
    assert task.postprocess("True", first) == {"group": 0, "value": 1}
    assert task.postprocess("yes", first) == {"group": 0, "value": -1}
    assert task.reference(first) == {"group": 0, "value": 0}


def test_multirc_markup_removed(tmp_path):
    row = {"idx": 7, "passage": {"text": "<b>Sent 1: </b>A cat sat.<br><b>Sent 2: </b>It slept.",
                                 "questions": [{"question": "Who <b>sat</b>?", "idx": 40,
                                                "answers": [{"text": "A cat", "idx": 3,
                                                             "label": 1}]}]}}
    path = tmp_path / "val.jsonl"
    path.write_text(json.dumps(row) + "\n")
    task = glue.SuperGlueMultirc(SuperGlueTaskConfig(validation_file=str(path)))
    ex = _first(task)
    assert ex["inputs"] == ("multirc question: Who sat? answer: A cat paragraph: Sent 1: A cat "
                            "sat. Sent 2: It slept.")
    assert ex["targets"] == "True" and ex["group"] == 40
    assert ex["idx"] == {"paragraph": 7, "question": 40, "answer": 3}


@needs_data
def test_record_entities_highlights_and_answers():
    task = _sg(glue.SuperGlueRecord, "ReCoRD/val.first2.jsonl", train=True)
    val = list(task.examples("validation"))
    assert len(val) == 2  # one per query for scoring
    second = val[1]
    # entity spans 117-125, 132-133, ... of passage 1, unique and sorted
    assert second["inputs"].startswith(
        "record query: Under the terms of the agreement any cubs will return to @placeholder "
        "at the age of two, the age at which they would normally leave their mother in the "
        "wild. entities: China, Edinburgh Zoo, Sweetie, Tian Tian, UK, Yang Guang passage: For "
        "four years we have waited")
    # "occurred.\n@highlight\nTian Tian ... August\n@highlight\nShe ..." -> ". " / " "
    assert second["inputs"].endswith(
        "has not yet occurred. Tian Tian has conceived and could give birth to a cub as early "
        "as August. She has been inseminated twice before but so far failed to produce a cub. "
        "Tian Tian and Yang Guang arrived in 2011 from China to great fanfare. On loan at "
        "£600k a year, became first giant pandas to live in UK for 17 years")
    assert "\n" not in second["inputs"] and "@highlight" not in second["inputs"]
    # a highlight ending in a quote is followed by a single space
    assert "going home...#SNL' For the SNL alum" in val[0]["inputs"]
    assert task.reference(val[0]) == ["Morgan", "Tracy Morgan"]
    assert task.postprocess("Tracy Morgan", val[0]) == "Tracy Morgan"
    train = list(task.examples("train"))
    # query 0 has 5 gold spans but 2 distinct strings -> 2 training examples, same inputs
    assert [ex["targets"] for ex in train] == ["Morgan", "Tracy Morgan", "China"]
    assert train[0]["inputs"] == train[1]["inputs"] == val[0]["inputs"]


def test_record_passage_rules():
    assert glue.record_passage("A.\n@highlight\nB\n@highlight\nC?\n@highlight\nD") == "A. B. C? D"
    assert glue.record_passage("x\"\n@highlight\ny'\n@highlight\nz!") == "x\" y' z!"


def test_record_query_without_answers_trains_on_unk(tmp_path):
    row = {"idx": 0, "passage": {"text": "Bob met Ann.", "entities": [
        {"start": 8, "end": 10}, {"start": 0, "end": 2}, {"start": 0, "end": 2}]},
        "qas": [{"query": "@placeholder smiled.", "idx": 5}]}
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(row) + "\n")
    task = glue.SuperGlueRecord(SuperGlueTaskConfig(train_file=str(path)))
    ex = _first(task, "train")
    assert ex["inputs"] == "record query: @placeholder smiled. entities: Ann, Bob passage: Bob met Ann."
    assert ex["targets"] == "<unk>" and ex["answers"] == []


@needs_data
def test_wsc_simple_format_fixes_and_train_filter():
    task = _sg(glue.SuperGlueWsc, "WSC/val.jsonl", train=True)
    val = {ex["idx"]: ex for ex in task.examples("validation")}
    assert len(val) == 104
    assert val[0]["inputs"] == (
        "wsc: Bernard , who had not told the government official that he was less than 21 when "
        "he filed for a homestead claim, did not consider that he had done anything dishonest. "
        "Still, anyone who knew that he was 19 years old could take his claim away from *him* .")
    assert (val[0]["targets"], val[0]["label"]) == ("anyone", 0)
    # wsc.fixed: span1 "The table" becomes "the table" (case of the text's word)
    assert val[5]["targets"] == "the table" and val[5]["label"] == 1
    assert val[5]["inputs"].endswith("through the table because *it* was made of styrofoam.")
    # the special case whose span2_index points at "use"
    assert val[42]["inputs"].endswith("might want to use *it* , but really for now, what more "
                                      "could they wish for?")
    train = list(task.examples("train"))
    assert len(train) == 38 and all(ex["label"] == 1 for ex in train)  # label-True only
    assert task.postprocess("The table", val[5]) == 1 and task.reference(val[5]) == 1
    assert task.postprocess("Bernard", val[0]) == 0 and task.reference(val[0]) == 0


@pytest.mark.parametrize(("prediction", "referent", "expected"), [
    ("the table", "The table", 1),
    ("Table", "the table", 1),
    ("the wooden table", "table", 1),        # superset
    ("fuzzy bunny", "the fuzzy brown bunny", 1),  # subset
    ("the chair", "the table", 0),
    ("Bob", "Bob's hat", 0),                # apostrophe in one only
    ("Bob's hat", "Bob's hat", 1),
    ("", "the table", -1),
    ("   ", "the table", -1),
    ("the", "the table", -1),                # only a determiner left -> empty
    ("THE TABLE ", "table", 1),
])
def test_wsc_simple_postprocessor(prediction, referent, expected):
    assert glue.wsc_simple_prediction(prediction, referent) == expected


def test_wsc_pronoun_marking_rules():
    rec = {"text": "Tom said he left", "span2_index": 3, "span2_text": "left", "idx": 0}
    assert glue.wsc_simple_inputs(rec) == "wsc: Tom said he *left* "  # final word: "... X "
    rec = {"text": "Tom said he left", "span2_index": 2, "span2_text": "he", "idx": 0}
    assert glue.wsc_simple_inputs(rec) == "wsc: Tom said *he* left"
    with pytest.raises(DataError, match="pronoun"):
        glue.wsc_simple_inputs({**rec, "span2_index": 1})


# --------------------------------------------------------------------------- local TSVs
def test_glue_tsv_quirks(tmp_path):
    qqp = tmp_path / "qqp.tsv"
    qqp.write_text("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                   "1\t1\t2\tA \"quoted a?\tb?\t1\n"   # a lone quote is just a char
                   "2\t3\t4\tshort row\n"               # missing fields: dropped (TFDS)
                   "3\t5\t6\tc?\td?\t0\n")
    exs = list(glue.GlueQqp(GlueTaskConfig(validation_file=str(qqp))).examples("validation"))
    assert [(ex["idx"], ex["targets"]) for ex in exs] == [(0, "duplicate"), (2, "not_duplicate")]
    assert exs[0]["inputs"] == "qqp question1: A \"quoted a? question2: b?"
    cola = tmp_path / "cola.tsv"
    cola.write_text("src\t0\t*\tBad sentence the.\nsrc\t1\t\tGood sentence.")  # no final \n
    exs = list(glue.GlueCola(GlueTaskConfig(train_file=str(cola))).examples("train"))
    assert [(ex["inputs"], ex["targets"]) for ex in exs] == [
        ("cola sentence: Bad sentence the.", "unacceptable"),
        ("cola sentence: Good sentence.", "acceptable")]
    test = tmp_path / "test.tsv"
    test.write_text("index\tsentence1\tsentence2\n0\tA\tB\n")
    ex = _first(glue.GlueRte(GlueTaskConfig(validation_file=str(test))))
    assert (ex["targets"], ex["label"]) == ("<unk>", -1)
    bad = tmp_path / "bad.tsv"
    bad.write_text("index\tsentence1\tsentence2\tlabel\n0\tA\tB\tmaybe\n")
    with pytest.raises(DataError, match="maybe"):
        list(glue.GlueRte(GlueTaskConfig(validation_file=str(bad))).examples("validation"))


def test_examples_are_deterministic(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\nx y \t0\nz \t1\n")
    task = glue.GlueSst2(GlueTaskConfig(validation_file=str(path)))
    assert list(task.examples("validation")) == list(task.examples("validation"))
    assert task.num_examples("validation") == 2


# ---------------------------------------------------------------------- config errors
def test_config_errors(tmp_path):
    missing = tmp_path / "nope.tsv"
    # a missing file is named when its split is read (evaluation needs no training file)
    cola = glue.GlueCola(GlueTaskConfig(train_file=str(missing)))
    with pytest.raises(DataError, match=r"train_file .*nope\.tsv"):
        list(cola.examples("train"))
    with pytest.raises(DataError, match="validation_file"):  # a directory
        next(glue.SuperGlueCb(SuperGlueTaskConfig(validation_file=str(tmp_path))
                              ).examples("validation"))
    present = tmp_path / "dev.tsv"
    present.write_text("sentence\tlabel\n")
    task = glue.GlueSst2(GlueTaskConfig(validation_file=str(present)))
    with pytest.raises(DataError, match="set train_file"):
        list(task.examples("train"))
    with pytest.raises(DataError, match="no split 'test'"):
        list(task.examples("test"))
    with pytest.raises(ConfigError, match="hub_path"):
        glue.GlueSst2(GlueTaskConfig(hub_path=""))
    bad = tmp_path / "val.jsonl"
    bad.write_text('{"premise": "p", "hypothesis": "h", "label": "entailment", "idx": 0}\n{oops\n')
    with pytest.raises(DataError, match="line 2 is not JSON"):
        list(glue.SuperGlueCb(SuperGlueTaskConfig(validation_file=str(bad))).examples("validation"))


# -------------------------------------------------------------------- hub (no network)
HUB_ROWS = {
    "glue_cola": {"sentence": "S.", "label": 0, "idx": 3},
    "glue_sst2": {"sentence": "good", "label": 1, "idx": 0},
    "glue_mrpc": {"sentence1": "A", "sentence2": "B", "label": 1, "idx": 0},
    "glue_qqp": {"question1": "A?", "question2": "B?", "label": 0, "idx": 0},
    "glue_stsb": {"sentence1": "A", "sentence2": "B", "label": 2.57, "idx": 0},
    "glue_mnli": {"premise": "P", "hypothesis": "H", "label": 1, "idx": 0},
    "glue_qnli": {"question": "Q?", "sentence": "S", "label": 1, "idx": 0},
    "glue_rte": {"sentence1": "A", "sentence2": "B", "label": -1, "idx": 0},
    "glue_wnli": {"sentence1": "A", "sentence2": "B", "label": 1, "idx": 0},
    "super_glue_boolq": {"question": "q", "passage": "p", "label": 1, "idx": 0},
    "super_glue_cb": {"premise": "P", "hypothesis": "H", "label": 2, "idx": 0},
    "super_glue_copa": {"premise": "P", "choice1": "A", "choice2": "B", "question": "cause",
                        "label": 0, "idx": 0},
    "super_glue_multirc": {"paragraph": "P<br>x", "question": "Q", "answer": "A",
                           "idx": {"paragraph": 1, "question": 2, "answer": 3}, "label": 1},
    "super_glue_record": {"passage": "P\n@highlight\nH", "query": "@placeholder q",
                          "entities": ["Zed", "Ann", "Zed"], "answers": ["Zed"],
                          "entity_spans": {}, "idx": {"passage": 0, "query": 4}},
    "super_glue_rte": {"premise": "P", "hypothesis": "H", "label": 0, "idx": 0},
    "super_glue_wic": {"word": "w", "sentence1": "A", "sentence2": "B", "start1": 0,
                       "start2": 0, "end1": 1, "end2": 1, "label": 0, "idx": 0},
    "super_glue_wsc": {"text": "Tom told Bob he won .", "span1_index": 0, "span2_index": 3,
                       "span1_text": "Tom", "span2_text": "he", "label": 1, "idx": 0},
}
HUB_EXPECTED = {
    "glue_cola": ("cola sentence: S.", "unacceptable"),
    "glue_sst2": ("sst2 sentence: good", "positive"),
    "glue_mrpc": ("mrpc sentence1: A sentence2: B", "equivalent"),
    "glue_qqp": ("qqp question1: A? question2: B?", "not_duplicate"),
    "glue_stsb": ("stsb sentence1: A sentence2: B", "2.6"),
    "glue_mnli": ("mnli hypothesis: H premise: P", "neutral"),
    "glue_qnli": ("qnli question: Q? sentence: S", "not_entailment"),
    "glue_rte": ("rte sentence1: A sentence2: B", "<unk>"),
    "glue_wnli": ("wnli sentence1: A sentence2: B", "entailment"),
    "super_glue_boolq": ("boolq passage: p question: q", "True"),
    "super_glue_cb": ("cb hypothesis: H premise: P", "neutral"),
    "super_glue_copa": ("copa choice1: A choice2: B premise: P question: cause", "choice1"),
    "super_glue_multirc": ("multirc question: Q answer: A paragraph: P x", "True"),
    "super_glue_record": ("record query: @placeholder q entities: Ann, Zed passage: P. H", "Zed"),
    "super_glue_rte": ("rte hypothesis: H premise: P", "entailment"),
    "super_glue_wic": ("wic sentence1: A sentence2: B word: w", "False"),
    "super_glue_wsc": ("wsc: Tom told Bob *he* won .", "Tom"),
}
HUB_CONFIGS = {"super_glue_wsc": "wsc.fixed"}


@pytest.fixture
def fake_hub(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def load_dataset(**kwargs):
        calls.append(kwargs)
        return [dict(row) for row in fake_hub.rows]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    fake_hub.calls = calls
    return fake_hub


@pytest.mark.parametrize("name", sorted(glue.TASKS))
def test_hub_rows_map_like_local_records(name, fake_hub):
    cls = glue.TASKS[name]
    task = cls()
    assert not task.local
    fake_hub.rows = [HUB_ROWS[name]]
    ex = _first(task, "train")
    assert (ex["inputs"], ex["targets"]) == HUB_EXPECTED[name]
    hub = "nyu-mll/glue" if name.startswith("glue_") else "aps/super_glue"
    config = HUB_CONFIGS.get(name, name.split("_")[-1])
    assert fake_hub.calls[-1] == {"path": hub, "name": config, "revision": None,
                                  "split": "train"}
    assert task.benchmark == ("glue" if name.startswith("glue_") else "super_glue")
    assert set(task.evaluators) <= {"accuracy", "matthews_corr", "f1_invalid",
                                    "pearson_spearman", "mean_3class_f1", "multirc", "squad"}


def test_hub_arguments_and_revision():
    task = glue.GlueMnli(MnliTaskConfig(revision="abc123", hub_name="mnli"))
    assert task.hub_arguments("validation") == {
        "path": "nyu-mll/glue", "name": "mnli", "revision": "abc123",
        "split": "validation_matched"}
    assert task.hub_arguments("validation_mismatched")["split"] == "validation_mismatched"
    assert glue.SuperGlueWsc().hub_arguments("validation")["name"] == "wsc.fixed"


def test_hub_failure_is_one_line_data_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def boom(**kwargs):
        raise ConnectionError("no network\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(DataError, match=r"glue_cola: cannot load hub .*no network; set"):
        list(glue.GlueCola().examples("train"))


def test_evaluators_per_task():
    expected = {
        "glue_cola": ("matthews_corr",), "glue_mrpc": ("f1_invalid", "accuracy"),
        "glue_qqp": ("f1_invalid", "accuracy"), "glue_stsb": ("pearson_spearman",),
        "super_glue_cb": ("mean_3class_f1", "accuracy"), "super_glue_multirc": ("multirc",),
        "super_glue_record": ("squad",)}
    for name, cls in glue.TASKS.items():
        assert cls.evaluators == expected.get(name, ("accuracy",)), name
    assert len(glue.TASKS) == 17
