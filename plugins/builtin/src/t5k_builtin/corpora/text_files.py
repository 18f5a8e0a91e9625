"""Unlabeled text from local files, read through the ``datasets`` library (DESIGN §3).

Formats, by extension: ``.txt`` (the ``text`` builder; ``txt_unit`` "line", "paragraph"
= blank-line separated, or "file" = the builder's ``sample_by="document"``), ``.jsonl`` /
``.json`` (the ``json`` builder: JSON lines, or a JSON array of records) and
``.parquet`` (the ``parquet`` builder); the latter two take the text from
``config.text_field``. Paragraphs are separated by an empty line (the text builder's
rule: a line of spaces does not separate). Texts are yielded with surrounding whitespace
stripped. A path may also be a directory (its files with those extensions,
sorted by name, not recursive) or a glob pattern (matches sorted).

Loading is fully offline (``HF_DATASETS_OFFLINE`` and datasets' runtime flags, restored
afterwards), progress bars are off while loading, and the Arrow cache goes to
``<run_dir>/cache/datasets`` (or a temporary directory owned by the corpus), never the
user's hub cache. Each file is loaded on its own so errors can name it; the files are
then concatenated in the configured order, which with each builder's in-file order makes
``examples()`` deterministic. Texts that are empty or only whitespace are dropped, and
so are empty (0-byte) files.
"""

from __future__ import annotations

import glob
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from t5k_builtin.configs import TextFilesConfig
from t5kernel.errors import ConfigError, DataError

#: extension -> datasets packaged builder
BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
#: txt_unit -> the text builder's sample_by
TXT_UNITS = {"line": "line", "paragraph": "paragraph", "file": "document"}


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def resolve_paths(patterns: list[str], what: str) -> list[Path]:
    """Files named by ``patterns`` (files, directories or globs), in order; DataError if bad."""
    allowed = ", ".join(BUILDERS)
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if any(c in pattern for c in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(path)))
            if not matches:
                raise DataError(f"text_files: {what} pattern {pattern!r} matches no file")
        elif path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.is_file() and _suffix(p) in BUILDERS)
            if not matches:
                raise DataError(f"text_files: {what} directory {pattern!r} holds no {allowed} file")
        elif path.is_file():
            matches = [path]
        else:
            raise DataError(f"text_files: {what} file {pattern!r} does not exist")
        for match in matches:
            if _suffix(match) not in BUILDERS:
                raise DataError(
                    f"text_files: {str(match)!r} has unsupported extension "
                    f"{match.suffix or '(none)'!r}; allowed: {allowed}"
                )
            files.append(match.absolute())
    return files


def _quiet_datasets() -> Any:
    """``datasets`` offline and quiet while local files load, the user's settings restored
    afterwards (so a hub corpus built later in the same process can still go online)."""
    from t5k_builtin.corpora.web import quiet_datasets

    return quiet_datasets(offline=True)


def _root_causes(err: BaseException) -> str:
    """``err``'s first line, then each underlying cause's type and first line: datasets
    wraps the real reason (a decoding or JSON parse error) in a generic one."""
    parts, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        line = (str(err).strip().splitlines() or [""])[0]
        parts.append(f"{type(err).__name__}: {line}" if parts else (line or type(err).__name__))
        err = err.__cause__ or err.__context__
    return "; caused by ".join(parts)


def _load_file(datasets: Any, path: Path, config: TextFilesConfig, cache_dir: str) -> Any:
    """One file as a Dataset with a single non-empty string column ``text`` (None for an
    empty file, which has no texts to give)."""
    if path.stat().st_size == 0:
        return None
    builder = BUILDERS[_suffix(path)]
    kwargs: dict[str, Any] = {}
    if builder == "text":
        kwargs["sample_by"] = TXT_UNITS[config.txt_unit]
    try:
        ds = datasets.load_dataset(
            builder, data_files=[str(path)], split="train", cache_dir=cache_dir, **kwargs
        )
    except Exception as err:  # datasets raises many types; the user needs the file name
        raise DataError(f"text_files: cannot read {str(path)!r} as {builder}: "
                        f"{_root_causes(err)}") from err
    field = "text" if builder == "text" else config.text_field
    if field not in ds.column_names:
        raise DataError(
            f"text_files: records in {str(path)!r} have no field {field!r} "
            f"(fields: {ds.column_names}); set text_field"
        )
    column = ds.data.column(field)
    if column.null_count:
        raise DataError(
            f"text_files: {column.null_count} record(s) in {str(path)!r} lack field {field!r}"
        )
    if str(column.type) not in ("string", "large_string"):
        raise DataError(
            f"text_files: field {field!r} in {str(path)!r} holds {column.type}, not text"
        )
    ds = ds.select_columns([field])
    if field != "text":
        ds = ds.rename_column(field, "text")
    return ds.filter(
        lambda texts: [bool(t.strip()) for t in texts], input_columns="text", batched=True
    )


class TextFiles:
    """Unlabeled corpus of local files; yields ``{"text": str}`` in file order."""

    supervised = False

    def __init__(self, config: TextFilesConfig, context: Any = None) -> None:
        if config.txt_unit not in TXT_UNITS:
            raise ConfigError(
                f"text_files: txt_unit={config.txt_unit!r}; allowed: {list(TXT_UNITS)}"
            )
        if not config.paths:
            raise DataError(
                "text_files: no paths configured; set corpus.paths to .txt/.jsonl/.json/.parquet "
                "files, directories or glob patterns"
            )
        self.config = config
        self._files = {"train": resolve_paths(list(config.paths), "train")}
        if config.validation_paths:
            self._files["validation"] = resolve_paths(list(config.validation_paths), "validation")
        self.splits = tuple(self._files)
        run_dir = getattr(context, "run_dir", None)
        if run_dir is not None:
            self._tmp = None
            self._cache_dir = str(Path(run_dir) / "cache" / "datasets")
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="t5k-text-files-")
            self._cache_dir = self._tmp.name
        self._datasets: dict[str, Any] = {}

    def dataset(self, split: str) -> Any:
        """The split as a ``datasets.Dataset`` with one column, ``text`` (loaded once)."""
        if split not in self._files:
            raise DataError(
                f"text_files has no split {split!r}; splits: {list(self.splits)}"
                + ("" if self.config.validation_paths else " (set validation_paths)")
            )
        if split not in self._datasets:
            with _quiet_datasets() as datasets:
                loaded = (_load_file(datasets, f, self.config, self._cache_dir)
                          for f in self._files[split])
                parts = [part for part in loaded if part is not None]
                ds = (parts[0] if len(parts) == 1
                      else datasets.concatenate_datasets(parts) if parts else [])
            if len(ds) == 0:
                names = ", ".join(str(f) for f in self._files[split])
                raise DataError(f"text_files: the {split} split has no non-empty text ({names})")
            self._datasets[split] = ds
        return self._datasets[split]

    def examples(self, split: str) -> Iterator[dict[str, Any]]:
        for batch in self.dataset(split).iter(batch_size=1000):
            for text in batch["text"]:
                yield {"text": text.strip()}

    def num_examples(self, split: str) -> int:
        return len(self.dataset(split))
