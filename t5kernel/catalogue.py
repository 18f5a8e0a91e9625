"""The plugin catalogue: ``registry/*.toml`` manifests of plugin distributions we know of.

The catalogue is data, not code: each manifest says which kinds and names a distribution
provides, which paper table/row each reproduces, the kernel API range and how to install
it. ``t5k list-plugins --available`` uses it to show catalogued plugins that are not
installed. The folder is found through ``$T5K_CATALOGUE`` or, in a source checkout (the
README's editable install), as ``registry/`` beside the ``t5kernel`` package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

from t5kernel.api import KINDS
from t5kernel.errors import ConfigError

REQUIRED = {"distribution": str, "summary": str, "install": str, "kernel_api": str,
            "plugins": list}
PLUGIN_REQUIRED = {"kind": str, "name": str, "summary": str}


def catalogue_dir() -> Path | None:
    env = os.environ.get("T5K_CATALOGUE")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent / "registry"
    return here if here.is_dir() else None


def load_manifest(path: Path) -> dict[str, Any]:
    """Parse and check one manifest against the schema (registry/schema.md)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"catalogue manifest {path}: {exc}") from exc
    for key, typ in REQUIRED.items():
        if not isinstance(data.get(key), typ):
            raise ConfigError(f"catalogue manifest {path}: '{key}' must be a {typ.__name__}")
    for i, plugin in enumerate(data["plugins"]):
        for key, typ in PLUGIN_REQUIRED.items():
            if not isinstance(plugin.get(key), typ):
                raise ConfigError(
                    f"catalogue manifest {path}: plugins[{i}].{key} must be a {typ.__name__}")
        if plugin["kind"] not in KINDS:
            raise ConfigError(f"catalogue manifest {path}: plugins[{i}].kind {plugin['kind']!r} "
                              f"is not one of {', '.join(KINDS)}")
    return data


def manifests(directory: Path | None = None) -> list[dict[str, Any]]:
    directory = directory or catalogue_dir()
    if directory is None or not directory.is_dir():
        return []
    return [load_manifest(p) for p in sorted(directory.glob("*.toml"))]


def available_records(kind: str | None = None, directory: Path | None = None) -> list[dict]:
    """One listing row per catalogued plugin, status "available"."""
    rows = []
    for m in manifests(directory):
        for p in m["plugins"]:
            if kind is None or p["kind"] == kind:
                rows.append({
                    "kind": p["kind"], "name": p["name"], "distribution": m["distribution"],
                    "version": m.get("version", ""), "summary": p["summary"],
                    "status": "available", "api_version": m["kernel_api"],
                    "entry_point": "", "error": None, "install": m["install"],
                    "paper": p.get("paper", ""),
                })
    return rows
