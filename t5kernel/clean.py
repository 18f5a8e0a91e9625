"""``t5k clean IN... OUT``: build a corpus from raw web pages and write it as JSON lines.

The cleaning itself belongs to a corpus plugin (for the C4 family, the paper's rules in
the builtin ``c4_clean`` filter); this command only selects the plugin, hands it the raw
files through its ``raw_files`` option, writes every split it yields to
``OUT/<split>.jsonl`` in the hub's schema (``text``, ``timestamp``, ``url`` where the
corpus provides them) and the plugin's per-rule ``report`` to ``OUT/report.json``.
Files are written under a temporary name and renamed when complete, and existing files
are never overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t5kernel.errors import ConfigError

#: keys of a written record, in the C4 hub order; other keys a corpus yields follow
RECORD_KEYS = ("text", "timestamp", "url")


def clean(inputs: Sequence[str], out_dir: Path, registry: Any, corpus: str = "c4",
          overrides: Sequence[str] = (), console: Any = None) -> dict[str, Any]:
    """Write the corpus built from ``inputs`` to ``out_dir``; return its summary."""
    import dataclasses

    from t5kernel.api import BuildContext
    from t5kernel.checkpoint import atomic_write_text
    from t5kernel.config import compose, plugin_config, validate

    record = registry.get("corpus", corpus)
    if "raw_files" not in {f.name for f in dataclasses.fields(record.config)}:
        builders = sorted(r.name for r in registry.list("corpus")
                          if r.status == "active" and r.config is not None
                          and "raw_files" in {f.name for f in dataclasses.fields(r.config)})
        raise ConfigError(f"corpus {corpus!r} does not build from raw web pages (no raw_files "
                          f"option); corpora that do: {', '.join(builders) or '(none)'}")
    if not inputs:
        raise ConfigError("t5k clean: give at least one input file, directory or glob")
    out_dir = Path(out_dir)
    options = [o if o.startswith("corpus.") else f"corpus.{o}" for o in overrides]
    cfg = compose([], [f"corpus.name={corpus}", *options], registry)
    cfg.corpus.raw_files = [str(p) for p in inputs]
    cfg = validate(cfg, registry)
    built = registry.build("corpus", corpus, plugin_config(cfg.corpus, record),
                           BuildContext(registry=registry, run_dir=None, seed=int(cfg.seed)))
    splits = list(getattr(built, "splits", ("train",)))
    targets = {split: out_dir / f"{split}.jsonl" for split in splits}
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"t5k clean: the output {out_dir} is a file; give a folder (new or "
                          "without the output files)")
    existing = [str(p) for p in [*targets.values(), out_dir / "report.json"] if p.exists()]
    if existing:
        unfinished = "" if (out_dir / "report.json").exists() else (
            "; it has no report.json: an earlier t5k clean into it did not finish")
        raise ConfigError(f"t5k clean: {existing[0]} already exists{unfinished}; choose "
                          "another output folder (nothing was overwritten)")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    try:
        for split, path in targets.items():
            counts[split] = _write_jsonl(path, built.examples(split))
            if console is not None:
                console.print(f"{split}: {counts[split]:,} documents -> {path}")
    except BaseException:  # e.g. the bad-words list cannot be fetched offline
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # an empty folder made here would only block the next try
        raise
    report = {k: int(v) for k, v in sorted(dict(getattr(built, "report", {}) or {}).items())}
    summary = {"corpus": corpus, "inputs": [str(p) for p in inputs], "documents": counts,
               "report": report}
    atomic_write_text(out_dir / "report.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _write_jsonl(path: Path, examples: Any) -> int:
    from t5kernel.checkpoint import atomic_open

    count = 0
    with atomic_open(path) as f:
        for ex in examples:
            rec = {k: ex[k] for k in RECORD_KEYS if k in ex}
            rec.update((k, v) for k, v in ex.items() if k not in rec)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            count += 1
    return count
