"""Raw web pages for C4-style cleaning: Common Crawl WET files and JSON lines (facts §4.2 step 1).

Every reader yields ``{"url": str, "text": str, "timestamp": str}``.

WET (``.wet``, ``.warc.wet``, optionally ``.gz``): a record starts at a line that is exactly
``WARC/1.0`` (after stripping, as TFDS ``c4_utils.split_wet_file`` does); its header runs to
the first empty line and its body to the next ``WARC/1.0`` line. ``Content-Length`` is
deliberately ignored: the synthetic TFDS / cc_net fixtures carry wrong values (SOURCES.md §1
raw_web), and the reference parser ignores it too. Only ``WARC-Type: conversion`` records
are pages; the URL is ``WARC-Target-URI`` and the timestamp ``WARC-Date``. As in the
reference, body lines are stripped and empty lines dropped before joining with ``"\\n"``.
One deliberate difference: the reference drops *any* line starting with ``WARC``,
``Content-`` or ``CONTENT-`` (it cannot tell header from body); here only header lines are
dropped, because the header's end is known.

JSON lines (``.jsonl``, ``.json``, optionally ``.gz``; the released C4 shards are
``.json.gz`` JSON lines): one object per line with string ``url`` and ``text``; the optional
``timestamp`` defaults to ``""``; other keys are ignored.

Bad input is counted in ``report`` (``skipped:malformed_json``, ``skipped:not_utf8``,
``skipped:missing_field``, ``skipped:empty``, ``skipped:corrupt_file``) and skipped, with
one ``warnings.warn`` per file summarising its counts; with ``strict=True`` the first
problem raises DataError naming the file and line. ``report`` also gets ``read:files`` and
``read:pages`` (pages yielded).
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from t5kernel.errors import DataError

#: file name endings the readers accept (longest first where one ends another)
WET_SUFFIXES = (".warc.wet.gz", ".wet.gz", ".warc.wet", ".wet")
JSON_SUFFIXES = (".jsonl.gz", ".json.gz", ".jsonl", ".json")
SUFFIXES = WET_SUFFIXES + JSON_SUFFIXES

_DELIMITER = "WARC/1.0"


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(WET_SUFFIXES):
        return "wet"
    if name.endswith(JSON_SUFFIXES):
        return "json"
    return None


def resolve_files(patterns: list[str], what: str) -> list[Path]:
    """The raw page files named by ``patterns``, in order (DataError for a bad one).

    A pattern is a file, a directory (its files with a known ending, sorted by name, not
    recursive) or a glob (matches sorted). A missing path, an empty match or an unknown
    ending raises DataError naming the pattern and what is allowed.
    """
    return resolve_by_ending(patterns, what, _kind, ", ".join(SUFFIXES))


def resolve_by_ending(patterns: list[str], what: str, kind_of: Callable[[Path], str | None],
                      allowed: str) -> list[Path]:
    """Files named by ``patterns`` (files, directories, globs), in order; a file's format
    comes from ``kind_of`` (None = not accepted; ``allowed`` lists the endings for errors).
    Shared by the raw-page reader and the corpus plugins' shard lists."""
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if any(c in pattern for c in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
            if not matches:
                raise DataError(f"{what}: pattern {pattern!r} matches no file")
        elif path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.is_file() and kind_of(p))
            if not matches:
                raise DataError(f"{what}: directory {pattern!r} holds no {allowed} file")
        elif path.is_file():
            matches = [path]
        else:
            raise DataError(f"{what}: file {pattern!r} does not exist")
        for match in matches:
            if kind_of(match) is None:
                raise DataError(
                    f"{what}: {str(match)!r} has an unsupported ending; allowed: {allowed}"
                )
            files.append(match.absolute())
    return files


class _Problems:
    """Counts one file's bad records; raises at the first one when strict."""

    def __init__(self, path: Path, strict: bool, report: collections.Counter) -> None:
        self.path, self.strict, self.report = path, strict, report
        self.counts: collections.Counter = collections.Counter()
        self.first: dict[str, str] = {}  # reason -> its first record, for the warning

    def skip(self, reason: str, line: int, detail: str) -> None:
        if self.strict:
            raise DataError(f"{self.path}:{line}: {detail} (strict mode; {reason})")
        self.counts[reason] += 1
        self.report[f"skipped:{reason}"] += 1
        self.first.setdefault(reason, f"line {line}: {detail}" if line else detail)

    def warn(self) -> None:
        if self.counts:
            summary = ", ".join(f"{n} {reason} (first: {self.first[reason]})"
                                for reason, n in sorted(self.counts.items()))
            warnings.warn(f"{self.path}: skipped records: {summary}", stacklevel=2)


def _open(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _wet_pages(path: Path, problems: _Problems) -> Iterator[dict]:
    state = "outside"
    header: dict[str, str] = {}
    body: list[str] = []
    start = 0
    bad_utf8 = False

    def finish() -> dict | None:
        if header.get("WARC-Type") != "conversion":
            return None
        if bad_utf8:
            problems.skip("not_utf8", start, "record is not valid UTF-8")
            return None
        url = header.get("WARC-Target-URI", "")
        if not url:
            problems.skip("missing_field", start, "conversion record without WARC-Target-URI")
            return None
        if not body:
            problems.skip("empty", start, f"record of {url} has no text")
            return None
        return {"url": url, "text": "\n".join(body), "timestamp": header.get("WARC-Date", "")}

    with _open(path) as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                if state == "outside":
                    continue
                bad_utf8 = True
                continue
            if line == _DELIMITER:
                if state != "outside":
                    page = finish()
                    if page is not None:
                        yield page
                state, header, body, start, bad_utf8 = "header", {}, [], number, False
            elif state == "header":
                if not line:
                    state = "body"
                else:
                    key, sep, value = line.partition(":")
                    if sep:
                        header[key.strip()] = value.strip()
            elif state == "body" and line:
                body.append(line)
        if state != "outside":
            page = finish()
            if page is not None:
                yield page


def _json_pages(path: Path, problems: _Problems) -> Iterator[dict]:
    with _open(path) as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                problems.skip("not_utf8", number, f"line is not valid UTF-8 ({err.reason})")
                continue
            if number == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                problems.skip("malformed_json", number, f"malformed JSON ({err.msg})")
                continue
            if not isinstance(record, dict):
                problems.skip("malformed_json", number, "JSON value is not an object")
                continue
            url, text = record.get("url"), record.get("text")
            if not isinstance(url, str) or not url or not isinstance(text, str):
                problems.skip("missing_field", number, "record lacks a string 'url' or 'text'")
                continue
            if not text.strip():
                problems.skip("empty", number, f"record of {url} has empty text")
                continue
            timestamp = record.get("timestamp")
            yield {"url": url, "text": text, "timestamp": "" if timestamp is None else str(timestamp)}


def read_raw_pages(
    paths: list[str], strict: bool = False, report: collections.Counter | None = None
) -> Iterator[dict]:
    """Yield the pages of the raw files named by ``paths`` (files, directories, globs), in order.

    The paths are resolved and checked when this is called (a bad one raises DataError
    at once); files are read lazily. See the module docstring for formats and bad records.
    """
    files = resolve_files(list(paths), "raw pages")
    return _read_files(files, strict, collections.Counter() if report is None else report)


def _read_files(files: list[Path], strict: bool, report: collections.Counter) -> Iterator[dict]:
    for path in files:
        problems = _Problems(path, strict, report)
        reader = _wet_pages if _kind(path) == "wet" else _json_pages
        report["read:files"] += 1
        try:
            for page in reader(path, problems):
                report["read:pages"] += 1
                yield page
        except (OSError, EOFError, zlib.error) as err:
            # truncated or corrupt gzip (gzip.BadGzipFile is an OSError)
            if strict:
                raise DataError(f"{path}: cannot be read: {err}") from err
            problems.skip("corrupt_file", 0, f"cannot be read further: {err}")
        problems.warn()
