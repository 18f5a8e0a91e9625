"""The Table 8 pre-training corpora (t5k_builtin.corpora.web) on local files; no network."""

from __future__ import annotations

import gzip
import json
import os
import warnings
from pathlib import Path

import pytest

from t5k_builtin.configs import (
    C4CleanConfig,
    C4Config,
    C4UnfilteredConfig,
    RealNewsLikeConfig,
    WebTextLikeConfig,
    WikipediaConfig,
    WikipediaTbcConfig,
)
from t5k_builtin.corpora import c4_clean, web
from t5k_builtin.corpora.web import (
    C4Corpus,
    C4UnfilteredCorpus,
    RealNewsLikeCorpus,
    WebTextLikeCorpus,
    WikipediaCorpus,
    WikipediaTbcCorpus,
)
from t5kernel.api import BuildContext, Corpus
from t5kernel.errors import ConfigError, DataError

#: the cleaner falls back to untrained Punkt when NLTK's data is absent (not this module's)
pytestmark = pytest.mark.filterwarnings("ignore:NLTK punkt English data:UserWarning")

C4_SAMPLE = Path("/work/shared/data/c4/c4-en-train.00000-of-01024.first1000.json")


def c4_doc(i: int, url: str | None = None) -> dict:
    return {"text": f"Document number {i} talks about things.",
            "timestamp": f"2019-04-{1 + i % 28:02d}T10:00:00Z",
            "url": url or f"https://site{i}.example.com/page/{i}"}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    lines = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(lines) if path.name.endswith(".gz") else lines)
    return path


def write_parquet(path: Path, records: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def shards(tmp_path: Path, sizes: list[int]) -> tuple[list[str], list[str]]:
    """C4-schema shards of the given sizes; (file names, all texts in order)."""
    files, texts, n = [], [], 0
    for k, size in enumerate(sizes):
        docs = [c4_doc(n + j) for j in range(size)]
        n += size
        files.append(str(write_jsonl(tmp_path / f"shard-{k:02d}.jsonl", docs)))
        texts += [d["text"] for d in docs]
    return files, texts


def texts(corpus, split: str = "train") -> list[str]:
    return [ex["text"] for ex in corpus.examples(split)]


def ctx(seed: int = 0, run_dir: Path | None = None) -> BuildContext:
    return BuildContext(seed=seed, run_dir=run_dir)


# ------------------------------------------------------------------------- local shards
def test_c4_reads_jsonl_gz_and_parquet_shards_in_order_with_hub_fields(tmp_path):
    docs = [c4_doc(i) for i in range(9)]
    files = [write_jsonl(tmp_path / "a.jsonl", docs[:3]),
             write_jsonl(tmp_path / "b.json.gz", docs[3:6]),
             write_parquet(tmp_path / "c.parquet", docs[6:])]
    valid = write_jsonl(tmp_path / "valid.jsonl.gz", [c4_doc(100)])
    corpus = C4Corpus(C4Config(data_files=[str(f) for f in files],
                               validation_files=[str(valid)]), ctx())
    assert isinstance(corpus, Corpus) and corpus.supervised is False
    assert corpus.splits == ("train", "validation") and corpus.source == "data_files"
    got = list(corpus.examples("train"))
    assert got == [{"text": d["text"], "url": d["url"], "timestamp": d["timestamp"]}
                   for d in docs]
    assert list(corpus.examples("train")) == got  # a second pass is identical
    assert texts(corpus, "validation") == [c4_doc(100)["text"]]
    assert corpus.num_examples("train") is None and not corpus.report
    assert web.shard_format(Path("x.JSONL.GZ"), web.SHARD_FORMATS) == "json"


def test_directory_and_glob_sources_and_bad_paths(tmp_path):
    files, expected = shards(tmp_path, [2, 3])
    assert texts(C4Corpus(C4Config(data_files=[str(tmp_path)]), ctx())) == expected
    assert texts(C4Corpus(C4Config(data_files=[str(tmp_path / "shard-*.jsonl")]), ctx())) \
        == expected
    with pytest.raises(DataError, match="does not exist"):
        C4Corpus(C4Config(data_files=[str(tmp_path / "nope.jsonl")]), ctx())
    (tmp_path / "x.csv").write_text("text\nhello\n")
    with pytest.raises(DataError, match="unsupported ending"):
        C4Corpus(C4Config(data_files=[str(tmp_path / "x.csv")]), ctx())
    corpus = C4Corpus(C4Config(data_files=files), ctx())
    with pytest.raises(DataError, match="no split 'validation'.*validation_files"):
        corpus.dataset("validation")


@pytest.mark.skipif(not C4_SAMPLE.is_file(), reason="shared C4 sample absent")
def test_the_shared_c4_sample_reads_as_data_files():
    corpus = C4Corpus(C4Config(data_files=[str(C4_SAMPLE)]), ctx())
    docs = list(corpus.examples("train"))
    assert len(docs) == 1000
    assert docs[0]["text"].startswith("Beginners BBQ Class Taking Place in Missoula!")
    assert docs[0]["url"] == "https://klyq.com/beginners-bbq-class-taking-place-in-missoula/"
    assert not corpus.report


# ------------------------------------------------------------------- tolerant reader
def test_tolerant_reader_counts_and_skips_bad_records_and_strict_raises(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = [json.dumps(c4_doc(i)).encode() for i in range(2)]
    path.write_bytes(b"\n".join([
        good[0],
        b'{"text": "cut off',                      # malformed JSON
        b'{"text": "caf\xe9 au lait", "url": "u"}',  # Latin-1 byte, not UTF-8
        b'{"url": "https://x.org", "timestamp": "t"}',  # no text
        b'{"text": "   ", "url": "https://y.org"}',  # empty text
        b"[1, 2]",                                  # not an object
        b'{"text": "\\ud800 lone surrogate"}',      # not encodable as UTF-8
        b"",
        good[1],
    ]) + b"\n")
    corpus = C4Corpus(C4Config(data_files=[str(path)]), ctx())
    # each reason's first record says what was wrong with it (which field is missing)
    with pytest.warns(UserWarning, match=r"bad.jsonl: skipped records: 1 empty, "
                      r"2 malformed_json \(first: record 2: .*\), 1 missing_field \(first: "
                      r"record 4: record lacks a string 'text' \(set text_field\)\), "
                      r"2 not_utf8 \(first: record 3: .*\)"):
        got = texts(corpus)
    assert got == [c4_doc(0)["text"], c4_doc(1)["text"]]
    report = corpus.report
    assert report == {"skipped:malformed_json": 2, "skipped:not_utf8": 2,
                      "skipped:missing_field": 1, "skipped:empty": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        texts(corpus)
    assert corpus.report == report  # counts of the latest pass, not accumulated

    strict = C4Corpus(C4Config(data_files=[str(path)], strict=True), ctx())
    with pytest.raises(DataError, match=r"bad.jsonl:2: malformed JSON.*strict"):
        texts(strict)
    wrong_field = C4Corpus(C4Config(data_files=[str(path)], text_field="body", strict=True), ctx())
    with pytest.raises(DataError, match=r"bad.jsonl:1: record lacks a string 'body'"):
        texts(wrong_field)


def test_corrupt_gzip_json_array_and_parquet_without_the_field(tmp_path):
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(b'{"text": "a whole line"}\n' * 50)[:40])
    ok = write_jsonl(tmp_path / "ok.jsonl", [c4_doc(1)])
    corpus = C4Corpus(C4Config(data_files=[str(broken), str(ok)]), ctx())
    with pytest.warns(UserWarning, match="corrupt_file"):
        assert texts(corpus)[-1] == c4_doc(1)["text"]
    assert corpus.report["skipped:corrupt_file"] == 1
    with pytest.raises(DataError, match="cannot be read"):
        texts(C4Corpus(C4Config(data_files=[str(broken)], strict=True), ctx()))

    array = tmp_path / "array.json"
    array.write_text(json.dumps([c4_doc(0), c4_doc(1)], indent=1))
    with pytest.raises(DataError, match="JSON array"):
        texts(C4Corpus(C4Config(data_files=[str(array)]), ctx()))

    pq = write_parquet(tmp_path / "nofield.parquet", [{"body": "x", "url": "u"}])
    with pytest.raises(DataError, match="no column 'text'.*set text_field"):
        texts(C4Corpus(C4Config(data_files=[str(pq)]), ctx()))
    renamed = C4Corpus(C4Config(data_files=[str(pq)], text_field="body"), ctx())
    assert list(renamed.examples("train")) == [{"text": "x", "url": "u", "timestamp": None}]


# ------------------------------------------------------------- shuffle and sharding
def test_shuffle_buffer_is_seeded_deterministic_and_a_permutation(tmp_path):
    files, expected = shards(tmp_path, [10, 10, 10])

    def run(seed):
        return texts(C4Corpus(C4Config(data_files=files, shuffle_buffer=8), ctx(seed)))

    first = run(1)
    assert first == run(1)
    assert sorted(first) == sorted(expected) and first != expected
    assert run(2) != first


@pytest.mark.parametrize("sizes", [[3, 2, 2], [3, 2, 2, 2]], ids=["3files-7docs", "4files-9docs"])
@pytest.mark.parametrize("buffer", [0, 4])
def test_two_ranks_read_disjoint_and_complete_shares(tmp_path, sizes, buffer):
    files, expected = shards(tmp_path, sizes)
    parts = [texts(C4Corpus(C4Config(data_files=files, shuffle_buffer=buffer, rank=r,
                                     world_size=2), ctx(5))) for r in range(2)]
    assert all(parts) and not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(expected)
    assert len(parts[0] + parts[1]) == len(expected)


def test_the_launchers_rank_does_not_shard_the_corpus(tmp_path, monkeypatch):
    """Under torchrun every process of a run reads the whole stream (the run loop splits
    each global batch): the default and a legacy -1 read all documents whatever RANK /
    WORLD_SIZE say, and an explicit shard is refused in a multi-process launch."""
    from omegaconf import OmegaConf

    files, expected = shards(tmp_path, [2, 1])
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for config in (C4Config(data_files=files), C4Config(data_files=files, rank=-1,
                                                         world_size=-1)):
        corpus = C4Corpus(config, ctx())
        assert (corpus.rank, corpus.world_size) == (0, 1)
        assert sorted(texts(corpus)) == sorted(expected)
    run = OmegaConf.create({})
    C4Config(data_files=files).check_run(run)
    with pytest.raises(ConfigError, match="corpus.world_size=2 under a 2-process launch"):
        C4Config(data_files=files, rank=1, world_size=2).check_run(run)
    monkeypatch.setenv("WORLD_SIZE", "1")  # separate jobs over shards: allowed
    C4Config(data_files=files, rank=1, world_size=2).check_run(run)
    assert web.resolve_rank(-1, -1, "c4") == (0, 1)


# ----------------------------------------------------------------------- config errors
def unchecked(config_cls, **options):
    """A config with ``options`` set after construction, past its ``__post_init__`` range
    checks, so that the plugin's own checks are what a test exercises."""
    config = config_cls()
    for key, value in options.items():
        setattr(config, key, value)
    return config


def test_config_errors(tmp_path):
    files, _ = shards(tmp_path, [1])
    with pytest.raises(ConfigError, match="domain_to_allowed_subdomains.json"):
        RealNewsLikeCorpus(RealNewsLikeConfig(data_files=files), ctx())
    with pytest.raises(ConfigError, match="domain_to_allowed_subdomains.json"):
        RealNewsLikeCorpus(RealNewsLikeConfig(raw_files=files), ctx())
    with pytest.raises(DataError, match="domains_path"):
        RealNewsLikeCorpus(RealNewsLikeConfig(data_files=files,
                                              domains_path=str(tmp_path / "no.json")), ctx())
    for config in (WebTextLikeConfig(data_files=files), WebTextLikeConfig()):
        with pytest.raises(ConfigError, match="urls_path.*OpenWebText"):
            WebTextLikeCorpus(config, ctx())
    with pytest.raises(ConfigError, match="rank=2, world_size=2"):
        C4Corpus(unchecked(C4Config, data_files=files, rank=2, world_size=2), ctx())
    with pytest.raises(ConfigError, match="world_size >= 1"):
        C4Corpus(unchecked(C4Config, data_files=files, rank=0, world_size=0), ctx())
    with pytest.raises(ConfigError, match="shuffle_buffer=-1"):
        C4Corpus(unchecked(C4Config, data_files=files, shuffle_buffer=-1), ctx())
    with pytest.raises(ConfigError, match="validation_files need data_files"):
        C4Corpus(C4Config(validation_files=files), ctx())
    with pytest.raises(ConfigError, match="tbc_probability=1.5"):
        WikipediaTbcCorpus(unchecked(WikipediaTbcConfig, data_files=files, tbc_probability=1.5),
                           ctx())


# ------------------------------------------------------------------------------ hub
def test_local_reads_are_offline_and_restore_the_users_setting(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    cache = datasets.config.HF_DATASETS_CACHE
    with web.quiet_datasets(True, "/tmp/somewhere") as ds:
        assert ds.config.HF_HUB_OFFLINE and os.environ["HF_DATASETS_OFFLINE"] == "1"
        assert ds.config.HF_DATASETS_CACHE == Path("/tmp/somewhere")
        assert not ds.is_progress_bar_enabled()
    assert datasets.config.HF_HUB_OFFLINE is False and "HF_DATASETS_OFFLINE" not in os.environ
    assert datasets.config.HF_DATASETS_CACHE == cache
    with web.quiet_datasets(False) as ds:
        assert ds.config.HF_HUB_OFFLINE is False


def test_hub_arguments_per_plugin_and_nothing_loads_at_construction():
    c4 = C4Corpus(C4Config(), ctx())
    assert c4.source == "hub" and c4.splits == ("train", "validation")
    assert c4.hub_arguments("train") == {"path": "allenai/c4", "name": "en", "revision": None,
                                         "streaming": True, "split": "train"}
    assert C4UnfilteredCorpus(C4UnfilteredConfig(), ctx()).hub_arguments("validation")[
        "name"] == "en.noclean"
    assert RealNewsLikeCorpus(RealNewsLikeConfig(), ctx()).hub_arguments("train")[
        "name"] == "realnewslike"
    wiki = WikipediaCorpus(WikipediaConfig(revision="abc", streaming=False), ctx())
    assert wiki.splits == ("train",)
    assert wiki.hub_arguments("train") == {"path": "wikimedia/wikipedia", "name": "20231101.en",
                                           "revision": "abc", "streaming": False,
                                           "split": "train"}
    tbc = WikipediaTbcCorpus(WikipediaTbcConfig(), ctx())
    assert tbc.tbc_hub_arguments() == {"path": "bookcorpus/bookcorpus", "name": None,
                                       "streaming": True, "split": "train"}


@pytest.mark.parametrize("streaming", [True, False])
def test_hub_rows_are_projected_to_the_schema(monkeypatch, streaming):
    import datasets

    calls = []

    def fake_load_dataset(**kwargs):
        calls.append(kwargs)
        ds = datasets.Dataset.from_dict({
            "body": ["first page text.", "", "second page text."],
            "url": ["https://a.org/1", "https://a.org/2", "https://a.org/3"],
            "timestamp": ["t1", "t2", "t3"], "extra": [1, 2, 3]})
        return ds.to_iterable_dataset() if kwargs["streaming"] else ds

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    corpus = C4Corpus(C4Config(text_field="body", streaming=streaming, hub_name="en"), ctx())
    assert list(corpus.examples("validation")) == [
        {"text": "first page text.", "url": "https://a.org/1", "timestamp": "t1"},
        {"text": "second page text.", "url": "https://a.org/3", "timestamp": "t3"}]
    assert calls == [corpus.hub_arguments("validation")]
    assert corpus.report == {"skipped:empty": 1}


def test_hub_failure_is_one_clear_data_error(monkeypatch):
    import datasets

    def offline(**kwargs):
        raise ConnectionError("Couldn't reach 'allenai/c4' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="cannot load hub dataset 'allenai/c4'.*data_files"):
        texts(C4Corpus(C4Config(), ctx()))


# ------------------------------------------------------------------ the other plugins
def test_c4_unfiltered_reads_local_shards(tmp_path):
    files, expected = shards(tmp_path, [2, 1])
    corpus = C4UnfilteredCorpus(C4UnfilteredConfig(data_files=files), ctx())
    assert texts(corpus) == expected


def test_realnews_like_keeps_grover_domains_from_local_shards(tmp_path):
    domains = tmp_path / "domain_to_allowed_subdomains.json"
    domains.write_text(json.dumps({"nytimes.com": True, "bbc.co.uk": ["www"]}))
    urls = ["https://www.nytimes.com/2019/a.html", "https://news.bbc.co.uk/x",
            "https://www.bbc.co.uk/y", "https://example.com/z"]
    data = write_parquet(tmp_path / "c4.parquet", [c4_doc(i, u) for i, u in enumerate(urls)])
    corpus = RealNewsLikeCorpus(RealNewsLikeConfig(data_files=[str(data)],
                                                   domains_path=str(domains)), ctx())
    assert [ex["url"] for ex in corpus.examples("train")] == [urls[0], urls[2]]
    assert corpus.report["pages_removed:domain"] == 2


def test_webtext_like_keeps_listed_urls_with_enough_score(tmp_path):
    listing = tmp_path / "urls.txt"
    listing.write_text("https://www.nytimes.com/a/\t5\nhttp://example.com/low\t1\n"
                       "example.org/q\n")
    urls = ["http://nytimes.com/a", "https://example.com/low", "https://www.example.org/q",
            "https://elsewhere.net/"]
    data = write_jsonl(tmp_path / "c4.jsonl.gz", [c4_doc(i, u) for i, u in enumerate(urls)])
    corpus = WebTextLikeCorpus(WebTextLikeConfig(data_files=[str(data)],
                                                 urls_path=str(listing)), ctx())
    assert [ex["url"] for ex in corpus.examples("train")] == [urls[0], urls[2]]
    assert corpus.report["pages_removed:url_list"] == 2


def wiki_docs(n: int) -> list[dict]:
    return [{"id": str(i), "url": f"https://en.wikipedia.org/wiki?curid={i}",
             "title": f"Article {i}", "text": f"Article {i} is about topic {i}."}
            for i in range(n)]


def test_wikipedia_reads_the_hub_schema(tmp_path):
    docs = wiki_docs(4)
    data = write_jsonl(tmp_path / "wiki.jsonl", docs)
    corpus = WikipediaCorpus(WikipediaConfig(data_files=[str(data)]), ctx())
    assert list(corpus.examples("train")) == docs
    assert corpus.splits == ("train",)


def test_wikipedia_tbc_interleaves_both_sources_seeded(tmp_path):
    wiki = write_jsonl(tmp_path / "wiki.jsonl", wiki_docs(20))
    tbc = tmp_path / "books.txt"
    tbc.write_text("".join(f"Book sentence {i} ends here.\n" + ("\n" if i == 3 else "")
                           for i in range(20)))

    def run(seed, p=0.5):
        config = WikipediaTbcConfig(data_files=[str(wiki)], tbc_files=[str(tbc)],
                                    tbc_probability=p)
        return WikipediaTbcCorpus(config, ctx(seed))

    corpus = run(7)
    with pytest.warns(UserWarning, match="books.txt: skipped records: 1 empty"):
        got = list(corpus.examples("train"))
    assert all(set(ex) == {"text"} for ex in got)
    seen = {ex["text"] for ex in got}
    assert {d["text"] for d in wiki_docs(20)} <= seen  # all_exhausted: every document read
    assert {f"Book sentence {i} ends here." for i in range(20)} <= seen
    warnings.simplefilter("ignore")  # (pytest restores the filters after the test)
    assert texts(corpus) == [ex["text"] for ex in got]
    assert texts(run(7)) == texts(corpus)
    assert texts(run(8)) != texts(corpus)
    # the .txt file's blank line, once although all_exhausted restarted the shorter source
    assert corpus.report == {"skipped:empty": 1}
    assert texts(run(7, p=0.0)) == [d["text"] for d in wiki_docs(20)]
    assert texts(run(7, p=1.0)) == [f"Book sentence {i} ends here." for i in range(20)]


# ------------------------------------------------------------------------ raw pages
TOWNS = ["Millbrook", "Ashford", "Cedar Falls", "Riverton", "Oakdale", "Pinehurst", "Westfield"]


def english_page(town: str) -> str:
    return "\n".join([
        f"The old library in {town} opened its doors again after a long winter of repairs.",
        f"Families from {town} walked along the river and talked about the new bridge.",
        f"Teachers said that the children of {town} were reading more books than ever before.",
        f"Every Saturday morning the farmers of {town} bring fresh apples and warm bread.",
        "Menu",
    ])


def validation_url() -> str:
    return next(u for u in (f"https://news.example.com/story/{i}" for i in range(100_000))
                if c4_clean.is_validation_url(u))


def raw_pages_file(tmp_path: Path) -> tuple[Path, list[str], str]:
    valid = validation_url()
    pages = [{"url": f"https://www.{t.lower().replace(' ', '')}.com/news", "text": english_page(t),
              "timestamp": "2019-04-20T00:00:00Z"} for t in TOWNS[:4]]
    pages.append({"url": valid, "text": english_page(TOWNS[4]), "timestamp": "t"})
    pages.append({"url": "https://lorem.com/", "timestamp": "t",
                  "text": english_page(TOWNS[5]) + "\nLorem ipsum dolor sit amet, consectetur."})
    pages.append({"url": pages[0]["url"] + "/", "text": english_page(TOWNS[6]),
                  "timestamp": "t"})  # the same normalized URL as page 0
    pages.append({"url": "https://de.example.com/", "timestamp": "t", "text": "\n".join([
        "Die alte Bibliothek der Stadt hat nach einem langen Winter wieder geöffnet.",
        "Familien spazierten am Fluss entlang und sprachen über die neue Brücke.",
        "Die Lehrer sagten, dass die Kinder mehr Bücher lesen als jemals zuvor."])})
    path = write_jsonl(tmp_path / "raw.jsonl", pages)
    train_urls = [p["url"] for p in pages[:4]]
    return path, train_urls, valid


def test_raw_files_are_cleaned_split_by_url_hash_and_cached(tmp_path, monkeypatch):
    path, train_urls, valid = raw_pages_file(tmp_path)
    config = C4Config(raw_files=[str(path)], cleaning=C4CleanConfig(badwords=False))
    corpus = C4Corpus(config, ctx(run_dir=tmp_path / "run"))
    assert corpus.splits == ("train", "validation") and corpus.source == "raw_files"
    train = list(corpus.examples("train"))
    assert [ex["url"] for ex in train] == train_urls
    assert train[0]["text"] == "\n".join(english_page(TOWNS[0]).split("\n")[:4])
    assert [ex["url"] for ex in corpus.examples("validation")] == [valid]
    assert corpus.num_examples("train") == 4 and corpus.num_examples("validation") == 1
    report = corpus.report
    assert report["read:pages"] == 8 and report["pages_out"] == 5
    assert report["pages_removed:lorem_ipsum"] == 1
    assert report["pages_removed:url_duplicate"] == 1
    assert report["pages_removed:language"] == 1
    assert report["lines_removed:terminal_punctuation"] >= 5

    # a second corpus on the same run directory reads the cleaned pages from the cache
    def no_cleaning(self, pages):
        raise AssertionError("cleaned again")

    monkeypatch.setattr(c4_clean.C4Cleaner, "pages", no_cleaning)
    again = C4Corpus(config, ctx(run_dir=tmp_path / "run"))
    assert list(again.examples("train")) == train and again.report == report
    ranks = [C4Corpus(C4Config(raw_files=[str(path)], cleaning=C4CleanConfig(badwords=False),
                               rank=r, world_size=2), ctx(run_dir=tmp_path / "run"))
             for r in range(2)]
    assert [c.num_examples("train") for c in ranks] == [2, 2]
    assert sorted(t for c in ranks for t in texts(c)) == sorted(ex["text"] for ex in train)


def test_raw_files_for_the_filtered_variants(tmp_path):
    path, train_urls, _ = raw_pages_file(tmp_path)
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{train_urls[1]}\t7\n{train_urls[2]}\t2\n")
    webtext = WebTextLikeCorpus(WebTextLikeConfig(
        raw_files=[str(path)], urls_path=str(listing),
        cleaning=C4CleanConfig(badwords=False)), ctx())
    assert [ex["url"] for ex in webtext.examples("train")] == [train_urls[1]]
    domains = tmp_path / "domains.json"
    domains.write_text(json.dumps({"ashford.com": True, "riverton.com": ["news"]}))
    realnews = RealNewsLikeCorpus(RealNewsLikeConfig(
        raw_files=[str(path)], domains_path=str(domains),
        cleaning=C4CleanConfig(badwords=False)), ctx())
    assert [ex["url"] for ex in realnews.examples("train")] == [train_urls[1]]
    assert realnews.report["pages_removed:domain"] == 7
    unfiltered = C4UnfilteredCorpus(C4UnfilteredConfig(raw_files=[str(path)]), ctx())
    got = list(unfiltered.examples("train")) + list(unfiltered.examples("validation"))
    # no clean/dedupe: the lorem ipsum page stays, "Menu" lines stay; URL dedupe and
    # language id still apply
    assert len(got) == 6 and all(ex["text"].endswith("Menu") or "Lorem" in ex["text"]
                                 for ex in got)


def test_wikipedia_raw_files_are_read_without_the_c4_rules(tmp_path):
    """TFDS wikipedia filters nothing: no language id (the German page stays), no URL
    dedupe, no length limit, no line or page heuristics (the lorem ipsum page stays)."""
    path, _, _ = raw_pages_file(tmp_path)
    corpus = WikipediaCorpus(WikipediaConfig(raw_files=[str(path)]), ctx())
    got = list(corpus.examples("train")) + list(corpus.examples("validation"))
    pages = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(ex["text"] for ex in got) == sorted(p["text"] for p in pages)
    assert not any(k.startswith(("pages_removed", "lines_removed")) and v
                   for k, v in corpus.report.items())
