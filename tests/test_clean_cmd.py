"""`t5k clean IN... OUT`: raw pages -> cleaned JSON lines per split, a per-rule report."""

import json
import stat

import pytest

from t5kernel.cli import main

ENGLISH = [
    "The committee met on Tuesday to discuss the new budget for the city library.",
    "Several members argued that the reading rooms needed better lighting and more seats.",
    "After a long debate, they agreed to fund the repairs before the end of the year.",
    "The librarian thanked everyone for their support and invited them to the reopening.",
]
OTHER = [
    "A small bakery opened last month on the corner of the main square downtown.",
    "Its owners bake fresh bread every morning and sell out before noon most days.",
    "Neighbours say the smell of cinnamon rolls now fills the whole street at dawn.",
    "The bakery plans to add a few tables so that customers can sit and have coffee.",
]


def _page(url, lines):
    return json.dumps({"url": url, "text": "\n".join(lines), "timestamp": "2019-04-20"})


@pytest.fixture()
def raw(tmp_path):
    path = tmp_path / "raw.jsonl"
    path.write_text("\n".join([
        _page("https://www.example.com/library", [*ENGLISH, "Home | About", "Share this"]),
        _page("http://example.com/library/", ENGLISH),  # the same normalised URL
        _page("https://example.org/lorem", [*OTHER, "Lorem ipsum dolor sit amet, consectetur."]),
        "{not json",
    ]) + "\n")
    return path


def test_clean_writes_splits_and_the_report(raw, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["clean", str(raw), str(out), "cleaning.badwords=false"]) == 0
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    validation = (out / "validation.jsonl").read_text().splitlines()
    assert len(train) + len(validation) == 1
    page = train[0]
    assert list(page) == ["text", "timestamp", "url"]
    assert page["text"] == "\n".join(ENGLISH)  # menu lines without punctuation removed
    summary = json.loads((out / "report.json").read_text())
    report = summary["report"]
    assert report["pages_in"] == 3 and report["pages_out"] == 1
    assert report["pages_removed:url_duplicate"] == 1
    assert report["pages_removed:lorem_ipsum"] == 1
    assert report["lines_removed:terminal_punctuation"] == 2
    assert report["skipped:malformed_json"] == 1
    assert summary["documents"] == {"train": 1, "validation": 0}
    assert "pages_removed:lorem_ipsum" in capsys.readouterr().out
    assert stat.S_IMODE((out / "train.jsonl").stat().st_mode) & 0o044  # not a 0600 temp file


def test_rules_can_be_switched_off(raw, tmp_path):
    out = tmp_path / "out"
    assert main(["clean", str(raw), str(out), "--quiet", "cleaning.badwords=false",
                 "cleaning.lorem_ipsum=false", "cleaning.terminal_punctuation=false",
                 "cleaning.min_words_per_line=0"]) == 0
    report = json.loads((out / "report.json").read_text())["report"]
    assert report["pages_out"] == 2 and "pages_removed:lorem_ipsum" not in report
    texts = [json.loads(x)["text"] for split in ("train", "validation")
             for x in (out / f"{split}.jsonl").read_text().splitlines()]
    assert any(t.endswith("Lorem ipsum dolor sit amet, consectetur.") for t in texts)
    assert any(t.endswith("Share this") for t in texts)  # no line rule removed it


def test_clean_refuses_to_overwrite_and_names_bad_input(raw, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["clean", str(raw), str(out), "--quiet", "cleaning.badwords=false"]) == 0
    before = (out / "train.jsonl").read_bytes()
    assert main(["clean", str(raw), str(out), "--quiet", "cleaning.badwords=false"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "train.jsonl").read_bytes() == before
    assert main(["clean", str(raw), str(tmp_path / "o2"), "--corpus", "text_files"]) == 2
    err = capsys.readouterr().err
    assert "does not build from raw web pages" in err and "c4_unfiltered" in err
    assert main(["clean", str(tmp_path / "missing.wet"), str(tmp_path / "o3")]) == 2
    assert "missing.wet" in capsys.readouterr().err
    assert main(["clean", str(tmp_path / "o4")]) == 2
    assert "at least one input" in capsys.readouterr().err
    (tmp_path / "o5").write_text("")
    assert main(["clean", str(raw), str(tmp_path / "o5"), "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err
    (out / "report.json").unlink()  # as an interrupted clean leaves it
    assert main(["clean", str(raw), str(out), "--quiet", "cleaning.badwords=false"]) == 2
    assert "did not finish" in capsys.readouterr().err


def test_an_interrupted_command_says_what_it_left(raw, tmp_path, capsys, monkeypatch):
    from t5kernel import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_clean", interrupted)
    assert main(["clean", str(raw), str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert "output folder is unfinished" in err and "resume=true" not in err


def test_paths_with_an_equals_sign_are_paths(raw, tmp_path, monkeypatch):
    """Partitioned data folders are named ``crawl=...``: such paths are inputs, while
    ``key=value`` with a dotted key stays an option."""
    part = tmp_path / "crawl=CC-MAIN-2019-18"
    part.mkdir()
    (part / "raw.jsonl").write_text(raw.read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["clean", "crawl=CC-MAIN-2019-18/raw.jsonl", "crawl=CC-MAIN-2019-18",
                 "out", "cleaning.badwords=false"]) == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["report"]["pages_in"] == 6


def test_a_clean_that_fails_before_writing_leaves_no_empty_folder(raw, tmp_path, capsys,
                                                                   monkeypatch):
    """A failure while reading (the bad-words list not fetchable offline, say) removes
    the output folder it made when nothing was written there; a folder that existed
    before is kept."""
    from t5kernel import clean
    from t5kernel.errors import DataError

    def offline(path, examples):
        next(iter(examples))
        raise DataError("cannot fetch the bad-words list (offline)")

    monkeypatch.setattr(clean, "_write_jsonl", offline)
    out = tmp_path / "new" / "out"
    assert main(["clean", str(raw), str(out), "--quiet", "cleaning.badwords=false"]) == 2
    assert "offline" in capsys.readouterr().err
    assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    assert main(["clean", str(raw), str(mine), "--quiet", "cleaning.badwords=false"]) == 2
    assert mine.is_dir()
    monkeypatch.undo()
    assert main(["clean", str(raw), str(out), "--quiet", "cleaning.badwords=false"]) == 0
