"""The embedded corpus: English prose that every Python installation carries (DESIGN §6).

Two sources, both read from the running interpreter at run time (nothing downloaded,
nothing copied into the repository):

* ``"topics"``: ``pydoc_data.topics.topics``, the text of the Python documentation
  chapters that ``help()`` shows (79 topics on CPython 3.11).
* ``"docstrings"``: ``inspect.getdoc`` of a fixed, sorted list of standard-library
  modules (pure Python, plus a few always-built-in C modules such as ``builtins`` and
  ``math`` whose docstrings are compiled in) and of their public classes, functions and
  methods (only objects defined in that module, only their own docstrings, so nothing is
  counted twice). Modules that print, spawn processes, change interpreter state, depend
  on the platform or an optional C library, or warn on import are not in the list;
  imports run with warnings and output suppressed, and one that fails is skipped.

A *document* is one paragraph of prose: blank-line separated blocks whose lines are joined
with single spaces. Code is dropped: doctest blocks (``>>>``), tables, grammar rules
(``::=``), and anything that does not read like sentences (see :func:`looks_like_prose`).
Exact duplicates keep their first occurrence. The order is topics (sorted by key), then
modules in list order, members sorted by name; so the content is a pure function of the
Python version (and torch's, which replaces ``inspect.getfile``), whatever else the
process imported: members another library added to or swapped into a module or class
are skipped (see :func:`_docstring_texts`).

The train/validation split is by a stable hash of the document text
(``md5(text) % 100 < validation_percent`` -> validation), in the spirit of C4's split by
an md5 of the URL (facts §4.1), so it does not depend on ``PYTHONHASHSEED``.

Size on CPython 3.11.7 with the default config (printed by ``tests/test_corpora.py::
test_embedded_builds_fast_deterministically_and_reports_size``): 6,895 documents (6,769
train, 126 validation), 0.99 MB of text, 161,000 words. That is about half of what there
is: the topics hold 0.47 MB and the docstrings of the whole pure-Python standard library
about 1.4 MB, much of it code, signatures and tables. Building takes about a second and is
cached for the life of the process (:func:`split_documents`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import inspect
import io
import re
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from t5k_builtin.configs import EmbeddedCorpusConfig
from t5kernel.errors import ConfigError, DataError

SOURCES = ("topics", "docstrings")
SPLITS = ("train", "validation")

#: Pure-Python standard-library modules whose docstrings are walked, sorted. Left out on
#: purpose: test packages, idlelib, tkinter, turtle(demo), antigravity, this, lib2to3,
#: ensurepip, venv, site, rlcompleter/readline (install a completer), pty/tty/curses,
#: platform-dependent modules (os, posixpath, ntpath, platform, sysconfig, selectors,
#: socket, signal, asyncio's event loops, multiprocessing's contexts), modules that need
#: an optional C library (ssl, hashlib, sqlite3, ctypes, lzma, bz2, dbm) and modules
#: deprecated with an import-time warning in 3.11 (cgi, imp, asyncore, pipes, ...).
# fmt: off
STDLIB_MODULES: tuple[str, ...] = (
    "_pydecimal", "_pyio", "abc", "argparse", "array", "ast", "asyncio.base_events",
    "asyncio.events", "asyncio.exceptions", "asyncio.futures", "asyncio.locks",
    "asyncio.protocols", "asyncio.queues", "asyncio.runners", "asyncio.streams",
    "asyncio.subprocess", "asyncio.taskgroups", "asyncio.tasks", "asyncio.timeouts",
    "asyncio.transports", "base64", "bdb", "binascii", "bisect", "builtins", "calendar",
    "cmd", "code", "codecs", "codeop", "collections", "collections.abc", "colorsys",
    "compileall", "concurrent.futures", "concurrent.futures._base", "configparser",
    "contextlib", "contextvars", "copy", "copyreg", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "dis", "doctest", "email", "email._header_value_parser",
    "email.base64mime", "email.charset", "email.contentmanager", "email.errors",
    "email.feedparser", "email.generator", "email.header", "email.headerregistry",
    "email.iterators", "email.message", "email.mime.base", "email.mime.multipart",
    "email.mime.text", "email.parser", "email.policy", "email.quoprimime", "email.utils",
    "enum", "filecmp", "fileinput", "fnmatch", "fractions", "ftplib", "functools", "gc",
    "getopt", "gettext", "glob", "graphlib", "gzip", "heapq", "hmac", "html", "html.parser",
    "http", "http.client", "http.cookiejar", "http.cookies", "http.server", "imaplib",
    "importlib", "importlib.abc", "importlib.machinery", "importlib.metadata",
    "importlib.resources", "importlib.resources.abc", "importlib.util", "inspect", "io",
    "ipaddress", "itertools", "json", "json.decoder", "json.encoder", "keyword",
    "linecache", "locale", "logging", "logging.config", "logging.handlers", "mailbox",
    "math", "mimetypes", "modulefinder", "multiprocessing.managers", "multiprocessing.pool",
    "multiprocessing.process", "multiprocessing.queues", "multiprocessing.shared_memory",
    "multiprocessing.synchronize", "netrc", "numbers", "opcode", "operator", "optparse",
    "pathlib", "pdb", "pickle", "pickletools", "pkgutil", "plistlib", "poplib", "pprint",
    "profile", "pstats", "py_compile", "pyclbr", "pydoc", "queue", "quopri", "random", "re",
    "reprlib", "runpy", "sched", "secrets", "shelve", "shlex", "shutil", "smtplib",
    "socketserver", "stat", "statistics", "string", "stringprep", "struct", "subprocess",
    "symtable", "tabnanny", "tarfile", "tempfile", "textwrap", "threading", "timeit",
    "token", "tokenize", "tomllib", "trace", "traceback", "tracemalloc", "types", "typing",
    "unicodedata", "unittest", "unittest.case", "unittest.loader", "unittest.mock",
    "unittest.result", "unittest.runner", "unittest.suite", "urllib.error", "urllib.parse",
    "urllib.request", "urllib.response", "urllib.robotparser", "uuid", "warnings", "wave",
    "weakref", "wsgiref.handlers", "wsgiref.headers", "wsgiref.simple_server",
    "wsgiref.util", "wsgiref.validate", "xml.dom", "xml.dom.expatbuilder",
    "xml.dom.minicompat", "xml.dom.minidom", "xml.dom.pulldom", "xml.etree.ElementPath",
    "xml.etree.ElementTree", "xml.sax", "xml.sax.handler", "xml.sax.saxutils",
    "xml.sax.xmlreader", "xmlrpc.client", "xmlrpc.server", "zipapp", "zipfile", "zipimport",
    "zoneinfo",
)
# fmt: on

_UNDERLINE = re.compile(r"[=*\-~^#+_.`'\"]{3,}")
_DOCTEST = (">>>", "...")
_TABLE = ("|", "+-", "+=")
# *emphasis* and **strong** as the docs write them (not "a * b" with spaces around).
_BULLET = re.compile(r"^(?:[*\-•]|\d+\.|\(\w\))\s+")
_ROLE = re.compile(r":[\w.-]+(?::[\w.-]+)?:`")
_LITERAL = re.compile(r"``([^`\n]+?)``|`([^`'\s][^`'\n]*?)`")
_EMPHASIS = re.compile(r"(?<![\w*])\*{1,2}([^\s*](?:[^*\n]*?[^\s*])?)\*{1,2}(?![\w*])")
_FOOTNOTE = re.compile(r"\s?\[\d+\]")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"^[(\"'‘“]*[A-Za-z][A-Za-z'’-]*[.,;:!?)\"'’”]*$")
_ENDS_SENTENCE = re.compile(r"[.!?:][)\"'’”]*$")


def looks_like_prose(text: str, min_word_fraction: float = 0.75) -> bool:
    """True when ``text`` reads like sentences rather than code or a signature.

    It must end like a sentence (``.``, ``!``, ``?``, or ``:`` introducing an example;
    closing quotes allowed) and at least ``min_word_fraction`` of its whitespace-separated
    tokens must be plain words with attached punctuation. Code, call signatures, headings
    and option lists fail one of the two.
    """
    if not text or not _ENDS_SENTENCE.search(text):
        return False
    tokens = text.split()
    words = sum(1 for t in tokens if _WORD.match(t))
    return words >= min_word_fraction * len(tokens)


def _inline(text: str) -> str:
    """Drop reST markup that is not text: roles, *emphasis*, footnote marks ([1]).

    Literals (````x```` and ```x```) become ``"x"``, as the documentation topics write them;
    an old-style ```quote'`` becomes ``'quote'``.
    """
    text = _ROLE.sub("`", text)
    text = _LITERAL.sub(lambda m: f'"{m.group(1) or m.group(2)}"', text).replace("`", "'")
    text = _EMPHASIS.sub(r"\1", text)
    text = _FOOTNOTE.sub("", text)
    return _SPACES.sub(" ", text).strip()


def clean_paragraph(lines: list[str]) -> list[str]:
    """One blank-line separated block -> its prose paragraphs (one per list item).

    A block holding a doctest line, a table row or a grammar rule is code: nothing is kept.
    """
    items: list[list[str]] = []
    for line in lines:
        s = line.strip()
        if not s or _UNDERLINE.fullmatch(s):
            continue
        if s.startswith(_DOCTEST) or s.startswith(_TABLE) or "::=" in s:
            return []
        bullet = _BULLET.match(s)
        if bullet or not items:
            items.append([])
        items[-1].append(s[bullet.end() :] if bullet else s)
    texts = (_inline(" ".join(item)) for item in items)
    return [t for t in texts if looks_like_prose(t)]


def paragraphs(text: str) -> Iterator[str]:
    """Prose paragraphs of a documentation text, in order."""
    block: list[str] = []
    for line in text.splitlines() + [""]:
        if line.strip():
            block.append(line)
        elif block:
            yield from clean_paragraph(block)
            block = []


def _topic_texts() -> Iterator[str]:
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield topics[key]


def _import_quietly(name: str) -> Any:
    """Import a module with warnings and any printing suppressed; None when it fails."""
    sink = io.StringIO()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except (Exception, SystemExit):
            return None


def _own_doc(obj: Any) -> str | None:
    """``inspect.getdoc`` of an object that has its own docstring (not an inherited one)."""
    own = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if not isinstance(own, str):
        return None
    return inspect.getdoc(obj)


def _docstring_texts() -> Iterator[str]:
    # Libraries patch the standard library when imported: ``import torch`` replaces
    # ``inspect.getfile`` (torch.package), transformers adds methods to
    # ``logging.Logger``. Foreign members are skipped below, but a replaced function's
    # own docstring cannot be recovered, so torch (imported by every run anyway) is
    # imported first: the walk then sees the same modules whatever the process imported.
    import torch  # noqa: F401

    with warnings.catch_warnings():  # e.g. touching typing.io warns; the text is the same
        warnings.simplefilter("ignore")
        yield from _walk_modules()


def _walk_modules() -> Iterator[str]:
    for name in STDLIB_MODULES:
        module = _import_quietly(name)
        if module is None:
            continue
        if isinstance(module.__doc__, str):
            yield inspect.cleandoc(module.__doc__)
        members = vars(module)
        for attr in sorted(members):
            obj = members[attr]
            if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue
            doc = _own_doc(obj)
            if doc:
                yield doc
            if inspect.isclass(obj):
                yield from _method_docs(obj)


def _from_stdlib(obj: Any) -> bool:
    """Whether ``obj`` was defined by the standard library (or has no ``__module__``)."""
    module = getattr(obj, "__module__", None)
    return not isinstance(module, str) or module.split(".")[0] in sys.stdlib_module_names


def _method_docs(cls: type) -> Iterator[str]:
    for attr in sorted(vars(cls)):
        if attr.startswith("_"):
            continue
        member = vars(cls)[attr]
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        if not _from_stdlib(member):
            continue  # added to the class by a library (e.g. transformers' Logger methods)
        if inspect.isroutine(member):
            doc = _own_doc(member)
            if doc:
                yield doc


@functools.cache
def source_documents(source: str, min_chars: int) -> tuple[str, ...]:
    """Documents of one source (``"topics"`` or ``"docstrings"``), cached per process."""
    texts = _topic_texts() if source == "topics" else _docstring_texts()
    return tuple(p for text in texts for p in paragraphs(text) if len(p) >= min_chars)


def stable_percent(text: str) -> int:
    """A value in 0..99 fixed by the text alone (md5, independent of PYTHONHASHSEED)."""
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:8], "big") % 100


@functools.cache
def split_documents(
    sources: tuple[str, ...], min_chars: int, validation_percent: int
) -> dict[str, tuple[str, ...]]:
    """``{"train": docs, "validation": docs}``, deduplicated, in source order (cached)."""
    seen: set[str] = set()
    out: dict[str, list[str]] = {"train": [], "validation": []}
    for source in sources:
        for doc in source_documents(source, min_chars):
            if doc in seen:
                continue
            seen.add(doc)
            split = "validation" if stable_percent(doc) < validation_percent else "train"
            out[split].append(doc)
    return {k: tuple(v) for k, v in out.items()}


def _check_config(config: EmbeddedCorpusConfig) -> tuple[str, ...]:
    sources = tuple(config.sources)
    if not sources:
        raise ConfigError(f"embedded corpus: 'sources' is empty; choose from {list(SOURCES)}")
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ConfigError(f"embedded corpus: unknown source(s) {unknown}; allowed: {list(SOURCES)}")
    if len(set(sources)) != len(sources):
        raise ConfigError(f"embedded corpus: 'sources' lists a source twice: {list(sources)}")
    if not 0 <= config.validation_percent <= 100:
        raise ConfigError(
            f"embedded corpus: validation_percent={config.validation_percent} must be in 0..100"
        )
    if config.min_chars < 1:
        raise ConfigError(f"embedded corpus: min_chars={config.min_chars} must be >= 1")
    return sources


class EmbeddedCorpus:
    """Unlabeled corpus of Python's own documentation prose; yields ``{"text": str}``."""

    supervised = False
    splits = SPLITS

    def __init__(self, config: EmbeddedCorpusConfig, context: Any = None) -> None:
        self.config = config
        self._sources = _check_config(config)

    def documents(self, split: str) -> tuple[str, ...]:
        """The split's documents as a tuple of strings (shared, cached)."""
        if split not in SPLITS:
            raise DataError(f"embedded corpus has no split {split!r}; splits: {list(SPLITS)}")
        docs = split_documents(self._sources, self.config.min_chars, self.config.validation_percent)
        return docs[split]

    def examples(self, split: str) -> Iterator[dict[str, Any]]:
        for doc in self.documents(split):
            yield {"text": doc}

    def num_examples(self, split: str) -> int:
        return len(self.documents(split))
