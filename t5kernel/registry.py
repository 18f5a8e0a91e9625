"""The live registry: discovers plugins through entry points, lists and resolves them.

Discovery (pluggy): every entry point of the ``t5kernel`` group names a small hooks
module; the module is imported and registered with a pluggy ``PluginManager``, then each
hook implementation is called *separately* so that one failing plugin is reported with
its distribution and cannot hide the others. Records keep targets as ``"module:attr"``
strings: nothing is imported from an implementation until a run selects it.

Environment switches:
- ``T5K_STRICT_PLUGINS=1``: any broken, incompatible or conflicting plugin is an error
  (tests and CI use it).
- ``T5K_DISABLE_PLUGINS=dist[,dist...]``: do not load those distributions.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata as md
import os
import re
from collections.abc import Iterable
from typing import Any

import pluggy

from t5kernel import hookspecs
from t5kernel.api import (
    API_VERSION,
    ENTRY_POINT_GROUP,
    KINDS,
    PROTOCOL_FOR_KIND,
    BuildContext,
    PluginSpec,
    Task,
    is_api_version,
    protocol_members,
)
from t5kernel.errors import PluginConflictError, PluginError, PluginNotFoundError

STRICT_ENV = "T5K_STRICT_PLUGINS"
DISABLE_ENV = "T5K_DISABLE_PLUGINS"

ACTIVE, BROKEN, DISABLED, INCOMPATIBLE = "active", "broken", "disabled", "incompatible"


@dataclasses.dataclass(frozen=True)
class PluginRecord:
    """A plugin as the registry knows it: the spec plus where it came from and its state."""

    kind: str | None
    name: str
    distribution: str
    version: str
    status: str
    summary: str = ""
    target: Any = None
    config: type | None = None
    api_version: tuple[int, int] | None = None
    entry_point: str = ""
    error: str = ""
    #: other distributions registering the same (kind, name); set when status is broken
    #: for that reason only, so an explicit ``distribution:name`` choice can still use it
    conflicts_with: tuple[str, ...] = ()

    @property
    def qualified_name(self) -> str:
        return f"{self.distribution}:{self.name}"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "summary": self.summary,
            "status": self.status,
            "api_version": ".".join(map(str, self.api_version)) if self.api_version else None,
            "entry_point": self.entry_point,
            "error": self.error or None,
        }

    def load(self) -> Any:
        """Import and return the target (a factory called as ``target(config, context)``)."""
        if self.status != ACTIVE:
            raise PluginError(
                f"{self.kind} plugin {self.name!r} from {self.distribution} is {self.status}"
                + (f": {self.error}" if self.error else "")
            )
        if callable(self.target):
            return self.target
        module_name, _, attr = str(self.target).partition(":")
        try:
            module = importlib.import_module(module_name)
            obj: Any = module
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # the plugin's own failure: report, do not crash the kernel
            raise PluginError(
                f"{self.kind} plugin {self.name!r} from {self.distribution} failed to load "
                f"{self.target}: {type(exc).__name__}: {exc}"
            ) from exc
        return obj


def _api_compatible(declared: tuple[int, int]) -> bool:
    return declared[0] == API_VERSION[0] and declared[1] <= API_VERSION[1]


def _strict_default() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503: case, runs of -_. alike)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _disabled_default() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


class Registry:
    """Every plugin record discovered, with lookup, listing and building."""

    def __init__(self, records: Iterable[PluginRecord]):
        self.records: list[PluginRecord] = list(records)
        self._mark_conflicts()

    # ------------------------------------------------------------------ discovery
    @classmethod
    def discover(
        cls,
        *,
        strict: bool | None = None,
        disabled: set[str] | None = None,
        entry_points: Iterable[md.EntryPoint] | None = None,
    ) -> Registry:
        """Load every ``t5kernel`` entry point and collect its records."""
        strict = _strict_default() if strict is None else strict
        disabled = _disabled_default() if disabled is None else disabled
        eps = list(md.entry_points(group=ENTRY_POINT_GROUP) if entry_points is None else entry_points)
        pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        pm.add_hookspecs(hookspecs)
        records: list[PluginRecord] = []
        origin: dict[str, tuple[str, str, str]] = {}  # pluggy name -> (dist, version, ep)
        disabled_dists = {_normalized(d) for d in disabled}
        for ep in sorted(eps, key=lambda e: (_dist_name(e), e.name)):
            dist, version = _dist_name(ep), _dist_version(ep)
            ep_label = f"{ep.name} = {ep.value}"
            if _normalized(dist) in disabled_dists or ep.name in disabled:
                records.append(
                    PluginRecord(None, ep.name, dist, version, DISABLED, entry_point=ep_label)
                )
                continue
            try:
                module = ep.load()
                plugin_name = f"{dist}:{ep.name}"
                pm.register(module, name=plugin_name)
                try:  # a hook implementation no spec knows (a misspelled hook name)
                    pm.check_pending()
                except pluggy.PluginValidationError:
                    pm.unregister(name=plugin_name)
                    raise
            except Exception as exc:
                records.append(
                    PluginRecord(
                        None, ep.name, dist, version, BROKEN, entry_point=ep_label,
                        error=f"failed to import hooks module {ep.value}: {type(exc).__name__}: {exc}",
                    )
                )
                continue
            origin[plugin_name] = (dist, version, ep_label)
        for kind in KINDS:
            hook = getattr(pm.hook, hookspecs.HOOK_FOR_KIND[kind])
            for impl in hook.get_hookimpls():
                dist, version, ep_label = origin.get(impl.plugin_name, (impl.plugin_name, "", ""))
                records.extend(_call_impl(impl, kind, dist, version, ep_label))
        registry = cls(records)
        if strict:
            bad = [r for r in registry.records if r.status in (BROKEN, INCOMPATIBLE)]
            if bad:
                lines = "; ".join(
                    f"{r.kind or 'plugin'} {r.name!r} ({r.distribution}): {r.status}: {r.error}"
                    for r in bad
                )
                raise PluginError(f"strict plugin mode ({STRICT_ENV}=1): {lines}")
        return registry

    def _mark_conflicts(self) -> None:
        by_key: dict[tuple[str, str], list[int]] = {}
        for i, rec in enumerate(self.records):
            if rec.status == ACTIVE and rec.kind:
                by_key.setdefault((rec.kind, rec.name), []).append(i)
        for (kind, name), idxs in by_key.items():
            dists = {self.records[i].distribution for i in idxs}
            if len(dists) < 2:
                for i in idxs[1:]:  # one distribution registering it more than once
                    self.records[i] = dataclasses.replace(
                        self.records[i], status=BROKEN,
                        error=f"{kind} {name!r} is registered more than once by "
                              f"{self.records[i].distribution}; the first one is used")
                continue
            for i in idxs:
                rec = self.records[i]
                others = sorted(d for d in dists if d != rec.distribution)
                self.records[i] = dataclasses.replace(
                    rec,
                    status=BROKEN,
                    conflicts_with=tuple(others),
                    error=(
                        f"{kind} {name!r} is also registered by {', '.join(others)}; "
                        f"select one as '<distribution>:{name}'"
                    ),
                )

    # ------------------------------------------------------------------ lookup
    def list(self, kind: str | None = None) -> list[PluginRecord]:
        # a distribution that failed to load (or is disabled) has no known kinds: it is
        # listed under every kind, since it may be what the user is looking for
        recs = [r for r in self.records if kind is None or r.kind in (kind, None)]
        order = {k: i for i, k in enumerate(KINDS)}
        return sorted(recs, key=lambda r: (order.get(r.kind or "", 99), r.name, r.distribution))

    def get(self, kind: str, name: str) -> PluginRecord:
        """The active plugin of ``kind`` called ``name`` (or ``distribution:name``)."""
        if kind not in KINDS:
            raise PluginNotFoundError(f"unknown plugin kind {kind!r}; kinds are: {', '.join(KINDS)}")
        dist, _, bare = name.rpartition(":")
        candidates = [
            r for r in self.records if r.kind == kind and r.name == bare
            and (not dist or r.distribution == dist)
        ]
        if dist:  # an explicit choice settles a conflict
            candidates = [
                dataclasses.replace(r, status=ACTIVE, error="", conflicts_with=())
                if r.conflicts_with else r
                for r in candidates
            ]
        active = [r for r in candidates if r.status == ACTIVE]
        if len(active) == 1:
            return active[0]
        if candidates:
            rec = candidates[0]
            if rec.conflicts_with:
                provs = ", ".join(sorted(r.distribution for r in candidates))
                raise PluginConflictError(
                    f"{kind} {bare!r} is registered by several distributions ({provs}); "
                    f"choose one, e.g. '{candidates[0].distribution}:{bare}'"
                )
            raise PluginError(
                f"{kind} plugin {bare!r} from {rec.distribution} is {rec.status}"
                + (f": {rec.error}" if rec.error else "")
            )
        known = sorted({r.name for r in self.records if r.kind == kind and r.status == ACTIVE})
        if dist:  # the name exists, but not in the distribution given
            providers = sorted({r.distribution for r in self.records
                                if r.kind == kind and r.name == bare and r.status == ACTIVE})
            if providers:
                raise PluginNotFoundError(
                    f"distribution {dist!r} provides no {kind} {bare!r} (or is not "
                    f"installed); {bare!r} is provided by {', '.join(providers)}: use "
                    f"{bare!r} or {providers[0] + ':' + bare!r}")
        close = difflib.get_close_matches(bare, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        unloaded = {r.distribution: r for r in self.records
                    if r.kind is None and r.status in (BROKEN, DISABLED)}
        catalogued = _catalogue_hint(kind, bare, unloaded)
        if not catalogued and unloaded:  # it may come from one of them
            catalogued = " Not searched: " + "; ".join(
                f"{d} ({'disabled by ' + DISABLE_ENV if r.status == DISABLED else 'failed to load'})"
                for d, r in sorted(unloaded.items())) + "."
        hint += catalogued
        raise PluginNotFoundError(
            f"unknown {kind} {bare!r}.{hint} Available {kind} plugins: {', '.join(known) or 'none'}"
        )

    def build(self, kind: str, name: str, config: Any, context: BuildContext | None = None) -> Any:
        """Instantiate plugin ``(kind, name)`` with its (validated) config dataclass."""
        record = self.get(kind, name)
        factory = record.load()
        ctx = context or BuildContext(registry=self)
        if ctx.registry is None:
            ctx.registry = self
        built = factory(config, ctx)
        _check_interface(kind, record, built)
        return built


def _check_interface(kind: str, record: PluginRecord, built: Any) -> None:
    """PluginError naming what ``built`` lacks of its kind's protocol (a task, i.e. a
    supervised corpus, also of :class:`~t5kernel.api.Task`)."""
    protocols = [PROTOCOL_FOR_KIND[kind]]
    if kind == "corpus" and getattr(built, "supervised", False):
        protocols.append(Task)
    for protocol in protocols:
        members = protocol_members(protocol)
        missing = [m for m in members if not hasattr(built, m)]
        if missing:
            raise PluginError(
                f"{kind} plugin {record.name!r} from {record.distribution} built a "
                f"{type(built).__name__} without {', '.join(missing)} (a {protocol.__name__} "
                f"has {', '.join(members)}; see t5kernel.api)")


def _dist_name(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else "<unknown>"


def _dist_version(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else ""


def _call_impl(impl: Any, kind: str, dist: str, version: str, ep_label: str) -> list[PluginRecord]:
    """Call one hook implementation, turning each yielded spec into a record."""
    try:
        specs = list(impl.function() or [])
    except Exception as exc:
        return [PluginRecord(kind, impl.plugin_name.rpartition(":")[2], dist, version, BROKEN,
                             entry_point=ep_label,
                             error=f"hook {impl.function.__name__} raised {type(exc).__name__}: {exc}")]
    out = []
    for spec in specs:
        if not isinstance(spec, PluginSpec):
            out.append(PluginRecord(kind, "<invalid>", dist, version, BROKEN, entry_point=ep_label,
                                    error=f"hook yielded {type(spec).__name__}, not PluginSpec"))
            continue
        status, error = ACTIVE, ""
        if not is_api_version(spec.api_version):  # changed after PluginSpec checked it
            out.append(PluginRecord(kind, spec.name, dist, version, BROKEN, entry_point=ep_label,
                                    error=f"api_version {spec.api_version!r} is not "
                                          "(major, minor)"))
            continue
        if not _api_compatible(tuple(spec.api_version)):
            status = INCOMPATIBLE
            error = (
                f"written for kernel API {'.'.join(map(str, spec.api_version))}, this kernel "
                f"provides {'.'.join(map(str, API_VERSION))} (major must match, minor <= ours)"
            )
        out.append(
            PluginRecord(
                kind, spec.name, dist, version, status, summary=spec.summary, target=spec.target,
                config=spec.config, api_version=tuple(spec.api_version), entry_point=ep_label,
                error=error,
            )
        )
    return out


_DEFAULT: Registry | None = None


def default_registry(refresh: bool = False) -> Registry:
    """The process-wide registry of installed plugins (discovered once)."""
    global _DEFAULT
    if _DEFAULT is None or refresh:
        _DEFAULT = Registry.discover()
    return _DEFAULT


def _catalogue_hint(kind: str, name: str, unloaded: dict[str, PluginRecord] | None = None
                    ) -> str:
    """" It is provided by X, which is not installed: <install>" when the catalogue lists
    it; when X is installed but was not loaded (``unloaded``: disabled by
    T5K_DISABLE_PLUGINS, or its hooks failed to import), that instead, with the error."""
    unloaded = unloaded or {}
    try:
        from t5kernel.catalogue import available_records

        rows = [r for r in available_records(kind) if r["name"] == name]
    except Exception:  # the catalogue is a convenience; never mask the real error
        return ""
    if not rows:
        return ""
    row = rows[0]
    record = unloaded.get(row["distribution"])
    if record is not None and record.status == DISABLED:
        return (f" It is provided by distribution {row['distribution']}, which is installed "
                f"but disabled here ({DISABLE_ENV}).")
    if record is not None:
        return (f" It is provided by distribution {row['distribution']}, which is installed "
                f"but failed to load: {record.error}.")
    return (f" It is provided by distribution {row['distribution']}, which is not installed: "
            f"{row['install']}.")
