"""C4 cleaning (facts §4.2-4.3): readers, every heuristic and switch, dedupe, filters, report."""

from __future__ import annotations

import collections
import gzip
import hashlib
import io
import json
import os
import shutil
import warnings
from pathlib import Path

import pytest

from t5k_builtin.configs import C4CleanConfig
from t5k_builtin.corpora import c4_clean
from t5k_builtin.corpora.c4_clean import (
    C4Cleaner,
    detect_langs,
    is_validation_url,
    load_badwords,
    normalize_url,
)
from t5k_builtin.corpora.raw_pages import read_raw_pages, resolve_files
from t5kernel.errors import ConfigError, DataError

BADWORDS = Path(__file__).resolve().parent / "data" / "badwords_tiny.txt"
SHARED = Path(os.environ.get("T5K_SHARED_DATA", "/work/shared/data"))
RAW_WEB = SHARED / "raw_web"
C4_SAMPLE = SHARED / "c4" / "c4-en-train.00000-of-01024.first1000.json"
needs_raw_web = pytest.mark.skipif(not RAW_WEB.is_dir(), reason="shared raw_web data absent")
needs_c4 = pytest.mark.skipif(not C4_SAMPLE.is_file(), reason="shared C4 sample absent")

GOOD = [
    "The quick brown fox jumps over the lazy dog.",
    "A second line has enough words to stay here.",
    "Finally a third sentence closes this small page.",
]


def cfg(**kw) -> C4CleanConfig:
    kw.setdefault("badwords_path", str(BADWORDS))
    return C4CleanConfig(**kw)


def page_with(*extra: str) -> str:
    return "\n".join([*GOOD, *extra])


def cleaned(text: str, **kw) -> str | None:
    return C4Cleaner(cfg(**kw)).clean_page(text)


@pytest.fixture(autouse=True)
def _quiet_punkt_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="NLTK punkt")
        yield


# ------------------------------------------------------------------------------ URLs
@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://www.example.com/path/", "example.com/path"),
        ("https://example.com/a?utm_source=x&b=2", "example.com/a"),
        ("https://example.com/a?ref=home", "example.com/a"),
        ("https://example.com/a?feed=rss//", "example.com/a"),
        ("https://example.com/a?id=3", "example.com/a?id=3"),
        ("https://example.com/a?id=3&utm_source=x", "example.com/a?id=3&utm_source=x"),
        ("http://a.com/go/https://www.b.com/", "a.com/go/b.com"),  # unanchored re.sub
        ("ftp://www.example.com///", "ftp://www.example.com"),
    ],
)
def test_normalize_url(url, expected):
    assert normalize_url(url) == expected


def test_validation_split_hashing_matches_tfds_fixture_urls():
    # TFDS's fake WET pages "370", "de-786" and "und-27" were written to land in validation
    for suffix in ("370", "de-786", "und-27"):
        url = f"http://fake.com/url/{suffix}"
        assert is_validation_url(url)
        assert int(hashlib.md5(f"fake.com/url/{suffix}".encode()).hexdigest(), 16) % 1000 == 0
    for suffix in ("1", "2", "4", "de", "und"):
        assert not is_validation_url(f"http://fake.com/url/{suffix}")
    share = sum(is_validation_url(f"https://site{i}.org/p") for i in range(20000)) / 20000
    assert 0.0003 < share < 0.002


# ------------------------------------------------------------------------------ clean_page
def test_good_page_survives_unchanged():
    assert cleaned(page_with()) == "\n".join(GOOD)
    assert cleaned("  " + GOOD[0] + "  \r\n\n" + "\n".join(GOOD[1:])) == "\n".join(GOOD)


def test_max_word_length():
    line = "x" * 1001 + " makes this line go away."
    assert cleaned(page_with(line)) == "\n".join(GOOD)
    assert line in cleaned(page_with(line), max_word_length=0)
    assert line in cleaned(page_with(line), max_word_length=1001)


def test_citations_removed_before_end_mark_test():
    text = page_with(
        "A line with a citation marker here.[1]",
        "Wiki section heading text goes on here.[edit]",
        "A claim that surely needs a source.[citation needed]",
        "Space before the marker kills this line. [2]",
    )
    c = C4Cleaner(cfg())
    out = c.clean_page(text).split("\n")
    assert out[3:] == [
        "A line with a citation marker here.",
        "Wiki section heading text goes on here.",
        "A claim that surely needs a source.",
    ]
    assert c.report["markers_removed:remove_citations"] == 4
    assert c.report["lines_removed:terminal_punctuation"] == 1
    assert cleaned(text, remove_citations=False) == "\n".join(GOOD)


def test_terminal_punctuation():
    text = page_with(
        "This line has no end mark at all",
        "Trailing ellipsis is not allowed here...",
        'He said "this is quoted text"',
        "Two dots are still fine by the rule..",
        "Is a question also fine for this rule?",
    )
    out = cleaned(text).split("\n")
    assert out[3:] == [
        'He said "this is quoted text"',
        "Two dots are still fine by the rule..",
        "Is a question also fine for this rule?",
    ]
    off = cleaned(text, terminal_punctuation=False).split("\n")
    assert "This line has no end mark at all" in off
    assert "Trailing ellipsis is not allowed here..." in off


def test_min_words_per_line():
    text = page_with("Too short line.", "Exactly five words here now.")
    out = cleaned(text).split("\n")
    assert "Too short line." not in out and "Exactly five words here now." in out
    assert "Too short line." in cleaned(text, min_words_per_line=0)


def test_lorem_ipsum_drops_page():
    text = page_with("Lorem ipsum dolor sit amet, consectetur.")
    c = C4Cleaner(cfg())
    assert c.clean_page(text) is None
    assert c.report["pages_removed:lorem_ipsum"] == 1
    assert "Lorem ipsum" in cleaned(text, lorem_ipsum=False)


def test_javascript_line():
    text = page_with("Please enable JavaScript to view this page.")
    assert cleaned(text) == "\n".join(GOOD)
    assert "JavaScript" in cleaned(text, javascript=False)


def test_curly_brace_drops_page():
    text = page_with("The function body is { return x; } here.")
    assert cleaned(text) is None
    assert "{" in cleaned(text, curly_brace=False)


def test_policy_lines():
    lines = [
        "Read our privacy policy before you continue.",
        "This website uses cookies to improve things.",
        "By using it you accept the terms of use.",
    ]
    assert cleaned(page_with(*lines)) == "\n".join(GOOD)
    assert cleaned(page_with(*lines), policy=False).split("\n")[3:] == lines


def test_badwords_flanking_of_pinned_c4_utils():
    # [^a-z](word)[^a-z] on the lowercased line: needs a non-letter on BOTH sides
    drop = [
        'What is the badword? It is "butt".',
        "Some say BUTT loudly in this line.",
        "Bon appébutt, said the chef today.",  # "é" is not in [a-z]
        "This darn phrase counts as a bad phrase.",
    ]
    keep = [
        "Nobody builds a buttress like this one.",
        "butt at the very start is not matched.",
        "At the very end it is not matched: butt",
        "A darn good phrase is not the bad phrase.",
    ]
    for line in drop:
        c = C4Cleaner(cfg())
        assert c.clean_page(page_with(line)) is None, line
        assert c.report["pages_removed:badwords"] == 1
        assert cleaned(page_with(line), badwords=False) is not None
    for line in keep:
        assert cleaned(page_with(line), terminal_punctuation=False) is not None, line
    # the later TFDS rule (\W / start / end): "appébutt" is one word, line starts count
    assert cleaned(page_with(drop[2]), badwords_flanking="word") is not None
    assert cleaned(page_with(keep[1]), badwords_flanking="word",
                   terminal_punctuation=False) is None


def test_trie_regex_equals_plain_alternation_and_word_flanking():
    import random
    import re

    words = ["butt", "butts", "but t", "s&m", "g-spot", "2g1c", "darn phrase", "darn", "xx",
             "xxx", "tit"]
    plain = re.compile("[^a-z]({})[^a-z]".format("|".join(map(re.escape, words))))
    trie = c4_clean.badwords_regex(words)
    rng = random.Random(0)
    alphabet = list("abstux -&2g1é!.") + words
    for _ in range(3000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert bool(plain.search(line)) == bool(trie.search(line)), line
    word = c4_clean.badwords_regex(words, flanking="word")
    assert word.search("butt at the start") and not word.search("bon appétit!")
    assert not word.search("model 7xx here") and trie.search("model 7xx here")
    with pytest.raises(ConfigError):
        c4_clean.badwords_regex(words, flanking="none")


def test_min_sentences_per_page():
    two = "\n".join(GOOD[:2])
    c = C4Cleaner(cfg())
    assert c.clean_page(two) is None
    assert c.report["pages_removed:min_sentences_per_page"] == 1
    assert cleaned(two, min_sentences_per_page=2) == two
    assert cleaned(two, min_sentences_per_page=0) == two
    # sentences are counted inside lines too
    assert cleaned("One sentence is here. Two sentences are here. Three now.") is not None


def test_clean_false_returns_text_unchanged():
    text = "  {odd} lorem ipsum butt \n\nshort"
    assert cleaned(text, clean=False) == text


def test_report_counts_every_rule():
    text = page_with(
        "x" * 1001 + " is a very long word.",
        "A line with a citation marker here.[1]",
        "No end mark on this line at all",
        "Too short.",
        "Please enable JavaScript in your browser now.",
        "Read our privacy policy before you continue.",
    )
    c = C4Cleaner(cfg())
    assert c.clean_page(text) is not None
    assert dict(c.report) == {
        "lines_removed:max_word_length": 1,
        "markers_removed:remove_citations": 1,
        "lines_removed:terminal_punctuation": 1,
        "lines_removed:min_words_per_line": 1,
        "lines_removed:javascript": 1,
        "lines_removed:policy": 1,
    }


def test_bad_config_values():
    with pytest.raises(ConfigError, match="dedupe"):
        C4Cleaner(cfg(dedupe="paragraphs"))
    with pytest.raises(ConfigError, match="sentence_splitter"):
        C4Cleaner(cfg(sentence_splitter="spacy"))
    with pytest.raises(ConfigError, match="min_words_per_line"):
        C4Cleaner(cfg(min_words_per_line=-1))
    with pytest.raises(ConfigError, match="language_threshold"):
        C4Cleaner(cfg(language_threshold=1.5))


# ------------------------------------------------------------------------------ bad words list
def test_load_badwords_sources(tmp_path, monkeypatch):
    assert load_badwords(cfg(badwords=False)) is None
    assert load_badwords(cfg(clean=False)) is None
    assert load_badwords(cfg()) == ["butt", "darn phrase", "heckin"]
    with pytest.raises(DataError, match="nope.txt"):
        load_badwords(cfg(badwords_path=str(tmp_path / "nope.txt")))

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = []

    def fake_urlopen(url, timeout):
        calls.append((url, timeout))
        return io.BytesIO(b"Butt\n\nDarn Phrase\n")

    monkeypatch.setattr(c4_clean.urllib.request, "urlopen", fake_urlopen)
    unset = C4CleanConfig()
    assert load_badwords(unset) == ["butt", "darn phrase"]
    assert load_badwords(unset) == ["butt", "darn phrase"]  # second time from the cache
    assert len(calls) == 1 and c4_clean.BADWORDS_COMMIT in calls[0][0]
    assert calls[0][0].endswith("/en") and calls[0][1] <= 30
    assert list((tmp_path / "cache" / "t5kernel").iterdir())

    def offline(url, timeout):
        raise OSError("network unreachable")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(c4_clean.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="badwords_path"):
        load_badwords(unset)


# ------------------------------------------------------------------------------ pipeline
def pg(url: str, *lines: str, ts: str = "t") -> dict:
    return {"url": url, "text": "\n".join(lines), "timestamp": ts}


def test_length_and_url_dedupe_filters():
    pages = [
        pg("http://www.a.com/x/", *GOOD),
        pg("https://a.com/x?utm_source=t", *GOOD),
        pg("http://b.com/long", *GOOD, "y " * 200 + "end."),
    ]
    c = C4Cleaner(cfg(max_page_chars=500, dedupe="none", language=""))
    out = list(c.pages(pages))
    assert [p["url"] for p in out] == ["http://www.a.com/x/"]
    assert out[0] == {"url": "http://www.a.com/x/", "text": "\n".join(GOOD), "timestamp": "t"}
    assert c.report["pages_removed:url_duplicate"] == 1
    assert c.report["pages_removed:too_long"] == 1
    assert c.report["pages_in"] == 3 and c.report["pages_out"] == 1
    c = C4Cleaner(cfg(max_page_chars=0, url_dedupe=False, dedupe="none", language=""))
    assert len(list(c.pages(pages))) == 3


def test_language_filter():
    english = (
        "The committee met on Tuesday to discuss the new budget for the city library. "
        "Members agreed that more money should go to children's books and reading programs."
    )
    german = (
        "Der Ausschuss traf sich am Dienstag, um den neuen Haushalt der Stadtbibliothek zu "
        "besprechen. Die Mitglieder waren sich einig, dass mehr Geld in Kinderbücher fließen soll."
    )
    french = (
        "Le comité s'est réuni mardi pour discuter du nouveau budget de la bibliothèque "
        "municipale. Les membres ont convenu qu'il fallait plus d'argent pour les livres."
    )
    pages = [pg("u/en", english), pg("u/de", german), pg("u/fr", french), pg("u/x", "1234 !!")]
    plain = dict(clean=False, dedupe="none", badwords=False)
    c = C4Cleaner(cfg(**plain))
    assert [p["url"] for p in c.pages(pages)] == ["u/en"]
    assert c.report["pages_removed:language"] == 3
    assert c.report["language:undetectable"] == 1
    c = C4Cleaner(cfg(language="de", **plain))
    assert [p["url"] for p in c.pages(pages)] == ["u/de"]
    assert len(list(C4Cleaner(cfg(language="", **plain)).pages(pages))) == 4


def test_fast_langdetect_is_bit_identical_to_langdetect():
    import langdetect

    texts = [
        "The committee met on Tuesday to discuss the budget.",
        "ABC DEF ghi JKL mno. ABc DeF GHIjk lMNo PQ. rS",
        "Der Ausschuss traf sich am Dienstag. Ça va très bien, merci beaucoup.",
        "Xin chào thế giới Việt Nam. 日本語のテキストです。カタカナ. Привет мир",
        "http://x.com/a?b=1 mail@example.com   many    spaces\n\ttabs",
        "a" * 12000 + " tail beyond the ten thousand character limit",
    ]
    if C4_SAMPLE.is_file():
        with open(C4_SAMPLE, encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line, _ in zip(f, range(25), strict=False)]
    for text in texts:
        langdetect.DetectorFactory.seed = 0
        expected = [(x.lang, x.prob) for x in langdetect.detect_langs(text)]
        assert [(x.lang, x.prob) for x in detect_langs(text)] == expected


def test_domain_filter_realnewslike(tmp_path):
    path = tmp_path / "domains.json"
    path.write_text(json.dumps({"bbc.co.uk": ["www", "news"], "example.com": True}))
    domains = C4Cleaner.load_domains(path)
    urls = ["http://news.bbc.co.uk/a", "http://sport.bbc.co.uk/b", "http://bbc.co.uk/c",
            "https://blog.example.com/x", "http://other.org/y"]
    c = C4Cleaner(cfg(clean=False, dedupe="none", language=""), domains=domains)
    out = list(c.pages(pg(u, *GOOD) for u in urls))
    assert [p["url"] for p in out] == ["http://news.bbc.co.uk/a", "https://blog.example.com/x"]
    assert c.report["pages_removed:domain"] == 3

    with pytest.raises(DataError, match="does not exist"):
        C4Cleaner.load_domains(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"a.com": 3}')
    with pytest.raises(DataError, match="true or a list"):
        C4Cleaner.load_domains(tmp_path / "bad.json")


def test_url_list_filter_webtextlike(tmp_path):
    path = tmp_path / "urls.txt"
    path.write_text("http://www.a.com/x/\t5\nb.com/y\t1\nhttps://c.com/z\n\n")
    urls = C4Cleaner.load_urls(path, min_score=3)
    assert urls == {"a.com/x", "c.com/z"}
    c = C4Cleaner(cfg(clean=False, dedupe="none", language=""), urls=urls)
    pages = [pg(u, *GOOD) for u in ("https://a.com/x?ref=r", "http://b.com/y", "http://c.com/z/")]
    assert [p["url"] for p in c.pages(pages)] == ["https://a.com/x?ref=r", "http://c.com/z/"]
    assert c.report["pages_removed:url_list"] == 1
    (tmp_path / "bad.txt").write_text("a.com\tlots\n")
    with pytest.raises(DataError, match="bad.txt:1"):
        C4Cleaner.load_urls(tmp_path / "bad.txt", 3)


# ------------------------------------------------------------------------------ dedupe
S = [f"Sentence number {w} is written down right here." for w in
     ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")]


def test_line_dedupe_stream_first_kept_page_wins():
    pages = [
        pg("u1", S[0], S[1], S[2]),
        pg("u2", "  " + S[0].upper() + " ", S[3], S[4], S[5]),  # S[0] seen (case/space-blind)
        pg("u3", S[6], S[6], S[7], S[8]),  # repeat inside the page goes too
        pg("u4", S[1], S[2], S[9]),  # only one new sentence left -> dropped after dedupe
        pg("u5", S[9], S[3], S[5]),  # S[9] was not taken by the dropped u4
    ]
    c = C4Cleaner(cfg(language=""))
    out = {p["url"]: p["text"].split("\n") for p in c.pages(pages)}
    assert out == {
        "u1": S[0:3],
        "u2": S[3:6],
        "u3": [S[6], S[7], S[8]],
    }
    assert c.report["lines_removed:dedupe"] == 1 + 1 + 2 + 2
    assert c.report["pages_removed:too_few_sentences"] == 2
    # without clean the post-dedupe sentence check is off, as in the reference
    c = C4Cleaner(cfg(clean=False, language=""))
    out = {p["url"]: p["text"].split("\n") for p in c.pages(pages)}
    assert out["u4"] == [S[9]] and "u5" not in out  # u5 had only seen lines left
    assert c.report["pages_removed:empty_after_dedupe"] == 1


def test_dedupe_none_keeps_duplicates():
    pages = [pg("u1", *S[:3]), pg("u2", *S[:3])]
    assert len(list(C4Cleaner(cfg(dedupe="none", language="")).pages(pages))) == 2


def test_dedupe_reference_uses_smallest_url_hash_owner():
    urls = ["http://site-a.org/p", "http://site-b.org/p"]
    owner = min(urls, key=lambda u: hashlib.md5(normalize_url(u).encode()).hexdigest())
    other = next(u for u in urls if u != owner)
    for order in (urls, urls[::-1]):
        pages = [pg(u, S[0], *(S[1:4] if u == urls[0] else S[4:7])) for u in order]
        pages[0]["text"] += "\n" + S[0]  # a repeat inside the first page
        c = C4Cleaner(cfg(language=""))
        out = {p["url"]: p["text"].split("\n") for p in c.dedupe_reference(pages)}
        assert out[owner][0] == S[0] and out[owner].count(S[0]) == 1
        assert S[0] not in out[other]
        assert c.report["lines_removed:dedupe"] == 2
    c = C4Cleaner(cfg(language=""))
    assert [p["url"] for p in c.pages_reference([pg(u, *S[:3]) for u in urls])] == [owner]


def test_three_sentence_span_dedupe():
    first = pg("u1", f"{S[0]} {S[1]}", f"{S[2]} {S[3]}")
    second = pg("u2", f"{S[4]} {S[1]}", f"{S[2].upper()} {S[3]} {S[5]}", S[6])
    third = pg("u3", S[0], S[2], S[1], S[7])  # no window of three repeats
    c = C4Cleaner(cfg(dedupe="three_sentence_spans", language="", min_sentences_per_page=2))
    out = {p["url"]: p["text"].split("\n") for p in c.pages([first, second, third])}
    assert out["u1"] == first["text"].split("\n")
    # window (S1, S2, S3) was seen in u1: its three sentences go, the rest stays
    assert out["u2"] == [S[4], S[5], S[6]]
    assert out["u3"] == third["text"].split("\n")
    assert c.report["sentences_removed:dedupe"] == 3
    # a page reduced below min_sentences_per_page is dropped
    c = C4Cleaner(cfg(dedupe="three_sentence_spans", language=""))
    kept = [p["url"] for p in c.pages([pg("a", *S[:3]), pg("b", *S[:3], S[9])])]
    assert kept == ["a"] and c.report["pages_removed:too_few_sentences"] == 1


# ------------------------------------------------------------------------------ readers
@needs_raw_web
def test_read_real_and_synthetic_wet_files():
    rep = collections.Counter()
    pages = list(read_raw_pages([str(RAW_WEB / "whirlwind.warc.wet")], report=rep))
    assert len(pages) == 1 and rep == {"read:files": 1, "read:pages": 1}
    page = pages[0]
    assert page["url"] == "https://an.wikipedia.org/wiki/Escopete"
    assert page["timestamp"] == "2024-05-18T01:58:10Z"
    assert page["text"].startswith("Escopete - Biquipedia, a enciclopedia libre\n")
    assert "\r" not in page["text"] and "WARC-" not in page["text"]

    # wrong Content-Length values: records are split by their WARC/1.0 lines
    pages = list(read_raw_pages([str(RAW_WEB / "tfds_c4_fake_wet")]))
    assert [p["url"].rsplit("/", 1)[1] for p in pages] == [
        "1", "2", "de", "de-786", "und", "und-27", "370", "4", "1"]
    assert pages[7]["text"] == (
        'This webpage would be included.\nHowever, it unfortunately has a badword.\n'
        'What is the badword? It is "butt".'
    )
    assert pages[1]["text"] == "This is another fake webpage, but it's not long enough."
    pages = list(read_raw_pages([str(RAW_WEB / "*.wet")]))
    assert [p["url"] for p in pages][:1] == ["http://sample_english.com"] and len(pages) == 4


@needs_raw_web
def test_gzip_wet_and_tfds_pipeline(tmp_path):
    for name in ("cc_0.warc.wet", "cc_1.warc.wet"):
        with open(RAW_WEB / "tfds_c4_fake_wet" / name, "rb") as src:
            with gzip.open(tmp_path / (name + ".gz"), "wb") as dst:
                shutil.copyfileobj(src, dst)
    c = C4Cleaner(cfg())
    out = list(c.pages(read_raw_pages([str(tmp_path)])))
    assert [p["url"] for p in out] == [
        "http://fake.com/url/1", "http://fake.com/url/und", "http://fake.com/url/und-27",
        "http://fake.com/url/370"]
    assert c.report["pages_removed:badwords"] == 1  # "butt"
    assert c.report["pages_removed:url_duplicate"] == 1
    assert c.report["pages_removed:language"] == 2  # the two German pages
    assert c.report["pages_removed:min_sentences_per_page"] == 1
    assert [is_validation_url(p["url"]) for p in out] == [False, False, True, True]


def test_resolve_files_errors(tmp_path):
    with pytest.raises(DataError, match="missing.wet"):
        resolve_files([str(tmp_path / "missing.wet")], "raw_files")
    with pytest.raises(DataError, match="matches no file"):
        resolve_files([str(tmp_path / "*.jsonl")], "raw_files")
    with pytest.raises(DataError, match="holds no"):
        resolve_files([str(tmp_path)], "raw_files")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported"):
        resolve_files([str(tmp_path / "notes.txt")], "raw_files")
    (tmp_path / "b.jsonl").write_text("")
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(b""))
    assert [p.name for p in resolve_files([str(tmp_path)], "raw_files")] == ["a.json.gz", "b.jsonl"]
    with pytest.raises(DataError, match="gone.jsonl"):
        read_raw_pages([str(tmp_path / "b.jsonl"), str(tmp_path / "gone.jsonl")])


def write_bad_jsonl(path: Path) -> None:
    rows = [
        json.dumps({"url": "http://a.com", "text": "Good text.", "timestamp": "2019"}).encode(),
        b'{"url": "http://b.com", "text": broken',
        b'{"url": "http://c.com", "text": "caf\xe9 latin-1"}',
        json.dumps({"url": "http://d.com"}).encode(),
        json.dumps({"url": "http://e.com", "text": "   "}).encode(),
        b"",
        b"[1, 2]",
        json.dumps({"text": "Another good text.", "url": "http://f.com", "x": 1}).encode(),
    ]
    path.write_bytes(b"\n".join(rows) + b"\n")


def test_tolerant_and_strict_jsonl(tmp_path):
    path = tmp_path / "bad.jsonl"
    write_bad_jsonl(path)
    rep = collections.Counter()
    with pytest.warns(UserWarning) as record:
        pages = list(read_raw_pages([str(path)], report=rep))
    assert pages == [
        {"url": "http://a.com", "text": "Good text.", "timestamp": "2019"},
        {"url": "http://f.com", "text": "Another good text.", "timestamp": ""},
    ]
    assert rep["skipped:malformed_json"] == 2
    assert rep["skipped:not_utf8"] == 1
    assert rep["skipped:missing_field"] == 1
    assert rep["skipped:empty"] == 1
    warned = [str(w.message) for w in record if "bad.jsonl" in str(w.message)]
    assert len(warned) == 1  # naming what the first record of each reason lacked
    assert "missing_field (first: line" in warned[0] and "lacks a string 'url'" in warned[0]
    with pytest.raises(DataError, match=r"bad\.jsonl:2"):
        list(read_raw_pages([str(path)], strict=True))

    gz = tmp_path / "broken.jsonl.gz"
    gz.write_bytes(b"this is not gzip")
    rep = collections.Counter()
    with pytest.warns(UserWarning, match="broken.jsonl.gz"):
        assert list(read_raw_pages([str(gz)], report=rep)) == []
    assert rep["skipped:corrupt_file"] == 1
    with pytest.raises(DataError, match="broken.jsonl.gz"):
        list(read_raw_pages([str(gz)], strict=True))


def test_wet_body_lines_and_bad_records(tmp_path):
    rec = (
        "WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: {url}\r\n"
        "WARC-Date: 2019-04-18T10:00:00Z\r\nContent-Length: 1\r\n\r\n{body}\r\n\r\n"
    )
    data = (
        "WARC/1.0\nWARC-Type: warcinfo\nContent-Length: 5\n\nisPartOf: CC\n\n"
        + rec.format(url="http://a.com", body="Content-Type: is a body line here.\n  \nSecond.")
        + rec.format(url="http://b.com", body="BAD")
        + rec.format(url="", body="No url.")
        + rec.format(url="http://d.com", body="   ")
    ).encode().replace(b"BAD", b"\xff\xfe bad")
    path = tmp_path / "x.warc.wet"
    path.write_bytes(data)
    rep = collections.Counter()
    with pytest.warns(UserWarning, match="x.warc.wet"):
        pages = list(read_raw_pages([str(path)], report=rep))
    assert pages == [{"url": "http://a.com", "text": "Content-Type: is a body line here.\nSecond.",
                      "timestamp": "2019-04-18T10:00:00Z"}]
    assert rep["skipped:not_utf8"] == rep["skipped:missing_field"] == rep["skipped:empty"] == 1
    with pytest.raises(DataError, match=r"x\.warc\.wet:\d+"):
        list(read_raw_pages([str(path)], strict=True))


# ------------------------------------------------------------------------------ realism
@needs_c4
def test_released_c4_mostly_survives_the_cleaner():
    pages = list(read_raw_pages([str(C4_SAMPLE)]))
    assert len(pages) == 1000
    c = C4Cleaner(cfg())
    after_clean = sum(c.clean_page(p["text"]) is not None for p in pages)
    c = C4Cleaner(cfg())
    kept = list(c.pages(pages))
    print(f"\nC4 sample: clean_page keeps {after_clean}/1000, full pipeline {len(kept)}/1000;",
          dict(c.report))
    assert after_clean >= 995
    assert len(kept) >= 980
    assert c.report["pages_removed:language"] <= 10
    assert kept[0]["text"] == pages[0]["text"]  # already clean text comes out unchanged
