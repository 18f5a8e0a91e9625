"""SQuAD, CNN/DM and WMT tasks (facts §8.4) on the real files in the shared data folder.

Data-dependent tests skip when the folder (``T5K_SHARED_DATA``, default
/work/shared/data) is absent. Hub sources are never contacted: their arguments and the
mapping of a hub-shaped row are checked instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import sacrebleu

from t5k_builtin.configs import (
    BleuConfig,
    CnnDailymailConfig,
    RougeConfig,
    SquadConfig,
    WmtEnDeConfig,
    WmtEnFrConfig,
    WmtEnRoConfig,
)
from t5k_builtin.corpora import qa_sum_mt as q
from t5k_builtin.evaluators import Bleu, Rouge
from t5k_builtin.evaluators import Squad as SquadMetric
from t5kernel.api import Task
from t5kernel.errors import ConfigError, DataError

DATA = Path(os.environ.get("T5K_SHARED_DATA", "/work/shared/data"))
SQUAD_DEV = DATA / "squad_v1.1/dev-v1.1.json"
STORIES, URL_LISTS = DATA / "cnn_dailymail/stories", DATA / "cnn_dailymail/url_lists"
FRANK = DATA / "cnn_dailymail/frank_cnndm_test_250.jsonl"
WMT = {
    "de": DATA / "wmt/newstest2014_en-de/newstest2014-deen",
    "fr": DATA / "wmt/newstest2014_en-fr/newstest2014-fren",
    "ro": DATA / "wmt/newstest2016_en-ro/newstest2016-enro",
}


def _need(path: Path) -> Path:
    probe = path if path.exists() else path.with_name(path.name + ".en")
    if not probe.exists():
        pytest.skip(f"shared data {path} not available")
    return path


# ------------------------------------------------------------------ punctuation spacing
def test_pad_punctuation_follows_re2_ascii_classes():
    text = "Beyoncé's $2.5 billion—deal  (2015)\tend."
    # paper-era \W: every char outside [0-9A-Za-z_] is spaced, non-ASCII letters included
    assert q.pad_punctuation(text) == "Beyonc é ' s $ 2 . 5 billion — deal ( 2015 ) end . "
    # later [[:punct:]]: ASCII punctuation only
    assert q.pad_punctuation(text, "punct") == "Beyoncé ' s $ 2 . 5 billion—deal ( 2015 ) end . "
    # RE2's \s has no \v: a vertical tab survives the collapse (spaced, as any \W char)
    assert q.pad_punctuation("a\vb") == "a \x0b b"
    assert q.pad_punctuation("snake_case x") == "snake_case x"
    assert q.string_join(["question:", " What ? ", "context:", "It . "]) == (
        "question: What ? context: It . ")
    with pytest.raises(ConfigError, match="allowed"):
        q.pad_punctuation("x", "unicode")


# ------------------------------------------------------------------------------- SQuAD
@pytest.fixture(scope="module")
def squad_dev():
    task = q.Squad(SquadConfig(validation_file=str(_need(SQUAD_DEV))))
    return task, list(task.examples("validation"))


def test_squad_formats_the_official_dev_set(squad_dev):
    task, examples = squad_dev
    assert isinstance(task, Task) and task.benchmark == "squad" and task.supervised
    assert task.splits == ("validation",) and task.evaluators == ("squad",)
    assert len(examples) == task.num_examples("validation") == 10570
    first = examples[0]
    assert first["id"] == "56be4db0acb8001400a502ec"
    assert first["inputs"].startswith(
        "question: Which NFL team represented the AFC at Super Bowl 50 ? context: Super Bowl "
        "50 was an American football game to determine the champion of the National Football "
        "League ( NFL ) for the 2015 season . The American Football Conference ( AFC ) "
        "champion Denver Broncos defeated the National Football Conference ( NFC ) champion "
        "Carolina Panthers 24 – 10 to earn")
    assert first["targets"] == "Denver Broncos"
    assert task.reference(first) == ["Denver Broncos"] * 3
    assert task.postprocess("Denver Broncos", first) == "Denver Broncos"
    # every target is the spaced first answer; questions keep their paragraph's context
    raw = json.loads(SQUAD_DEV.read_text(encoding="utf-8"))["data"]
    qas = [(p["context"], qa) for a in raw for p in a["paragraphs"] for qa in p["qas"]]
    for (context, qa), ex in zip(qas[::97], examples[::97], strict=True):
        assert ex["id"] == qa["id"]
        assert ex["targets"] == q.pad_punctuation(qa["answers"][0]["text"])
        assert ex["inputs"] == q.string_join(
            ["question:", q.pad_punctuation(qa["question"]), "context:",
             q.pad_punctuation(context)])
    # an answer with punctuation is spaced the same way in target and references
    dotted = next(ex for ex in examples if "." in ex["answers"][0])
    assert " . " in dotted["targets"] or dotted["targets"].endswith(" . ")


def test_squad_gold_predictions_score_100_against_spaced_references(squad_dev):
    task, examples = squad_dev
    sample = examples[:400]
    refs = [task.reference(ex) for ex in sample]
    assert SquadMetric()([ex["targets"] for ex in sample], refs) == {"em": 100.0, "f1": 100.0}


def test_squad_hub_arguments_and_row_mapping(monkeypatch):
    task = q.Squad(SquadConfig(revision="abc123"))
    assert task.splits == ("train", "validation")
    assert task.hub_arguments("validation") == {
        "path": "rajpurkar/squad", "name": None, "revision": "abc123",
        "split": "validation", "streaming": False}
    row = {"id": "x1", "title": "T", "context": "Paris is in France.",
           "question": "Where is Paris?", "answers": {"text": ["France", "in France"],
                                                      "answer_start": [12, 9]}}
    monkeypatch.setattr(q, "_hub_load", lambda arguments, name: [row, row])
    examples = list(task.examples("train"))
    assert examples[0] == {
        "inputs": "question: Where is Paris ? context: Paris is in France . ",
        "targets": "France", "id": "x1", "question": "Where is Paris ? ",
        "context": "Paris is in France . ", "answers": ["France", "in France"]}
    assert task.num_examples("train") == 2
    streaming = q.Squad(SquadConfig(streaming=True))
    assert streaming.num_examples("validation") is None
    with pytest.raises(DataError, match="no split 'test'"):
        task.hub_arguments("test")


def test_squad_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="pad_punctuation"):
        q.Squad(SquadConfig(pad_punctuation="all"))
    with pytest.raises(ConfigError, match="no local files and no hub_path"):
        q.Squad(SquadConfig(hub_path=""))
    no_answer = {"data": [{"title": "t", "paragraphs": [
        {"context": "c", "qas": [{"id": "q", "question": "?", "answers": []}]}]}]}
    (tmp_path / "v2.json").write_text(json.dumps(no_answer))
    task = q.Squad(SquadConfig(train_file=str(tmp_path / "v2.json")))
    with pytest.raises(DataError, match="has no answer"):
        list(task.examples("train"))
    (tmp_path / "bad.json").write_text('{"data": [{"paragraphs": [{"qas": [{"id": "q"}]}]}]}')
    with pytest.raises(DataError, match="not official SQuAD JSON"):
        list(q.Squad(SquadConfig(train_file=str(tmp_path / "bad.json"))).examples("train"))
    missing = q.Squad(SquadConfig(train_file=str(tmp_path / "nope.json")))
    with pytest.raises(DataError, match="does not exist"):
        missing.num_examples("train")


# ----------------------------------------------------------------------- CNN/DailyMail
STORY = """First line of the article
Second line ends well.

Quote ends here\u201d
@highlight

First highlight

@highlight

Second one!
"""


def test_read_story_per_tfds_version():
    assert q.read_story(STORY, "1.0.0") == (
        "first line of the article . second line ends well. quote ends here\u201d",
        "first highlight . second one!")
    assert q.read_story(STORY, "2.0.0")[1] == "first highlight .\nsecond one!"
    assert q.read_story(STORY, "3.0.0") == (
        "First line of the article . Second line ends well. Quote ends here\u201d",
        "First highlight .\nSecond one!")
    assert q.read_story(STORY, "3.2.0")[1] == "First highlight.\nSecond one!"
    # "@highlight" must start a line to mark one; a story without article text has ""
    assert q.read_story("an @highlight\n", "3.0.0") == ("an @highlight", "")
    assert q.read_story("@highlight\n\nOnly this", "3.0.0") == ("", "Only this .")
    with pytest.raises(ConfigError, match="tfds_version"):
        q.read_story(STORY, "4.0.0")


def _stories_task(**options):
    return q.CnnDailymail(CnnDailymailConfig(
        stories_dirs=[str(_need(STORIES))], url_lists_dir=str(_need(URL_LISTS)), **options))


def test_cnn_dailymail_from_story_files_and_url_lists():
    task = _stories_task()
    assert isinstance(task, Task) and task.benchmark == "cnn_dailymail"
    assert task.splits == ("train", "validation") and task.evaluators == ("rouge",)
    val_urls = (URL_LISTS / "all_val.txt").read_text().split()
    val = list(task.examples("validation"))
    assert task.num_examples("validation") == len(val) == len(val_urls) == 10
    assert task.num_examples("train") == 10
    assert task.report == {"train": {"missing_stories": 0, "skipped": 0},
                           "validation": {"missing_stories": 0, "skipped": 0}}
    # ids are the SHA-1 of the split's URLs, in sorted file order, disjoint from train
    hashes = sorted(hashlib.sha1(u.encode()).hexdigest() for u in val_urls)
    assert [ex["id"] for ex in val] == hashes
    assert not {ex["id"] for ex in val} & {ex["id"] for ex in task.examples("train")}
    # the Germanwings story (first val URL): paper-era 1.0.0 text is lowercased
    germanwings = next(ex for ex in val if ex["id"] == hashlib.sha1(
        val_urls[0].encode()).hexdigest())
    assert germanwings["inputs"].startswith(
        "summarize: marseille, france (cnn)the french prosecutor leading an investigation "
        "into the crash of germanwings flight 9525 insisted wednesday")
    assert germanwings["targets"].startswith(
        'marseille prosecutor says "so far no videos were used in the crash investigation" '
        "despite media reports . journalists at bild and paris match are \"very confident\" "
        "the video clip is real, an editor says . ")
    raw = (STORIES / f"{germanwings['id']}.story").read_text(encoding="utf-8")
    assert (germanwings["inputs"], germanwings["targets"]) == tuple(
        ["summarize: " + q.read_story(raw)[0], q.read_story(raw)[1]])
    cased = _stories_task(tfds_version="3.0.0")
    first = next(ex for ex in cased.examples("validation") if ex["id"] == germanwings["id"])
    assert first["targets"].split("\n")[0] == (
        'Marseille prosecutor says "so far no videos were used in the crash investigation" '
        "despite media reports .")
    assert task.reference(first) == first["targets"]


def test_cnn_dailymail_reports_missing_stories_and_checks_config(tmp_path):
    _need(URL_LISTS)
    urls = (URL_LISTS / "all_val.txt").read_text() + "http://example.com/not-downloaded\n"
    (tmp_path / "all_val.txt").write_text(urls)
    task = q.CnnDailymail(CnnDailymailConfig(stories_dirs=[str(_need(STORIES))],
                                             url_lists_dir=str(tmp_path)))
    assert task.splits == ("validation",) and task.num_examples("validation") == 10
    assert task.report["validation"] == {"missing_stories": 1, "skipped": 0}
    with pytest.raises(ConfigError, match="needs url_lists_dir"):
        q.CnnDailymail(CnnDailymailConfig(stories_dirs=[str(STORIES)]))
    with pytest.raises(ConfigError, match="not both"):
        q.CnnDailymail(CnnDailymailConfig(stories_dirs=[str(STORIES)],
                                          url_lists_dir=str(tmp_path), train_files=["x"]))
    with pytest.raises(ConfigError, match="tfds_version"):
        q.CnnDailymail(CnnDailymailConfig(tfds_version="9.9.9"))
    (tmp_path / "empty").mkdir()
    lonely = q.CnnDailymail(CnnDailymailConfig(stories_dirs=[str(tmp_path / "empty")],
                                               url_lists_dir=str(tmp_path)))
    with pytest.raises(DataError, match="no .story file"):
        lonely.num_examples("validation")


def test_cnn_dailymail_jsonl_and_rouge_on_frank_system_summaries():
    task = q.CnnDailymail(CnnDailymailConfig(validation_files=[str(_need(FRANK))],
                                             summary_field="bart_reference"))
    examples = list(task.examples("validation"))
    assert task.splits == ("validation",) and len(examples) == 250
    rows = [json.loads(line) for line in FRANK.read_text(encoding="utf-8").splitlines()]
    assert examples[0]["inputs"] == "summarize: " + rows[0]["article"]
    assert [ex["id"] for ex in examples] == [r["id"] for r in rows]
    # the task's references + BART's summaries reproduce the stored rouge-score means
    expected = json.loads((DATA / "cnn_dailymail/frank_cnndm_test_250.rouge_score_0.1.2.json")
                          .read_text())["results"]["use_stemmer=False"]["bart"]
    rouge = Rouge(RougeConfig(types=["rouge1", "rouge2", "rougeL"], bootstrap=False))
    scores = rouge([r["bart"] for r in rows], [task.reference(ex) for ex in examples])
    for key in ("rouge1", "rouge2", "rougeL"):
        assert scores[key] == pytest.approx(100 * expected[f"{key}_f_mean"], abs=1e-9)


def test_cnn_dailymail_jsonl_errors_and_hub(tmp_path, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"article": "a", "highlights": "h"}\n{"article": "b"}\n')
    task = q.CnnDailymail(CnnDailymailConfig(train_files=[str(bad)]))
    with pytest.raises(DataError, match="line 2"):
        list(task.examples("train"))
    hub = q.CnnDailymail(CnnDailymailConfig(revision="r1"))
    assert hub.splits == ("train", "validation", "test")
    assert hub.hub_arguments("test") == {"path": "abisee/cnn_dailymail", "name": "3.0.0",
                                         "revision": "r1", "split": "test", "streaming": False}
    row = {"article": "LONDON (CNN) Text.", "highlights": "One .\nTwo .", "id": "abc"}
    assert hub.example_from_hub(row) == {"inputs": "summarize: LONDON (CNN) Text.",
                                         "targets": "One .\nTwo .", "id": "abc"}


# --------------------------------------------------------------------------------- WMT
def test_wmt_offers_its_non_english_training_side_to_the_vocabulary(tmp_path):
    (tmp_path / "train.en").write_text("Hello.\nGood night.\n", encoding="utf-8")
    (tmp_path / "train.de").write_text("Hallo.\nGute Nacht.\n", encoding="utf-8")
    (tmp_path / "test.en").write_text("Yes.\n", encoding="utf-8")
    (tmp_path / "test.de").write_text("Ja.\n", encoding="utf-8")
    task = q.WmtEnDe(WmtEnDeConfig(train_prefixes=[str(tmp_path / "train")],
                                   test_prefixes=[str(tmp_path / "test")]))
    assert {k: list(v) for k, v in task.vocabulary_texts().items()} == {
        "de": ["Hallo.", "Gute Nacht."]}
    reverse = q.WmtEnDe(WmtEnDeConfig(train_prefixes=[str(tmp_path / "train")],
                                      source_language="de", target_language="en"))
    assert {k: list(v) for k, v in reverse.vocabulary_texts().items()} == {
        "de": ["Hallo.", "Gute Nacht."]}
    test_only = q.WmtEnDe(WmtEnDeConfig(test_prefixes=[str(tmp_path / "test")]))
    assert test_only.vocabulary_texts() == {}


@pytest.mark.parametrize(("cls", "cfg", "lang", "name", "lines", "first_target"), [
    (q.WmtEnDe, WmtEnDeConfig, "de", "German", 3003, "Gutach: Noch mehr Sicherheit für Fußgänger"),
    (q.WmtEnFr, WmtEnFrConfig, "fr", "French", 3003, None),
    (q.WmtEnRo, WmtEnRoConfig, "ro", "Romanian", 1999,
     "Șeful ONU declară că nu există soluții militare în Siria"),
], ids=["ende", "enfr", "enro"])
def test_wmt_test_sets(cls, cfg, lang, name, lines, first_target):
    prefix = _need(WMT[lang])
    task = cls(cfg(test_prefixes=[str(prefix)]))
    assert isinstance(task, Task) and task.benchmark == task.name == f"wmt_en{lang}"
    assert task.splits == ("test",) and task.evaluators == ("bleu",)
    examples = list(task.examples("test"))
    assert len(examples) == task.num_examples("test") == lines
    english = (prefix.parent / f"{prefix.name}.en").read_text(encoding="utf-8").splitlines()
    foreign = (prefix.parent / f"{prefix.name}.{lang}").read_text(encoding="utf-8").splitlines()
    assert [ex["inputs"] for ex in examples] == [
        f"translate English to {name}: {s}" for s in english]
    assert [task.reference(ex) for ex in examples] == foreign
    if first_target:
        assert examples[0]["targets"] == first_target
    assert examples[0]["en"] == english[0] and examples[0][lang] == foreign[0]


def test_wmt_bleu_through_the_task_equals_sacrebleu():
    task = q.WmtEnDe(WmtEnDeConfig(test_prefixes=[str(_need(WMT["de"]))]))
    examples = list(task.examples("test"))[:600]
    refs = [task.reference(ex) for ex in examples]
    copies = [ex["en"] for ex in examples]  # "translate" by copying the English source
    bleu = Bleu(BleuConfig())
    assert bleu(refs, refs) == {"bleu": pytest.approx(100.0)}
    direct = sacrebleu.corpus_bleu(copies, [refs], smooth_method="exp", tokenize="intl",
                                   lowercase=False, use_effective_order=False).score
    assert bleu(copies, refs)["bleu"] == pytest.approx(direct, abs=1e-12)
    assert 0 < direct < 20


def test_wmt_hub_and_errors(tmp_path, monkeypatch):
    for task, path, name in ((q.WmtEnDe(WmtEnDeConfig()), "wmt/wmt14", "de-en"),
                             (q.WmtEnFr(WmtEnFrConfig()), "wmt/wmt14", "fr-en"),
                             (q.WmtEnRo(WmtEnRoConfig(revision="v")), "wmt/wmt16", "ro-en")):
        assert task.splits == ("train", "validation", "test")
        args = task.hub_arguments("validation")
        assert (args["path"], args["name"], args["split"]) == (path, name, "validation")
    ro = q.WmtEnRo(WmtEnRoConfig())
    assert ro.example_from_hub({"translation": {"en": "Hello.", "ro": "Salut."}}) == {
        "inputs": "translate English to Romanian: Hello.", "targets": "Salut.",
        "en": "Hello.", "ro": "Salut."}
    (tmp_path / "p.en").write_text("a\nb\n")
    (tmp_path / "p.de").write_text("x\n")
    task = q.WmtEnDe(WmtEnDeConfig(train_prefixes=[str(tmp_path / "p")]))
    with pytest.raises(DataError, match="align line by line"):
        task.num_examples("train")
    (tmp_path / "p.de").write_text("\ufeffx\r\ny\r\n")  # BOM and CRLF are not content
    assert [ex["targets"] for ex in task.examples("train")] == ["x", "y"]
    with pytest.raises(DataError, match="does not exist"):
        list(q.WmtEnDe(WmtEnDeConfig(train_prefixes=[str(tmp_path / "q")])).examples("train"))
    with pytest.raises(ConfigError, match="target_language='xx'"):
        q.WmtEnDe(WmtEnDeConfig(target_language="xx"))
    with pytest.raises(DataError, match="no split 'train'"):
        list(q.WmtEnDe(WmtEnDeConfig(test_prefixes=[str(tmp_path / "p")])).examples("train"))


def test_hub_load_errors_are_one_line_data_errors(monkeypatch):
    import datasets

    def offline(**arguments):
        raise ConnectionError("Couldn't reach 'rajpurkar/squad' on the Hub (LocalEntryNotFound)\n"
                              "details ...")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    task = q.Squad(SquadConfig())
    with pytest.raises(DataError, match=r"cannot load hub dataset 'rajpurkar/squad' \(None, "
                                        r"split 'validation'\): Couldn't reach .*Found\); set"):
        task.num_examples("validation")
