"""Corpus plugins: embedded, text_files and the three demo tasks (DESIGN §6)."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from t5k_builtin.configs import DemoTaskConfig, EmbeddedCorpusConfig, TextFilesConfig
from t5k_builtin.corpora import demo_tasks as demo
from t5k_builtin.corpora import embedded
from t5k_builtin.corpora.embedded import EmbeddedCorpus
from t5k_builtin.corpora.text_files import TextFiles
from t5kernel.api import BuildContext, Corpus, Task
from t5kernel.errors import ConfigError, DataError
from t5kernel.testing import unchecked

WIKITEXT = Path("/work/shared/data/wikitext2_raw/wiki.valid.raw")


def _texts(corpus, split):
    return [ex["text"] for ex in corpus.examples(split)]


def _digest(texts):
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()


# ------------------------------------------------------------------------------ embedded
def test_embedded_builds_fast_deterministically_and_reports_size():
    embedded.split_documents.cache_clear()
    embedded.source_documents.cache_clear()
    start = time.perf_counter()
    corpus = EmbeddedCorpus(EmbeddedCorpusConfig(), BuildContext())
    train, valid = _texts(corpus, "train"), _texts(corpus, "validation")
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"building the embedded corpus took {elapsed:.1f}s"
    assert isinstance(corpus, Corpus) and corpus.supervised is False
    assert corpus.splits == ("train", "validation")
    assert corpus.num_examples("train") == len(train) and corpus.num_examples("validation") == len(
        valid
    )
    docs = train + valid
    chars, words = sum(map(len, docs)), sum(len(d.split()) for d in docs)
    print(
        f"\nembedded corpus on Python {sys.version.split()[0]}: {len(docs)} documents "
        f"({len(train)} train / {len(valid)} validation), {chars / 1e6:.2f} MB, "
        f"{words} words, built in {elapsed:.2f}s"
    )
    assert len(docs) > 3000 and chars > 500_000
    # a second, uncached build gives the identical sequence
    embedded.split_documents.cache_clear()
    embedded.source_documents.cache_clear()
    again = EmbeddedCorpus(EmbeddedCorpusConfig(), None)
    assert _texts(again, "train") == train and _texts(again, "validation") == valid


def test_embedded_split_is_stable_hash_without_overlap():
    corpus = EmbeddedCorpus(EmbeddedCorpusConfig(), None)
    train, valid = set(_texts(corpus, "train")), set(_texts(corpus, "validation"))
    assert not train & valid
    assert all(embedded.stable_percent(d) < 2 for d in valid)
    assert all(embedded.stable_percent(d) >= 2 for d in train)
    assert 0.005 < len(valid) / (len(train) + len(valid)) < 0.04
    # md5-based: independent of the process's string hash seed
    assert (
        embedded.stable_percent("hello world")
        == int(hashlib.md5(b"hello world").hexdigest()[:16], 16) % 100
    )


def test_embedded_docstrings_ignore_methods_a_library_adds(monkeypatch):
    """transformers adds ``warning_once`` & co. to ``logging.Logger`` when imported: such
    members must not enter the corpus, or it would depend on what the process imported."""
    import logging

    walk = embedded.source_documents.__wrapped__  # uncached
    before = walk("docstrings", 1)

    def warning_once(self, message):
        """Log a warning only once for each distinct message, as a library adds it."""

    warning_once.__module__ = "some_library.utils.logging"
    monkeypatch.setattr(logging.Logger, "warning_once", warning_once, raising=False)
    assert embedded.looks_like_prose(warning_once.__doc__)  # it would be a document
    assert walk("docstrings", 1) == before


@pytest.mark.slow
def test_embedded_same_in_another_process_with_other_hash_seed():
    corpus = EmbeddedCorpus(EmbeddedCorpusConfig(), None)
    here = _digest(_texts(corpus, "train") + _texts(corpus, "validation"))
    code = (
        "import hashlib; from t5k_builtin.corpora.embedded import EmbeddedCorpus as E;"
        "from t5k_builtin.configs import EmbeddedCorpusConfig as C; c=E(C(), None);"
        "t=[e['text'] for s in c.splits for e in c.examples(s)];"
        "print(hashlib.sha256('\\x00'.join(t).encode()).hexdigest())"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == here


def test_embedded_documents_are_prose_paragraphs():
    corpus = EmbeddedCorpus(EmbeddedCorpusConfig(min_chars=60), None)
    docs = _texts(corpus, "train") + _texts(corpus, "validation")
    assert len(docs) == len(set(docs))
    for d in docs:
        assert len(d) >= 60
        assert "\n" not in d and ">>>" not in d and "::=" not in d and "``" not in d
        assert embedded.looks_like_prose(d)
    # both sources contribute
    topics = embedded.source_documents("topics", 60)
    strings = embedded.source_documents("docstrings", 60)
    assert len(topics) > 500 and len(strings) > 2000


def test_embedded_paragraph_cleaning():
    text = (
        "Title\n*****\n\nThis paragraph is\n   wrapped over *two* lines [1].\n\n"
        ">>> x = 1\nThis is doctest output.\n\n"
        "   if x:\n       pass\n\n"
        "+-----+\n| a b |\n+-----+\n\n"
        "* A first bullet item that is prose.\n* A second one, also prose.\n\n"
        "Use ``foo()`` and :func:`bar` here.\n"
    )
    assert list(embedded.paragraphs(text)) == [
        "This paragraph is wrapped over two lines.",
        "A first bullet item that is prose.",
        "A second one, also prose.",
        'Use "foo()" and "bar" here.',
    ]


def test_embedded_module_list_is_sorted_and_excludes_side_effects():
    assert list(embedded.STDLIB_MODULES) == sorted(set(embedded.STDLIB_MODULES))
    banned = {"this", "antigravity", "idlelib", "tkinter", "turtle", "lib2to3", "ensurepip"}
    assert not {m.split(".")[0] for m in embedded.STDLIB_MODULES} & banned
    assert not any(m == "test" or m.startswith("test.") for m in embedded.STDLIB_MODULES)


def test_embedded_sources_and_config_errors():
    only = EmbeddedCorpus(EmbeddedCorpusConfig(sources=["topics"]), None)
    assert set(_texts(only, "train")) <= set(embedded.source_documents("topics", 40))
    for bad, needle in [
        (unchecked(EmbeddedCorpusConfig, sources=["wiki"]), "wiki"),
        (unchecked(EmbeddedCorpusConfig, sources=[]), "sources"),
        (unchecked(EmbeddedCorpusConfig, validation_percent=101), "validation_percent"),
        (unchecked(EmbeddedCorpusConfig, min_chars=0), "min_chars"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            EmbeddedCorpus(bad, None)
    with pytest.raises(DataError, match="test"):
        list(only.examples("test"))


# ---------------------------------------------------------------------------- demo tasks
TASKS = [demo.Acceptability, demo.Summarize, demo.PigLatin]
PREFIX = {
    demo.Acceptability: "cola sentence: ",
    demo.Summarize: "summarize: ",
    demo.PigLatin: "translate English to Pig Latin: ",
}
SMALL = DemoTaskConfig(num_train=300, num_validation=200, seed=0)


@pytest.mark.parametrize("cls", TASKS)
def test_demo_task_protocol_sizes_and_determinism(cls):
    task = cls(SMALL, BuildContext())
    assert isinstance(task, Task) and task.supervised and task.splits == ("train", "validation")
    train, valid = list(task.examples("train")), list(task.examples("validation"))
    assert len(train) == task.num_examples("train") == 300
    assert len(valid) == task.num_examples("validation") == 200
    again = cls(SMALL, None)
    assert list(again.examples("train")) == train and list(again.examples("validation")) == valid
    other = cls(DemoTaskConfig(num_train=300, num_validation=200, seed=1), None)
    assert list(other.examples("train")) != train
    for ex in train + valid:
        assert ex["inputs"].startswith(PREFIX[cls]) and ex["targets"]
    assert not {e["inputs"] for e in train} & {e["inputs"] for e in valid}
    with pytest.raises(DataError, match="test"):
        task.num_examples("test")


@pytest.mark.parametrize("cls", TASKS)
def test_demo_validation_comes_from_held_out_documents(cls):
    task = cls(SMALL, None)
    docs = demo._documents(SMALL.validation_percent)
    train_text = "\n".join(docs["train"])
    for ex in task.examples("validation"):
        source = ex.get("sentence", ex["inputs"][len(PREFIX[cls]) :])
        assert source not in train_text
        assert any(source in d for d in docs["validation"])


def test_demo_sizes_cap_at_available_and_config_errors():
    task = demo.Summarize(DemoTaskConfig(num_train=10**6, num_validation=5), None)
    assert 1000 < task.num_examples("train") < 10**6
    assert task.num_examples("validation") == 5
    with pytest.raises(ConfigError, match="max_words"):
        demo.PigLatin(DemoTaskConfig(max_words=3), None)
    with pytest.raises(ConfigError, match="num_train"):
        demo.PigLatin(DemoTaskConfig(num_train=-1), None)


def test_acceptability_labels_shuffles_and_postprocess():
    task = demo.Acceptability(SMALL, None)
    for split, n in (("train", 300), ("validation", 200)):
        examples = list(task.examples(split))
        counts = collections.Counter(ex["targets"] for ex in examples)
        assert counts == {"acceptable": n // 2, "unacceptable": n // 2}
        for ex in examples:
            sentence = ex["inputs"][len("cola sentence: ") :]
            assert len(ex["sentence"].split()) <= SMALL.max_words
            assert len(ex["sentence"].split()) >= demo.MIN_SENTENCE_WORDS
            if ex["targets"] == "acceptable":
                assert ex["label"] == 1 and sentence == ex["sentence"]
            else:
                assert ex["label"] == 0 and sentence != ex["sentence"]
                assert _word_multiset(sentence) == _word_multiset(ex["sentence"])
                assert sentence[0].isupper() and sentence[-1] == ex["sentence"][-1]
            assert task.reference(ex) == ex["label"]
    ex = examples[0]
    assert task.postprocess("acceptable", ex) == 1
    assert task.postprocess("unacceptable", ex) == 0
    assert task.postprocess("Acceptable", ex) == -1 and task.postprocess("", ex) == -1
    assert task.evaluators == ("accuracy", "matthews_corr")


def _word_multiset(sentence):
    return collections.Counter(w.rstrip(",;:.!?").lower() for w in sentence.split())


def test_shuffle_words_keeps_punctuation_slots():
    rng = random.Random(0)
    original = "Signoff: commit changes on server, unlock mailbox, close connection."
    for _ in range(20):
        out = demo.shuffle_words(original, rng)
        assert out != original and _word_multiset(out) == _word_multiset(original)
        tokens = out.split()
        assert tokens[0].endswith(":") and tokens[4].endswith(",") and tokens[6].endswith(",")
        assert out.endswith(".") and out[0].isupper()
    assert demo.shuffle_words("Read it.", rng) == "It read."
    with pytest.raises(ValueError):
        demo.shuffle_words("No no no.", rng)


def test_summarize_target_is_lead_sentence():
    task = demo.Summarize(SMALL, None)
    for ex in task.examples("validation"):
        paragraph = ex["inputs"][len("summarize: ") :]
        sentences = demo.split_sentences(paragraph)
        assert 2 <= len(sentences) <= 4 and len(paragraph.split()) <= 60
        assert ex["targets"] == sentences[0] and paragraph.startswith(ex["targets"] + " ")
        assert task.postprocess(ex["targets"], ex) == task.reference(ex) == ex["targets"]
    assert task.evaluators == ("rouge",)


def test_split_sentences():
    text = 'First one, e.g. this. Second "quoted." Third (x) here! Is it? yes. Last'
    assert demo.split_sentences(text) == [
        "First one, e.g. this.",
        'Second "quoted."',
        "Third (x) here!",
        "Is it? yes.",
        "Last",
    ]


@pytest.mark.parametrize(
    "english, pig",
    [
        ("pig", "igpay"),
        ("latin", "atinlay"),
        ("banana", "ananabay"),
        ("string", "ingstray"),
        ("smile", "ilesmay"),
        ("eat", "eatway"),
        ("omelet", "omeletway"),
        ("quiet", "ietquay"),
        ("square", "aresquay"),
        ("rhythm", "ythmrhay"),
        ("yellow", "ellowyay"),
        ("nth", "nthay"),
        ("Hello,", "Ellohay,"),
        ("world!", "orldway!"),
        ("URL", "URLWAY"),
        ("I", "Iway"),
        ("built-in", "uiltbay-inway"),
        ("don't", "on'tday"),
    ],
)
def test_pig_latin_words(english, pig):
    assert demo.pig_latin_word(english) == pig


def test_pig_latin_task_examples():
    assert demo.pig_latin("The quick brown fox jumps.") == "Ethay ickquay ownbray oxfay umpsjay."
    task = demo.PigLatin(SMALL, None)
    for ex in task.examples("train"):
        english = ex["inputs"][len("translate English to Pig Latin: ") :]
        assert ex["targets"] == demo.pig_latin(english)
        assert len(ex["targets"].split()) == len(english.split()) <= SMALL.max_words
    assert task.evaluators == ("bleu",)


def test_trivial_baselines_the_model_must_beat():
    """Majority class, and copying the input, scored with the paper's metric libraries."""
    import sacrebleu
    from rouge_score import rouge_scorer, scoring
    from sklearn.metrics import matthews_corrcoef

    cfg = DemoTaskConfig()  # the default sizes the embedded run uses
    acc_task = demo.Acceptability(cfg, None)
    labels = [acc_task.reference(ex) for ex in acc_task.examples("validation")]
    majority = collections.Counter(labels).most_common(1)[0][0]
    accuracy = 100 * sum(label == majority for label in labels) / len(labels)
    mcc = 100 * matthews_corrcoef(labels, [majority] * len(labels))
    assert accuracy == 50.0 and mcc == 0.0

    sum_task = demo.Summarize(cfg, None)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"])
    agg = scoring.BootstrapAggregator()
    for ex in sum_task.examples("validation"):
        copy = ex["inputs"][len("summarize: ") :]
        agg.add_scores(scorer.score(ex["targets"], copy))
    rouge = {k: 100 * v.mid.fmeasure for k, v in agg.aggregate().items()}
    assert 30 < rouge["rouge1"] < 80

    pig_task = demo.PigLatin(cfg, None)
    examples = list(pig_task.examples("validation"))
    copies = [ex["inputs"][len("translate English to Pig Latin: ") :] for ex in examples]
    bleu = sacrebleu.corpus_bleu(
        copies, [[ex["targets"] for ex in examples]], tokenize="intl", smooth_method="exp"
    ).score
    perfect = sacrebleu.corpus_bleu(
        [ex["targets"] for ex in examples], [[ex["targets"] for ex in examples]], tokenize="intl"
    ).score
    assert bleu < 10 and perfect == pytest.approx(100.0)
    print(
        f"\nbaselines on validation: acceptability majority accuracy {accuracy:.1f}, "
        f"MCC {mcc:.1f} ({len(labels)} ex.); summarize copy-input ROUGE-1/2/Lsum "
        f"{rouge['rouge1']:.1f}/{rouge['rouge2']:.1f}/{rouge['rougeLsum']:.1f}; "
        f"pig latin copy-input BLEU {bleu:.2f}"
    )


# ---------------------------------------------------------------------------- text_files
@pytest.fixture()
def files(tmp_path):
    (tmp_path / "a.txt").write_text("Line one.\nLine two.\n\n  \nPara two.\nmore.\n")
    (tmp_path / "b.jsonl").write_text(
        "\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(["j0", " ", "j2"]))
    )
    (tmp_path / "c.json").write_text(json.dumps([{"body": "c0"}, {"body": "c1"}]))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["p0", "p1", ""], "n": [0, 1, 2]}), tmp_path / "d.parquet")
    return tmp_path


def _tf(**kwargs):
    return TextFiles(TextFilesConfig(**kwargs), BuildContext())


def test_text_files_txt_units(files):
    path = [str(files / "a.txt")]
    assert _texts(_tf(paths=path, txt_unit="line"), "train") == [
        "Line one.",
        "Line two.",
        "Para two.",
        "more.",
    ]
    assert _texts(_tf(paths=path, txt_unit="paragraph"), "train") == [
        "Line one.\nLine two.",
        "Para two.\nmore.",  # "  \n" before it is part of it, then stripped
    ]
    whole = _texts(_tf(paths=path, txt_unit="file"), "train")
    assert whole == [(files / "a.txt").read_text().strip()]


def test_text_files_json_jsonl_parquet_and_order(files, tmp_path):
    corpus = TextFiles(
        TextFilesConfig(
            paths=[str(files / "d.parquet"), str(files / "b.jsonl")],
            validation_paths=[str(files / "a.txt")],
            txt_unit="line",
        ),
        BuildContext(run_dir=tmp_path / "run"),
    )
    assert isinstance(corpus, Corpus) and corpus.supervised is False
    assert corpus.splits == ("train", "validation")
    assert _texts(corpus, "train") == ["p0", "p1", "j0", "j2"]
    assert corpus.num_examples("train") == 4 and corpus.num_examples("validation") == 4
    assert (tmp_path / "run" / "cache" / "datasets").is_dir()
    body = _tf(paths=[str(files / "c.json")], text_field="body")
    assert _texts(body, "train") == ["c0", "c1"] and body.splits == ("train",)
    with pytest.raises(DataError, match="validation_paths"):
        body.num_examples("validation")
    # a directory means its supported files, sorted by name (b.jsonl before d.parquet)
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("d.parquet", "b.jsonl"):
        (folder / name).write_bytes((files / name).read_bytes())
    (folder / "notes.md").write_text("ignored: not a corpus extension")
    assert _texts(_tf(paths=[str(folder)]), "train") == ["j0", "j2", "p0", "p1"]
    assert _texts(_tf(paths=[str(folder / "*.parquet")]), "train") == ["p0", "p1"]


def test_text_files_skip_empty_files(files, tmp_path):
    """A 0-byte file among others adds no text (datasets cannot even read one)."""
    folder = tmp_path / "some_empty"
    folder.mkdir()
    for name in ("empty.txt", "empty.jsonl"):
        (folder / name).write_bytes(b"")
    (folder / "b.txt").write_text("kept\n")
    assert [e["text"] for e in _tf(paths=[str(folder)]).examples("train")] == ["kept"]
    with pytest.raises(DataError, match="no non-empty text"):
        _tf(paths=[str(folder / "empty.txt")]).num_examples("train")


def test_text_files_errors(files, tmp_path):
    with pytest.raises(DataError, match="no paths"):
        _tf(paths=[])
    with pytest.raises(DataError, match="missing.txt"):
        _tf(paths=[str(files / "missing.txt")])
    (tmp_path / "x.csv").write_text("text\nhello\n")
    with pytest.raises(DataError, match=r"\.csv.*allowed: \.txt, \.jsonl, \.json, \.parquet"):
        _tf(paths=[str(tmp_path / "x.csv")])
    with pytest.raises(ConfigError, match="txt_unit"):
        _tf(paths=[str(files / "a.txt")], txt_unit="sentence")
    (tmp_path / "blank.txt").write_text("\n   \n\n")
    with pytest.raises(DataError, match="no non-empty text"):
        _tf(paths=[str(tmp_path / "blank.txt")]).num_examples("train")
    with pytest.raises(DataError, match=r"c\.json.*no field 'text'"):
        _tf(paths=[str(files / "c.json")]).num_examples("train")
    (tmp_path / "broken.jsonl").write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(DataError, match=r"cannot read .*broken\.jsonl.*caused by .*JSON"):
        _tf(paths=[str(tmp_path / "broken.jsonl")]).num_examples("train")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt.*caused by UnicodeDecodeError"):
        _tf(paths=[str(tmp_path / "latin1.txt")]).num_examples("train")
    (tmp_path / "ints.jsonl").write_text('{"text": 1}\n')
    with pytest.raises(DataError, match=r"field 'text' in .*ints\.jsonl' holds int64"):
        _tf(paths=[str(tmp_path / "ints.jsonl")]).num_examples("train")
    (tmp_path / "mixed.jsonl").write_text('{"text": "a"}\n{"other": "b"}\n')
    with pytest.raises(DataError, match=r"mixed\.jsonl.*lack field 'text'"):
        _tf(paths=[str(tmp_path / "mixed.jsonl")]).num_examples("train")


@pytest.mark.skipif(not WIKITEXT.exists(), reason="shared wikitext-2 raw data not present")
def test_text_files_on_wikitext2_validation(tmp_path):
    """A real 1 MB file (linked as .txt): every non-blank line, in order."""
    lines = [line for line in WIKITEXT.read_text(encoding="utf-8").splitlines() if line.strip()]
    link = tmp_path / "wiki.valid.txt"
    link.symlink_to(WIKITEXT)
    texts = _texts(_tf(paths=[str(link)], txt_unit="line"), "train")
    assert texts == [line.strip() for line in lines]
