"""The C4 cleaning pipeline of the T5 paper (facts §4.2-4.3; TFDS ``c4_utils`` at 0560e68).

``C4Cleaner.pages`` streams raw pages through the reference order: length filter, RealNews
domain filter, URL normalisation + URL dedupe, WebText URL-list filter, ``clean_page``, line
dedupe, language id. Every rule is switchable from ``C4CleanConfig`` and counted in
``C4Cleaner.report``.

Where a stream cannot do what the Beam pipeline did, the difference is stated:

* URL dedupe keeps the first page of a normalised URL (the reference kept whichever value
  ``GroupByKey`` delivered first).
* Line dedupe ("lines"): the reference keeps every distinct line (key: md5 of the stripped,
  lowercased line) in the one page whose normalised URL has the smallest md5 hex digest
  (``Top.PerKey(1, key=_hash_text, reverse=True)``) and, as in c4_utils 0560e68 (TFDS >= 2.3.0;
  2.2.0 kept them), also drops repeats inside a page. A stream cannot know the smallest
  hash in advance, so here the first *kept* page wins: a line already seen in an earlier
  page that survived dedupe, or earlier in the same page, is removed.
  ``dedupe_reference`` does the exact two-pass rule on a list of pages.
* "three_sentence_spans" (the paper's wording, §4.2 "Paper vs code"): the page's sentences
  (punkt, per line, in order) form windows of 3 consecutive sentences, keyed by md5 of the
  lowercased, whitespace-collapsed sentences. Every sentence of a window already seen (in an
  earlier kept page, or earlier in this page) is removed; a line left without sentences is
  removed, other lines are re-joined from their kept sentences with single spaces. Only
  windows whose three sentences were all kept are remembered.
* After either dedupe, a page with fewer than ``min_sentences_per_page`` sentences is dropped
  (only when ``clean``, as in the reference), and an empty page is always dropped.

Language id uses langdetect with ``DetectorFactory.seed = 0`` through ``detect_langs``, a
rewrite of langdetect's hot loops with bit-identical probabilities (about 2-3x faster); pages
langdetect cannot process are dropped. Memory: URL and dedupe keys are 16-byte md5 digests
kept for the cleaner's lifetime.

``report`` keys: ``pages_in``, ``pages_out``; ``pages_removed:`` ``too_long``, ``domain``,
``url_duplicate``, ``url_list``, ``lorem_ipsum``, ``curly_brace``, ``badwords``,
``min_sentences_per_page`` (in ``clean_page``), ``empty`` (every line removed),
``too_few_sentences`` / ``empty_after_dedupe`` (after dedupe), ``language`` (of which
``language:undetectable``); ``lines_removed:`` ``max_word_length``, ``terminal_punctuation``,
``min_words_per_line``, ``javascript``, ``policy``, ``dedupe``;
``markers_removed:remove_citations``; ``sentences_removed:dedupe`` (span mode). Line counts
include lines of pages that a later page-level rule drops.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import itertools
import json
import os
import re
import urllib.request
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from t5k_builtin.configs import C4CleanConfig
from t5kernel.errors import ConfigError, DataError

#: the LDNOOBW "en" list at the commit C4 pinned (TFDS c4.py ``_EN_BADWORDS_URL``)
BADWORDS_COMMIT = "25e679f03d96baa721cde20db9944649e8d0a844"
BADWORDS_URL = (
    "https://raw.githubusercontent.com/LDNOOBW/List-of-Dirty-Naughty-Obscene-and-Otherwise-"
    f"Bad-Words/{BADWORDS_COMMIT}/en"
)
DEDUPE_MODES = ("lines", "three_sentence_spans", "none")

_END_MARKS = (".", "?", "!", '"')
_ELLIPSIS = "..."
_POLICY_SUBSTRINGS = (
    "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
    "use cookies",
)
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
_URL_SCHEME = re.compile(r"https?:\/\/(www\.)?")
_URL_TRACKING = re.compile(r"\?(utm_|ref|feed).*")


def normalize_url(url: str) -> str:
    """c4_utils ``normalize_url`` (facts §4.2 step 4).

    Removes every ``http(s)://`` (+ ``www.``) occurrence (the reference's unanchored
    ``re.sub``), everything from a ``?utm_`` / ``?ref`` / ``?feed`` on, and trailing ``/``.
    """
    url = _URL_SCHEME.sub("", url)
    url = _URL_TRACKING.sub("", url)
    return url.rstrip("/")


def _md5(text: str) -> bytes:
    return hashlib.md5(text.encode("utf-8")).digest()


def is_validation_url(url: str) -> bool:
    """C4's split rule (c4.py): int(md5(normalised URL).hexdigest(), 16) % 1000 == 0.

    The URL is normalised first (normalising twice is a no-op for ordinary URLs).
    """
    digest = hashlib.md5(normalize_url(url).encode("utf-8")).hexdigest()
    return int(digest, 16) % 1000 == 0


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "t5kernel"


def _fetch_badwords() -> Path:
    """The pinned list, downloaded once into the user cache (atomic write)."""
    target = _cache_dir() / f"ldnoobw-en-{BADWORDS_COMMIT[:7]}.txt"
    if target.is_file():
        return target
    try:
        with urllib.request.urlopen(BADWORDS_URL, timeout=10) as response:
            data = response.read()
        data.decode("utf-8")
    except (OSError, ValueError) as err:
        raise DataError(
            f"cannot fetch the C4 bad-words list from {BADWORDS_URL} ({err}); download that "
            "file yourself and set cleaning.badwords_path to it, or set cleaning.badwords=false"
        ) from err
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, target)
    return target


def load_badwords(cfg: C4CleanConfig) -> list[str] | None:
    """The bad words (one word or phrase per line, lowercased, blanks skipped), or None if off.

    From ``cfg.badwords_path`` when set, else the LDNOOBW "en" list at C4's pinned commit,
    fetched once into ``$XDG_CACHE_HOME/t5kernel`` (default ``~/.cache/t5kernel``).
    """
    if not cfg.clean or not cfg.badwords:
        return None
    if cfg.badwords_path:
        path = Path(cfg.badwords_path).expanduser()
        if not path.is_file():
            raise DataError(f"cleaning.badwords_path {cfg.badwords_path!r} does not exist")
    else:
        path = _fetch_badwords()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"bad-words list {str(path)!r} is not UTF-8 text") from err
    words = [line.strip().lower() for line in lines if line.strip()]
    if not words:
        raise DataError(f"bad-words list {str(path)!r} holds no word")
    return words


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching exactly ``words``, as a prefix trie (much faster than ``a|b|c``)."""
    root: dict = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def pattern(node: dict) -> str:
        keys = sorted(k for k in node if k)
        if not keys:
            return ""
        alts = [re.escape(k) + pattern(node[k]) for k in keys]
        out = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return "(?:" + out + ")?" if "" in node else out

    return pattern(root)


def badwords_regex(words: list[str], flanking: str = "letters") -> re.Pattern:
    """The bad-words regex, applied to the lowercased line.

    ``flanking="letters"`` (default; c4_utils 0560e68's ``clean_page``, facts §4.2):
    ``[^a-z](w1|w2|...)[^a-z]``, so a word counts only between two non-letters; one at the
    very start or end of a line does not match, and accented letters count as non-letters
    ("appétit" contains "tit"). ``flanking="word"``: later TFDS's page-level
    ``(?:\\W|^)(...)(?:\\W|$)``. The alternation is written as an equivalent trie, and words
    are ``re.escape``-d (identical for the pinned list, which has no regex metacharacter).
    """
    body = _trie_pattern(words)
    if flanking == "letters":
        return re.compile(f"[^a-z]({body})[^a-z]")
    if flanking == "word":
        return re.compile(rf"(?:\W|^)({body})(?:\W|$)")
    raise ConfigError(f"bad-words flanking {flanking!r} is not 'letters' or 'word'")


@functools.lru_cache(maxsize=1)
def sentence_splitter():
    """NLTK punkt English (c4_utils ``english.pickle``) if installed, else untrained Punkt.

    Built once per process; the fallback warns once. Untrained Punkt knows no
    abbreviations, so it splits after e.g. "Mr." and counts slightly more sentences.
    """
    import nltk
    from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTokenizer

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return PunktTokenizer("english")
    except LookupError:
        pass
    try:
        nltk.data.find("tokenizers/punkt/english.pickle")
        return nltk.data.load("tokenizers/punkt/english.pickle")
    except (LookupError, ValueError, OSError):
        pass
    warnings.warn(
        "NLTK punkt English data is not installed (nltk.download('punkt_tab')); counting "
        "sentences with an untrained Punkt tokenizer instead",
        stacklevel=2,
    )
    return PunktSentenceTokenizer()


def load_domains(path: str | os.PathLike) -> dict:
    """Grover's ``domain_to_allowed_subdomains.json``: domain -> true | [allowed subdomains]."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"domain list {str(path)!r} does not exist") from err
    except (ValueError, OSError) as err:
        raise DataError(f"domain list {str(path)!r} is not a JSON file: {err}") from err
    if not isinstance(data, dict) or not all(
        v is True or (isinstance(v, list) and all(isinstance(s, str) for s in v))
        for v in data.values()
    ):
        raise DataError(
            f"domain list {str(path)!r} must map each domain to true or a list of subdomains"
        )
    return data


def load_urls(path: str | os.PathLike, min_score: float = 3) -> set[str]:
    """The WebText URL list: ``url`` or ``url<TAB>score`` per line; scored lines need >= min_score.

    URLs come back normalised (the reference joins after normalising both sides).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"URL list {str(path)!r} does not exist")
    urls: set[str] = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            url, sep, score = line.strip().partition("\t")
            if not url:
                continue
            if sep:
                try:
                    if float(score) < min_score:
                        continue
                except ValueError as err:
                    raise DataError(
                        f"{path}:{number}: score {score!r} is not a number (url<TAB>score)"
                    ) from err
            urls.add(normalize_url(url.strip()))
    return urls


_SPACE_RUN = re.compile(" {2,}")
_TOKEN = re.compile("[^ ]+ ?")


@functools.lru_cache(maxsize=1)
def _fast_detector():
    """A langdetect ``Detector`` whose three hot loops are rewritten, with identical results.

    ``append`` (collapse runs of spaces), ``_extract_ngrams`` (the ``NGram`` buffer inlined,
    character normalisation memoised) and ``_update_lang_prob`` (one list comprehension,
    same float operations in the same order) compute exactly what langdetect 1.0.9 does;
    the seeded random trials are untouched, so probabilities are bit-identical (tested).
    About twice as fast. Returns None (use ``langdetect.detect_langs``) if langdetect's
    internals are not the expected ones.
    """
    try:
        import numpy as np
        from langdetect import detector_factory
        from langdetect.detector import Detector
        from langdetect.lang_detect_exception import ErrorCode, LangDetectException
        from langdetect.utils.ngram import NGram

    except ImportError:
        return None
    from importlib.metadata import version

    if version("langdetect") != "1.0.9":  # the rewrite mirrors exactly this release
        return None
    needed = ((Detector, "URL_RE"), (Detector, "MAIL_RE"), (Detector, "BASE_FREQ"),
              (Detector, "ALPHA_WIDTH"), (Detector, "CONV_THRESHOLD"),
              (Detector, "ITERATION_LIMIT"), (ErrorCode, "CantDetectError"),
              (NGram, "normalize_vi"), (NGram, "normalize"), (detector_factory, "_factory"),
              (detector_factory, "init_factory"))
    if not all(hasattr(owner, name) for owner, name in needed):
        return None
    rows: dict = {}
    tokens: dict = {}

    class Table(dict):
        """``str.translate`` table applying ``NGram.normalize``, filled on demand."""

        def __missing__(self, code):
            self[code] = value = NGram.normalize(chr(code))
            return value

    table = Table()

    def token_ngrams(token, wmap):
        """langdetect's ``_extract_ngrams`` loop over one token, from a fresh buffer."""
        result = []
        grams, capital = " ", False
        for c in token:
            last = grams[-1]
            if last == " ":
                grams, capital = " ", False
                if c == " ":
                    continue
            elif len(grams) >= 3:
                grams = grams[1:]
            grams += c
            if c.isupper():
                if last.isupper():
                    capital = True
            else:
                capital = False
            if capital:
                continue
            for n in (1, 2, 3):
                if len(grams) < n:
                    break
                w = grams[-n:]
                if w != " " and w in wmap:
                    result.append(w)
        return result

    class FastDetector(Detector):
        def append(self, text):
            text = self.URL_RE.sub(" ", text)
            text = self.MAIL_RE.sub(" ", text)
            text = NGram.normalize_vi(text)
            self.text += _SPACE_RUN.sub(" ", text[: self.max_text_length])

        def _extract_ngrams(self):
            # NGram's buffer restarts at every space, so a token (a run of non-spaces
            # plus one following space) always yields the same n-grams, in order.
            if len(tokens) > 200_000:
                tokens.clear()
            wmap = self.word_lang_prob_map
            result = []
            for token in _TOKEN.findall(self.text.translate(table)):
                grams = tokens.get(token)
                if grams is None:
                    grams = tokens[token] = token_ngrams(token, wmap)
                result.extend(grams)
            return result

        def _detect_block(self):
            # Detector._detect_block with the 55-language update as numpy element-wise
            # ops: p * (weight + m) and p / sum are the same IEEE operations; the sum is
            # Python's left-to-right sum, as in _normalize_prob.
            self.cleaning_text()
            ngrams = self._extract_ngrams()
            if not ngrams:
                raise LangDetectException(ErrorCode.CantDetectError, "No features in text.")
            if len(rows) > 100_000:  # bound the cache of profile rows as arrays
                rows.clear()
            self.langprob = [0.0] * len(self.langlist)
            self.random.seed(self.seed)
            for _ in range(self.n_trial):
                prob = np.asarray(self._init_probability(), dtype=np.float64)
                alpha = self.alpha + self.random.gauss(0.0, 1.0) * self.ALPHA_WIDTH
                weight = alpha / self.BASE_FREQ
                i = 0
                while True:
                    word = self.random.choice(ngrams)
                    row = rows.get(word)
                    if row is None:
                        row = rows[word] = np.asarray(self.word_lang_prob_map[word], np.float64)
                    prob *= weight + row
                    if i % 5 == 0:
                        total = sum(prob.tolist())
                        if total == 0.0:
                            raise ZeroDivisionError("float division by zero")
                        prob /= total
                        if prob.max() > self.CONV_THRESHOLD or i >= self.ITERATION_LIMIT:
                            break
                    i += 1
                self.langprob = [
                    lp + p / self.n_trial
                    for lp, p in zip(self.langprob, prob.tolist(), strict=True)
                ]

    return detector_factory, FastDetector


def detect_langs(text: str) -> list:
    """``langdetect.detect_langs`` with ``DetectorFactory.seed = 0`` (c4_utils), faster."""
    import langdetect

    langdetect.DetectorFactory.seed = 0  # deterministic, as c4_utils does
    fast = _fast_detector()
    if fast is None:
        return langdetect.detect_langs(text)
    factory_module, detector_class = fast
    factory_module.init_factory()
    detector = detector_class(factory_module._factory)
    detector.append(text)
    return detector.get_probabilities()


def _count_sentences(splitter, text: str, limit: int) -> int:
    """Sentences in ``text``, counting no further than ``limit`` (enough for a threshold)."""
    return sum(1 for _ in itertools.islice(splitter.span_tokenize(text), limit))


def _sentence_key(sentence: str) -> str:
    return " ".join(sentence.lower().split())


class C4Cleaner:
    """The C4 filters of one ``C4CleanConfig`` (facts §4.2), with a running ``report``.

    ``domains`` (RealNews-like) keeps pages whose registered domain (tldextract
    ``domain.suffix``, bundled suffix snapshot, no network) is a key, honouring list values
    as allowed subdomains; ``urls`` (WebText-like) keeps pages whose normalised URL is in it.
    Dedupe state lives in the instance: one cleaner = one deduplicated stream.
    """

    load_domains = staticmethod(load_domains)
    load_urls = staticmethod(load_urls)

    def __init__(
        self, cfg: C4CleanConfig, *, domains: dict | None = None, urls: set[str] | None = None
    ) -> None:
        if cfg.dedupe not in DEDUPE_MODES:
            raise ConfigError(f"cleaning.dedupe {cfg.dedupe!r} is not one of {DEDUPE_MODES}")
        if cfg.sentence_splitter != "punkt":
            raise ConfigError(
                f"cleaning.sentence_splitter {cfg.sentence_splitter!r} is not supported; "
                "allowed: 'punkt'"
            )
        for name in ("max_page_chars", "max_word_length", "min_words_per_line",
                     "min_sentences_per_page"):
            if getattr(cfg, name) < 0:
                raise ConfigError(f"cleaning.{name} must be >= 0, got {getattr(cfg, name)}")
        if not 0.0 <= cfg.language_threshold <= 1.0:
            raise ConfigError(
                f"cleaning.language_threshold must be in [0, 1], got {cfg.language_threshold}"
            )
        self.cfg = cfg
        self.report: collections.Counter = collections.Counter()
        words = load_badwords(cfg)
        self._badwords = badwords_regex(words, cfg.badwords_flanking) if words else None
        self._domains = domains
        self._extract = None
        if domains is not None:
            import tldextract

            self._extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
        self._urls = urls
        self._seen_urls: set[bytes] = set()
        self._seen: set[bytes] = set()
        self._min_sentences = cfg.min_sentences_per_page if cfg.clean else 0

    # -- page-level filters (steps 2-5) -------------------------------------------------

    def _domain_ok(self, url: str) -> bool:
        ext = self._extract(url)
        allowed = self._domains.get(f"{ext.domain}.{ext.suffix}")
        if allowed is None:
            return False
        return not isinstance(allowed, list) or ext.subdomain in allowed

    # -- clean_page (step 6) ------------------------------------------------------------

    def clean_page(self, text: str) -> str | None:
        """c4_utils ``clean_page``: the cleaned text, or None if the page is dropped.

        Lines come from ``splitlines`` and are stripped; rules run in the reference order
        and each can be switched off. Citation markers are deleted *before* the end-mark
        test and the line is not re-stripped (so ``"Foo. [1]"`` ends in a space and goes).
        Sentences are counted per kept line with punkt. ``cfg.clean`` False: unchanged.
        """
        cfg, report = self.cfg, self.report
        if not cfg.clean:
            return text
        max_word = cfg.max_word_length
        min_words = cfg.min_words_per_line
        need = cfg.min_sentences_per_page
        splitter = sentence_splitter() if need else None
        badwords = self._badwords
        kept: list[str] = []
        sentences = 0
        for line in text.splitlines():
            line = line.strip()
            if max_word and len(line) > max_word and any(len(w) > max_word for w in line.split()):
                report["lines_removed:max_word_length"] += 1
                continue
            if cfg.remove_citations and "[" in line:
                line, n = _CITATION.subn("", line)
                if n:
                    report["markers_removed:remove_citations"] += n
            if cfg.terminal_punctuation and (
                not line.endswith(_END_MARKS) or line.endswith(_ELLIPSIS)
            ):
                report["lines_removed:terminal_punctuation"] += 1
                continue
            if min_words and len(line.split()) < min_words:
                report["lines_removed:min_words_per_line"] += 1
                continue
            lower = line.lower()
            if cfg.lorem_ipsum and "lorem ipsum" in lower:
                report["pages_removed:lorem_ipsum"] += 1
                return None
            if cfg.javascript and "javascript" in lower:
                report["lines_removed:javascript"] += 1
                continue
            if cfg.curly_brace and "{" in line:
                report["pages_removed:curly_brace"] += 1
                return None
            if cfg.policy and any(p in lower for p in _POLICY_SUBSTRINGS):
                report["lines_removed:policy"] += 1
                continue
            if badwords is not None and badwords.search(lower):
                report["pages_removed:badwords"] += 1
                return None
            if sentences < need:
                sentences += _count_sentences(splitter, line, need - sentences)
            kept.append(line)
        if sentences < need:
            report["pages_removed:min_sentences_per_page"] += 1
            return None
        cleaned = "\n".join(kept).strip()
        if not cleaned:
            report["pages_removed:empty"] += 1
            return None
        return cleaned

    # -- pipeline stages ----------------------------------------------------------------

    def filter_and_clean(self, pages: Iterable[dict]) -> Iterator[dict]:
        """Steps 2-6: length, domain, URL normalisation + dedupe, URL list, ``clean_page``.

        Counts ``pages_in``. Yields ``{"url", "text", "timestamp"}`` with the original URL.
        """
        cfg, report = self.cfg, self.report
        for page in pages:
            report["pages_in"] += 1
            url, text = page["url"], page["text"]
            if cfg.max_page_chars and len(text) > cfg.max_page_chars:
                report["pages_removed:too_long"] += 1
                continue
            if self._domains is not None and not self._domain_ok(url):
                report["pages_removed:domain"] += 1
                continue
            normalized = normalize_url(url)
            if cfg.url_dedupe:
                key = _md5(normalized)
                if key in self._seen_urls:
                    report["pages_removed:url_duplicate"] += 1
                    continue
                self._seen_urls.add(key)
            if self._urls is not None and normalized not in self._urls:
                report["pages_removed:url_list"] += 1
                continue
            text = self.clean_page(text)
            if text is None:
                continue
            yield {"url": url, "text": text, "timestamp": page.get("timestamp", "")}

    def _after_dedupe(self, page: dict, kept_lines: list[str], sentences: int | None):
        """The reference's post-dedupe checks: drop empty pages and too-short ones (if clean).

        Returns a copy of ``page`` with the new text, or None.
        """
        text = "\n".join(kept_lines)
        if not text:
            self.report["pages_removed:empty_after_dedupe"] += 1
            return None
        need = self._min_sentences
        if need:
            if sentences is None:
                sentences = _count_sentences(sentence_splitter(), text, need)
            if sentences < need:
                self.report["pages_removed:too_few_sentences"] += 1
                return None
        return {**page, "text": text}

    def _dedupe_lines(self, pages: Iterable[dict]) -> Iterator[dict]:
        for page in pages:
            own: set[bytes] = set()
            kept: list[str] = []
            for line in page["text"].split("\n"):
                key = _md5(line.strip().lower())
                if key in self._seen or key in own:
                    self.report["lines_removed:dedupe"] += 1
                else:
                    own.add(key)
                    kept.append(line)
            new = self._after_dedupe(page, kept, None)
            if new is not None:
                self._seen |= own
                yield new

    def _dedupe_spans(self, pages: Iterable[dict]) -> Iterator[dict]:
        splitter = sentence_splitter()
        for page in pages:
            lines = page["text"].split("\n")
            spans = [(i, s, e) for i, line in enumerate(lines)
                     for s, e in splitter.span_tokenize(line)]
            keys = [_sentence_key(lines[i][s:e]) for i, s, e in spans]
            windows = [_md5("\n".join(keys[j:j + 3])) for j in range(len(keys) - 2)]
            drop: set[int] = set()
            own: set[bytes] = set()
            for j, key in enumerate(windows):
                if key in self._seen or key in own:
                    drop.update((j, j + 1, j + 2))
                else:
                    own.add(key)
            kept_lines = lines
            if drop:
                self.report["sentences_removed:dedupe"] += len(drop)
                pieces: dict[int, list[str]] = collections.defaultdict(list)
                touched = {spans[k][0] for k in drop}
                for k, (i, s, e) in enumerate(spans):
                    if i in touched and k not in drop:
                        pieces[i].append(lines[i][s:e])
                kept_lines = []
                for i, line in enumerate(lines):
                    if i not in touched:
                        kept_lines.append(line)
                    elif pieces[i]:
                        kept_lines.append(" ".join(pieces[i]))
                    else:
                        self.report["lines_removed:dedupe"] += 1
            new = self._after_dedupe(page, kept_lines, len(spans) - len(drop))
            if new is not None:
                self._seen |= {k for j, k in enumerate(windows) if not drop & {j, j + 1, j + 2}}
                yield new

    def dedupe(self, pages: Iterable[dict]) -> Iterator[dict]:
        """Step 7 in a stream, per ``cfg.dedupe`` (see the module docstring)."""
        if self.cfg.dedupe == "lines":
            return self._dedupe_lines(pages)
        if self.cfg.dedupe == "three_sentence_spans":
            return self._dedupe_spans(pages)
        return iter(pages)

    def dedupe_reference(self, pages: list[dict]) -> list[dict]:
        """The exact two-pass line dedupe of c4_utils 0560e68 ``remove_duplicate_text``.

        Each distinct line key (md5 of the stripped, lowercased line) is kept only in the
        page whose normalised URL has the smallest md5 hex digest (ties, possible only
        without URL dedupe: the earlier page), and only its first occurrence there. Pages
        left empty, or (when ``clean``) with too few sentences, are dropped. Input order is
        kept. Works on the output of ``filter_and_clean``, whatever ``cfg.dedupe`` says.
        """
        owner: dict[bytes, tuple[str, int]] = {}
        page_keys = []
        for index, page in enumerate(pages):
            rank = (hashlib.md5(normalize_url(page["url"]).encode("utf-8")).hexdigest(), index)
            lines = page["text"].split("\n")
            keys = [_md5(line.strip().lower()) for line in lines]
            page_keys.append((lines, keys))
            for key in keys:
                best = owner.get(key)
                if best is None or rank < best:
                    owner[key] = rank
        out = []
        for index, (page, (lines, keys)) in enumerate(zip(pages, page_keys, strict=True)):
            own: set[bytes] = set()
            kept = []
            for line, key in zip(lines, keys, strict=True):
                if owner[key][1] != index or key in own:
                    self.report["lines_removed:dedupe"] += 1
                else:
                    own.add(key)
                    kept.append(line)
            new = self._after_dedupe(page, kept, None)
            if new is not None:
                out.append(new)
        return out

    # -- language id (step 8) -----------------------------------------------------------

    def _is_language(self, text: str) -> bool:
        from langdetect.lang_detect_exception import LangDetectException

        try:
            predictions = detect_langs(text)
        except LangDetectException:
            predictions = []
        if not predictions:
            self.report["language:undetectable"] += 1
            return False
        best = predictions[0]
        return best.lang == self.cfg.language and best.prob >= self.cfg.language_threshold

    def language_filter(self, pages: Iterable[dict]) -> Iterator[dict]:
        """Step 8 (langdetect, seed 0; off when ``cfg.language`` is ""); counts ``pages_out``."""
        for page in pages:
            if self.cfg.language and not self._is_language(page["text"]):
                self.report["pages_removed:language"] += 1
                continue
            self.report["pages_out"] += 1
            yield page

    def pages(self, pages: Iterable[dict]) -> Iterator[dict]:
        """The whole pipeline as a stream (steps 2-8 in the reference order)."""
        return self.language_filter(self.dedupe(self.filter_and_clean(pages)))

    def pages_reference(self, pages: Iterable[dict]) -> list[dict]:
        """Like ``pages`` but with the exact two-pass line dedupe when ``cfg.dedupe`` is "lines".

        Holds every cleaned page in memory.
        """
        cleaned = self.filter_and_clean(pages)
        if self.cfg.dedupe == "lines":
            return list(self.language_filter(self.dedupe_reference(list(cleaned))))
        return list(self.language_filter(self.dedupe(cleaned)))
