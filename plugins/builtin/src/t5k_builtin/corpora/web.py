"""The pre-training corpora of P Table 8 (facts §4.3), read through ``datasets``.

One class per plugin: :class:`C4Corpus` (TFDS ``c4/en``), :class:`C4UnfilteredCorpus`
(``en.noclean``), :class:`RealNewsLikeCorpus`, :class:`WebTextLikeCorpus`,
:class:`WikipediaCorpus` and :class:`WikipediaTbcCorpus`. Each reads exactly one source, in
the order of ``WebCorpusConfig``'s docstring:

* ``raw_files``: raw pages (``raw_pages.read_raw_pages``) cleaned once by
  ``c4_clean.C4Cleaner`` with ``config.cleaning`` (facts §4.2), split train/validation by
  ``c4_clean.is_validation_url`` as C4 does (facts §4.1). Cleaning needs the whole corpus
  (line dedupe), so its output is written once as JSON lines under
  ``<run_dir>/cache/web_corpora/`` (or a temporary directory) and read from there.
* ``data_files`` / ``validation_files``: local shards in the hub's schema (C4: ``text``,
  ``timestamp``, ``url``; Wikipedia: ``id``, ``url``, ``title``, ``text``). JSON lines
  (``.json``/``.jsonl``, optionally ``.gz``) are read by a tolerant reader: malformed JSON,
  non-UTF-8 bytes and records without the text field are counted in :attr:`report` and
  skipped with one warning per file, or raise DataError when ``config.strict``; empty texts
  are always counted and skipped. ``.parquet`` goes through datasets' parquet builder.
* else the hub: ``datasets.load_dataset(**hub_arguments(split))`` (see
  :meth:`_WebCorpus.hub_arguments`), streamed by default.

Every source becomes a ``datasets.IterableDataset`` (local files through
``IterableDataset.from_generator`` with one shard per file), then, in this order, the
seeded buffer shuffle (``shuffle_buffer`` > 0, seed = the run's seed) and, when
``world_size`` > 1, the shard ``datasets.distributed.split_dataset_by_node`` gives
``rank`` (whole files per rank when their number divides by the world size, else every
world_size-th document), so shards are disjoint and together cover the corpus: for
separate jobs over parts of a corpus, not for the processes of one ``t5k run``, which all
read the whole stream (:func:`resolve_rank`). Re-iterating gives the same sequence,
which the run loop relies on to cycle passes and resume by skipping documents.

Local sources are read offline (``HF_DATASETS_OFFLINE=1``) with progress bars off and
datasets' files under the corpus's cache directory, never the user's hub cache.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import gzip
import hashlib
import json
import logging
import os
import sys
import tempfile
import warnings
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from t5k_builtin.configs import C4CleanConfig, WebCorpusConfig
from t5k_builtin.corpora import c4_clean, raw_pages
from t5kernel.errors import ConfigError, DataError

#: shard endings -> reader ("text" only for Toronto Books Corpus files)
SHARD_FORMATS = {
    ".jsonl.gz": "json", ".json.gz": "json", ".jsonl": "json", ".json": "json",
    ".parquet": "parquet",
}
TBC_FORMATS = {**SHARD_FORMATS, ".txt": "text"}
GROVER_DOMAINS = ("https://raw.githubusercontent.com/rowanz/grover/"
                  "38f7184bd87237ae2d3bc330b99f1e2e246f6d51/realnews/"
                  "domain_to_allowed_subdomains.json")
OPENWEBTEXT_URLS = "https://mega.nz/#F!EZZD0YwJ!9_PlEQzdMVLaNdKv_ICNVQ (OpenWebText.zip)"


def shard_format(path: Path, formats: dict[str, str]) -> str | None:
    name = path.name.lower()
    return next((fmt for end, fmt in formats.items() if name.endswith(end)), None)


def resolve_shards(patterns: list[str], what: str, formats: dict[str, str]) -> list[Path]:
    """Files named by ``patterns`` (files, directories, globs), in order; DataError if bad."""
    return raw_pages.resolve_by_ending(patterns, what, lambda path: shard_format(path, formats),
                                       ", ".join(formats))


def resolve_rank(rank: int, world_size: int, name: str) -> tuple[int, int]:
    """(rank, world_size) of the shard to read; -1 (configs written before shards became
    explicit) = the whole corpus, 0 of 1.

    Not the launcher's RANK / WORLD_SIZE: every process of a ``t5k run`` reads the same
    stream and keeps its share of each global batch (the run loop's data parallelism,
    which also resumes every rank from rank 0's stream position). A corpus sharded by
    rank underneath dropped (W-1)/W of the documents each rank read and resumed the
    other ranks at rank 0's position."""
    rank, world = (0 if rank == -1 else int(rank)), (1 if world_size == -1 else int(world_size))
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"{name}: rank={rank}, world_size={world}; need world_size >= 1 "
                          "and 0 <= rank < world_size")
    return rank, world


@contextlib.contextmanager
def quiet_datasets(offline: bool, cache_dir: str | None = None) -> Iterator[Any]:
    """``datasets`` with progress bars and logs off; for local data also offline and with
    its builder files (locks) under ``cache_dir`` instead of the user's cache.

    Offline = ``HF_DATASETS_OFFLINE=1`` (read by ``datasets`` when first imported) plus its
    runtime flags (``config.HF_HUB_OFFLINE``, which datasets 4 checks, and the older
    ``HF_DATASETS_OFFLINE``). All of it is restored on exit, so a hub corpus built later
    in the same process keeps the user's own online/offline choice.
    """
    env = os.environ.get("HF_DATASETS_OFFLINE")
    first_import = "datasets" not in sys.modules
    if offline:
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets

    cfg = datasets.config
    user_offline = cfg.HF_HUB_OFFLINE
    if first_import and offline:  # datasets read our "1"; work out what the user had
        from huggingface_hub import constants

        user_offline = (constants.HF_HUB_OFFLINE if env is None
                        else env.upper() in cfg.ENV_VARS_TRUE_VALUES)
    saved = (cfg.HF_DATASETS_CACHE, datasets.is_progress_bar_enabled(),
             datasets.utils.logging.get_verbosity())
    if offline:
        cfg.HF_HUB_OFFLINE = cfg.HF_DATASETS_OFFLINE = True
    if cache_dir is not None:
        cfg.HF_DATASETS_CACHE = Path(cache_dir)
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity(logging.CRITICAL)  # our DataError says it once
    try:
        yield datasets
    finally:
        if env is None:
            os.environ.pop("HF_DATASETS_OFFLINE", None)
        else:
            os.environ["HF_DATASETS_OFFLINE"] = env
        cfg.HF_HUB_OFFLINE = cfg.HF_DATASETS_OFFLINE = user_offline
        cfg.HF_DATASETS_CACHE = saved[0]
        datasets.utils.logging.set_verbosity(saved[2])
        if saved[1]:
            datasets.enable_progress_bars()


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def load_hub(arguments: dict[str, Any], owner: str, hint: str) -> Any:
    """``datasets.load_dataset(**arguments)`` (quiet; needs internet unless cached), a
    failure turned into one DataError line ending with ``hint`` (how to read local copies
    instead). Shared by every corpus and task plugin that reads the hub."""
    with quiet_datasets(False) as datasets:
        try:
            return datasets.load_dataset(**arguments)
        except Exception as err:  # network, auth, unknown config: one line for the user
            raise DataError(
                f"{owner}: cannot load hub dataset {arguments['path']!r} "
                f"({arguments.get('name')}, split {arguments['split']!r}): {_first_line(err)}; "
                f"{hint}") from err


def _meta(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


def project(row: dict[str, Any], text_field: str, meta: tuple[str, ...]) -> dict[str, Any]:
    """A source row as ``{"text": ..., <meta>: str | None}`` (the hub's schema, as strings)."""
    text = row.get(text_field)
    return {"text": text if isinstance(text, str) else "",
            **{key: _meta(row.get(key)) for key in meta}}


class ShardReader:
    """Reads local shards to ``{"text", <meta>}`` records, tolerating bad JSON lines.

    Every skipped record is remembered by (file, line or row number) in :attr:`skipped`,
    so :meth:`counts` reports each bad record once however often, or however partially
    (interleaving restarts a source), a file is read. Reasons use ``raw_pages``' names:
    ``malformed_json``, ``not_utf8``, ``missing_field``, ``empty``, ``corrupt_file``.
    """

    def __init__(self, name: str, strict: bool, cache_dir: str) -> None:
        self.name, self.strict, self.cache_dir = name, strict, cache_dir
        self.skipped: dict[str, dict[int, str]] = collections.defaultdict(dict)

    def __deepcopy__(self, memo: dict) -> ShardReader:
        # datasets deep-copies example iterables (e.g. interleave_datasets); every copy
        # must count into this one reader, which holds no per-iteration state
        return self

    def counts(self) -> collections.Counter:
        """``skipped:<reason>`` -> number of distinct bad records seen so far."""
        return collections.Counter(f"skipped:{reason}" for lines in self.skipped.values()
                                   for reason in lines.values())

    def generate(self, files: list[str], text_field: str, meta: tuple[str, ...],
                 formats: dict[str, str]) -> Iterator[dict[str, Any]]:
        """The records of ``files`` in order (the generator of ``from_generator``)."""
        for name in files:
            path = Path(name)
            read: collections.Counter = collections.Counter()
            first: dict[str, str] = {}  # reason -> where and what its first record was
            bad = functools.partial(self._bad, name, read, first)
            if shard_format(path, formats) == "json":
                rows = self._json_rows(path, text_field, bad)
            else:
                rows = self._builder_rows(path, shard_format(path, formats), text_field, bad)
            for number, row in rows:
                record = project(row, text_field, meta)
                if record["text"].strip():
                    yield record
                else:
                    bad(number, "empty", "")
            if read:
                summary = ", ".join(f"{n} {k}" + (f" (first: {first[k]})" if first.get(k) else "")
                                    for k, n in sorted(read.items()))
                warnings.warn(f"{self.name}: {path}: skipped records: {summary}", stacklevel=2)

    def _bad(self, name: str, read: collections.Counter, first: dict[str, str], number: int,
             reason: str, detail: str) -> None:
        """Count (or, when strict, raise for) a malformed record; empty texts only count.
        The first record of each reason is described in the warning (which field lacks)."""
        if self.strict and reason != "empty":
            raise DataError(f"{self.name}: {name}:{number}: {detail} (strict mode; set "
                            "strict=False to count and skip such records)")
        read[reason] += 1
        if detail:
            first.setdefault(reason, f"record {number}: {detail}")
        self.skipped[name][number] = reason

    def _json_rows(self, path: Path, field: str, bad: Any) -> Iterator[tuple[int, dict]]:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        number = 0
        try:
            with opener(path, "rb") as f:
                for number, raw in enumerate(f, start=1):
                    if not raw.strip():
                        continue
                    try:
                        line = raw.decode("utf-8").lstrip("\ufeff")
                    except UnicodeDecodeError as err:
                        bad(number, "not_utf8", f"line is not valid UTF-8 ({err.reason})")
                        continue
                    if number == 1 and line.lstrip().startswith("["):
                        raise DataError(f"{self.name}: {path} is a JSON array; the hub schema "
                                        "is JSON lines (one object per line)")
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as err:
                        bad(number, "malformed_json", f"malformed JSON ({err.msg})")
                        continue
                    if not isinstance(record, dict):
                        bad(number, "malformed_json", "JSON value is not an object")
                        continue
                    if not isinstance(record.get(field), str):
                        bad(number, "missing_field", f"record lacks a string {field!r} "
                            "(set text_field)")
                        continue
                    try:
                        record[field].encode("utf-8")
                    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON
                        bad(number, "not_utf8", "text is not valid UTF-8")
                        continue
                    yield number, record
        except (OSError, EOFError, zlib.error) as err:  # truncated / corrupt gzip
            if self.strict:
                raise DataError(f"{self.name}: {path} cannot be read: {err}") from err
            bad(number + 1, "corrupt_file", "")

    def _builder_rows(self, path: Path, builder: str, field: str,
                      bad: Any) -> Iterator[tuple[int, dict]]:
        """Rows of a .parquet / .txt file through datasets' packaged builder, streamed."""
        field = "text" if builder == "text" else field
        with quiet_datasets(True, self.cache_dir) as datasets:
            try:
                ds = datasets.load_dataset(builder, data_files=[str(path)], split="train",
                                           streaming=True, cache_dir=self.cache_dir)
            except Exception as err:  # datasets raises many types; name the file
                raise DataError(f"{self.name}: cannot read {str(path)!r} as {builder}: "
                                f"{_first_line(err)}") from err
        if ds.column_names is not None and field not in ds.column_names:
            raise DataError(f"{self.name}: {path} has no column {field!r} "
                            f"(columns: {ds.column_names}); set text_field")
        try:
            for number, row in enumerate(ds, start=1):
                if isinstance(row.get(field), str):
                    yield number, row
                else:
                    bad(number, "missing_field", f"row has no string {field!r}")
        except DataError:
            raise
        except Exception as err:
            raise DataError(f"{self.name}: cannot read {str(path)!r} as {builder}: "
                            f"{_first_line(err)}") from err


def _file_stamp(path: str | None) -> Any:
    """Path, size and mtime of a file (for cache keys); a missing file is just its path."""
    if not path:
        return None
    file = Path(path).expanduser().absolute()
    if not file.is_file():
        return [str(file)]
    st = file.stat()
    return [str(file), st.st_size, st.st_mtime_ns]


class _WebCorpus:
    """Shared machinery of the Table 8 corpora; subclasses set the schema and filters."""

    name = "c4"
    #: hub-schema fields kept besides ``text``
    meta: tuple[str, ...] = ("url", "timestamp")
    #: the hub dataset's splits
    hub_splits: tuple[str, ...] = ("train", "validation")
    supervised = False

    def __init__(self, config: WebCorpusConfig, context: Any = None) -> None:
        self.config = config
        self.seed = int(getattr(context, "seed", 0) or 0)
        self.rank, self.world_size = resolve_rank(config.rank, config.world_size, self.name)
        if config.shuffle_buffer < 0:
            raise ConfigError(f"{self.name}: shuffle_buffer={config.shuffle_buffer}; need >= 0 "
                              "(0 = corpus order)")
        if config.validation_files and not config.data_files:
            raise ConfigError(f"{self.name}: validation_files need data_files (raw_files are "
                              "split by URL hash; the hub has its own validation split)")
        self.source = ("raw_files" if config.raw_files
                       else "data_files" if config.data_files else "hub")
        self._check_config()
        self._files: dict[str, list[Path]] = {}
        if self.source == "raw_files":
            self._raw = raw_pages.resolve_files(list(config.raw_files), f"{self.name} raw_files")
            self.splits: tuple[str, ...] = ("train", "validation")
        elif self.source == "data_files":
            self._files["train"] = resolve_shards(list(config.data_files),
                                                  f"{self.name} data_files", SHARD_FORMATS)
            if config.validation_files:
                self._files["validation"] = resolve_shards(
                    list(config.validation_files), f"{self.name} validation_files",
                    SHARD_FORMATS)
            self.splits = tuple(self._files)
        else:
            self.splits = self.hub_splits
        run_dir = getattr(context, "run_dir", None)
        self._tmp = None if run_dir is not None else tempfile.TemporaryDirectory(
            prefix="t5k-web-corpus-")
        self._cache_root = Path(run_dir) / "cache" if run_dir is not None else Path(
            self._tmp.name)
        self._cache_dir = str(self._cache_root / "datasets")
        self._reader = ShardReader(self.name, config.strict, self._cache_dir)
        self._streams: dict[str, Any] = {}
        self._pass_counts: dict[Any, collections.Counter] = {}
        self._raw_report: collections.Counter = collections.Counter()
        self._cleaned: Path | None = None

    # -- hooks for subclasses --------------------------------------------------------
    def _check_config(self) -> None:
        """ConfigError for settings this corpus cannot use."""

    @functools.cached_property
    def domains(self) -> dict | None:
        """Grover's RealNews domain table, or None (no domain filter)."""
        return None

    @functools.cached_property
    def urls(self) -> set | None:
        """Normalized OpenWebText URLs, or None (no URL filter)."""
        return None

    def _uses_hub(self) -> bool:
        return self.source == "hub"

    # -- sources ---------------------------------------------------------------------
    def hub_arguments(self, split: str) -> dict[str, Any]:
        """What ``datasets.load_dataset`` receives for ``split`` of the hub source."""
        c = self.config
        return {"path": c.hub_path, "name": c.hub_name, "revision": c.revision,
                "streaming": c.streaming, "split": split}

    def _hub(self, arguments: dict[str, Any], text_field: str, meta: tuple[str, ...]) -> Any:
        """A hub dataset as an IterableDataset of ``{"text", <meta>}`` (needs internet
        unless cached)."""
        ds = load_hub(arguments, self.name, "to read local copies set data_files or raw_files")
        with quiet_datasets(False) as datasets:
            if not isinstance(ds, datasets.IterableDataset):
                ds = ds.to_iterable_dataset()
            columns = ds.column_names
            return ds.map(project, fn_kwargs={"text_field": text_field, "meta": meta},
                          remove_columns=columns,
                          features=self._features(datasets, meta)).select_columns(
                              ["text", *meta])

    @staticmethod
    def _features(datasets: Any, meta: tuple[str, ...]) -> Any:
        return datasets.Features({key: datasets.Value("string") for key in ("text", *meta)})

    def _local(self, files: list[Path], text_field: str, meta: tuple[str, ...],
               formats: dict[str, str] = SHARD_FORMATS) -> Any:
        """Local shards as an IterableDataset with one shard per file."""
        gen = functools.partial(self._reader.generate, text_field=text_field, meta=meta,
                                formats=formats)
        with quiet_datasets(True, self._cache_dir) as datasets:
            return datasets.IterableDataset.from_generator(
                gen, features=self._features(datasets, meta),
                gen_kwargs={"files": [str(f) for f in files]})

    def _source(self, split: str) -> Any:
        """The split's documents before shuffling and sharding."""
        if self.source == "raw_files":
            return self._local([self._clean_raw() / f"{split}.jsonl"], "text", self.meta)
        if self.source == "data_files":
            return self._local(self._files[split], self.config.text_field, self.meta)
        return self._hub(self.hub_arguments(split), self.config.text_field, self.meta)

    def dataset(self, split: str) -> Any:
        """The split as this rank's (shuffled) ``datasets.IterableDataset`` (built once)."""
        if split not in self.splits:
            hint = " (set validation_files)" if self.source == "data_files" else ""
            raise DataError(f"{self.name} has no split {split!r}; splits: "
                            f"{list(self.splits)}{hint}")
        if split not in self._streams:
            ds = self._source(split)
            with quiet_datasets(not self._uses_hub(), self._cache_dir):
                from datasets.distributed import split_dataset_by_node

                if self.config.shuffle_buffer > 0:
                    ds = ds.shuffle(seed=self.seed, buffer_size=self.config.shuffle_buffer)
                if self.world_size > 1:
                    ds = split_dataset_by_node(ds, rank=self.rank, world_size=self.world_size)
            self._streams[split] = ds
        return self._streams[split]

    # -- raw pages ---------------------------------------------------------------------
    def _clean_raw(self) -> Path:
        """Clean the raw pages once (facts §4.2) into ``train.jsonl`` / ``validation.jsonl``.

        The output directory is keyed by the cleaning-relevant config and the input files'
        sizes and times, so a changed input or rule cleans again; files are replaced
        atomically (ranks sharing a run directory write identical content)."""
        if self._cleaned is not None:
            return self._cleaned
        c = self.config
        key = {"corpus": self.name, "files": [_file_stamp(str(p)) for p in self._raw],
               "cleaning": dataclasses.asdict(c.cleaning), "strict": c.strict,
               "lists": [_file_stamp(getattr(c, k, None)) for k in ("domains_path", "urls_path")],
               "badwords": _file_stamp(c.cleaning.badwords_path),
               "min_score": getattr(c, "min_score", None)}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        out = self._cache_root / "web_corpora" / f"{self.name}-{digest}"
        done = out / "report.json"
        if not done.is_file():
            out.mkdir(parents=True, exist_ok=True)
            report: collections.Counter = collections.Counter()
            pages = raw_pages.read_raw_pages(list(c.raw_files), strict=c.strict, report=report)
            cleaner = c4_clean.C4Cleaner(c.cleaning, domains=self.domains, urls=self.urls)
            tmp = {s: out / f"{s}.jsonl.tmp{os.getpid()}" for s in ("train", "validation")}
            with open(tmp["train"], "w", encoding="utf-8") as train, \
                    open(tmp["validation"], "w", encoding="utf-8") as valid:
                for page in cleaner.pages(pages):
                    is_valid = c4_clean.is_validation_url(page["url"])
                    (valid if is_valid else train).write(json.dumps(
                        {k: page.get(k) for k in ("url", "text", "timestamp")}) + "\n")
                    report["kept:validation" if is_valid else "kept:train"] += 1
            report.update(cleaner.report)
            for split, path in tmp.items():
                os.replace(path, out / f"{split}.jsonl")
            tmp_done = out / f"report.json.tmp{os.getpid()}"
            tmp_done.write_text(json.dumps(dict(report), sort_keys=True))
            os.replace(tmp_done, done)
        self._raw_report = collections.Counter(json.loads(done.read_text()))
        self._cleaned = out
        return out

    # -- filters on already-cleaned pages (data_files / hub) ---------------------------
    def _filter(self, pages: Iterable[dict], split: str) -> Iterable[dict]:
        """RealNews domains / WebText URLs on C4 pages that did not pass our cleaner (the
        cleaner with every other rule off; its counts join :attr:`report`)."""
        domains, urls = self.domains, self.urls
        if self.source == "raw_files" or (domains is None and urls is None):
            return pages
        only = C4CleanConfig(max_page_chars=0, url_dedupe=False, clean=False, badwords=False,
                             min_sentences_per_page=0, dedupe="none", language="")
        cleaner = c4_clean.C4Cleaner(only, domains=domains, urls=urls)
        self._pass_counts[(split, "filter")] = cleaner.report
        return cleaner.pages(pages)

    # -- Corpus protocol ---------------------------------------------------------------
    def examples(self, split: str) -> Iterator[dict[str, Any]]:
        ds = self.dataset(split)
        counts = self._pass_counts[split] = collections.Counter()

        def nonempty() -> Iterator[dict]:
            for ex in ds:
                if ex["text"] and ex["text"].strip():
                    yield ex
                else:
                    counts["skipped:empty"] += 1

        yield from self._filter(nonempty(), split)

    def num_examples(self, split: str) -> int | None:
        """Known only for cleaned raw pages (counted while cleaning); None otherwise."""
        if self.source != "raw_files" or split not in self.splits:
            return None
        self._clean_raw()
        total = self._raw_report[f"kept:{split}"]
        return len(range(self.rank, total, self.world_size))

    @property
    def report(self) -> collections.Counter:
        """What was skipped: each bad record of a local file once (``skipped:*``), the
        filters of the latest (possibly unfinished) pass over each split, and, for
        raw_files, the reader's and cleaner's counts of the one cleaning run."""
        total = collections.Counter(self._raw_report)
        total.update(self._reader.counts())
        for counts in self._pass_counts.values():
            total.update(counts)
        return total


class C4Corpus(_WebCorpus):
    """C4 ``en`` (P §2.2, Table 8; facts §4.3): hub ``allenai/c4`` / ``en``."""

    name = "c4"


class C4UnfilteredCorpus(_WebCorpus):
    """C4 ``en.noclean`` (P Table 8): raw pages get only the length filter, URL dedupe and
    language id (the config's ``cleaning`` default)."""

    name = "c4_unfiltered"


class RealNewsLikeCorpus(_WebCorpus):
    """C4 ``realnewslike`` (P Table 8): C4 pages of Grover's RealNews domains (facts §4.2
    step 3). The hub's ``realnewslike`` is already filtered; local pages need the table."""

    name = "realnews_like"

    def _check_config(self) -> None:
        path = self.config.domains_path
        if self.source != "hub" and not path:
            raise ConfigError(
                f"{self.name}: {self.source} need domains_path, Grover's "
                f"domain_to_allowed_subdomains.json ({GROVER_DOMAINS}); or leave raw_files "
                "and data_files empty to stream the hub's already filtered 'realnewslike'")
        if path and not Path(path).expanduser().is_file():
            raise DataError(f"{self.name}: domains_path {path!r} does not exist")

    @functools.cached_property
    def domains(self) -> dict | None:
        path = self.config.domains_path
        return c4_clean.C4Cleaner.load_domains(path) if path else None


class WebTextLikeCorpus(_WebCorpus):
    """C4 ``webtextlike`` (P Table 8): C4 pages whose normalized URL is in the OpenWebText
    list with Reddit score >= ``min_score`` (facts §4.2 step 5), from any source. (The
    paper's version also drew on 12 Common Crawl dumps; that is a matter of raw_files.)"""

    name = "webtext_like"

    def _check_config(self) -> None:
        path = self.config.urls_path
        if not path:
            raise ConfigError(
                f"{self.name}: needs urls_path, the OpenWebText URL list (one URL per line, "
                f"optionally URL<TAB>score; TFDS used {OPENWEBTEXT_URLS})")
        if not Path(path).expanduser().is_file():
            raise DataError(f"{self.name}: urls_path {path!r} does not exist")

    @functools.cached_property
    def urls(self) -> set | None:
        return c4_clean.C4Cleaner.load_urls(self.config.urls_path, self.config.min_score)


class WikipediaCorpus(_WebCorpus):
    """English Wikipedia (P Table 8): hub ``wikimedia/wikipedia``, schema id, url, title,
    text; the paper's dump was 2019-03-01 (TFDS ``wikipedia/20190301.en``)."""

    name = "wikipedia"
    meta = ("id", "url", "title")
    hub_splits = ("train",)


class WikipediaTbcCorpus(WikipediaCorpus):
    """Wikipedia + Toronto Books Corpus (P Table 8; not in the public code, facts §4.3).

    Train interleaves the two with ``datasets.interleave_datasets`` (probabilities
    1 - p, p with p = ``tbc_probability``, the run's seed, ``all_exhausted``: the smaller
    source is repeated until both were read whole); documents carry only ``text``. TBC
    comes from ``tbc_files`` (``.txt`` one sentence per line via the text builder, or
    JSON lines / parquet with ``text``), else the hub ``tbc_hub_path``. A validation split
    exists only with ``validation_files``, read as given.
    """

    name = "wikipedia_tbc"

    def _check_config(self) -> None:
        p = self.config.tbc_probability
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"{self.name}: tbc_probability={p}; need 0 <= p <= 1")
        self._tbc_files = (resolve_shards(list(self.config.tbc_files),
                                          f"{self.name} tbc_files", TBC_FORMATS)
                           if self.config.tbc_files else [])

    def _uses_hub(self) -> bool:
        return super()._uses_hub() or (not self._tbc_files and self.config.tbc_probability > 0)

    def tbc_hub_arguments(self) -> dict[str, Any]:
        """What ``datasets.load_dataset`` receives for the hub's Toronto Books Corpus."""
        c = self.config
        return {"path": c.tbc_hub_path, "name": c.tbc_hub_name, "streaming": c.streaming,
                "split": "train"}

    def _source(self, split: str) -> Any:
        wiki = super()._source(split)
        p = self.config.tbc_probability
        if split != "train" or p == 0.0:
            return wiki
        if self._tbc_files:
            tbc = self._local(self._tbc_files, "text", (), TBC_FORMATS)
        else:
            tbc = self._hub(self.tbc_hub_arguments(), "text", ())
        if p == 1.0:
            return tbc
        with quiet_datasets(not self._uses_hub(), self._cache_dir) as datasets:
            return datasets.interleave_datasets(
                [wiki.select_columns(["text"]), tbc], probabilities=[1.0 - p, p],
                seed=self.seed, stopping_strategy="all_exhausted")
