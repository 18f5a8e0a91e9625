"""Hook specifications: one hook per plugin kind, each yielding PluginSpec records.

This is conda's shape (typed records from one hook per kind) rather than a single
``register(registry)`` hook: pluggy validates every implementation's name and
signature, the kernel calls only the hook of the kind it needs, and each
implementation is called separately so that one broken plugin cannot hide the others.
Implementations take no arguments; new optional arguments can be added to a spec later
without breaking existing plugins (pluggy lets an implementation accept fewer).
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from t5kernel.api import ENTRY_POINT_GROUP, PluginSpec

hookspec = pluggy.HookspecMarker(ENTRY_POINT_GROUP)

#: kind -> name of the hook that yields plugins of that kind.
HOOK_FOR_KIND: dict[str, str] = {
    "architecture": "t5k_architectures",
    "objective": "t5k_objectives",
    "corpus": "t5k_corpora",
    "mixer": "t5k_mixers",
    "finetune": "t5k_finetune_strategies",
    "evaluator": "t5k_evaluators",
    "backend": "t5k_backends",
    "vocabulary": "t5k_vocabularies",
    "optimizer": "t5k_optimizers",
    "schedule": "t5k_schedules",
}


@hookspec
def t5k_architectures() -> Iterable[PluginSpec]:
    """Yield one PluginSpec per model architecture (target returns an ``Architecture``)."""


@hookspec
def t5k_objectives() -> Iterable[PluginSpec]:
    """Yield one PluginSpec per pre-training objective (target returns an ``Objective``)."""


@hookspec
def t5k_corpora() -> Iterable[PluginSpec]:
    """Yield one PluginSpec per corpus or downstream task (target returns a ``Corpus``)."""


@hookspec
def t5k_mixers() -> Iterable[PluginSpec]:
    """Yield one PluginSpec per mixing rule (target returns a ``Mixer``)."""


@hookspec
def t5k_finetune_strategies() -> Iterable[PluginSpec]:
    """Yield one PluginSpec per fine-tuning strategy (target returns a ``FinetuneStrategy``)."""


@hookspec
def t5k_evaluators() -> Iterable[PluginSpec]:
    """Yield one PluginSpec per metric family (target returns an ``Evaluator``)."""


@hookspec
def t5k_backends() -> Iterable[PluginSpec]:
    """Yield one PluginSpec per compute backend (target returns a ``Backend``)."""


@hookspec
def t5k_vocabularies() -> Iterable[PluginSpec]:
    """Yield one PluginSpec per vocabulary kind (target returns a ``Vocabulary``)."""


@hookspec
def t5k_optimizers() -> Iterable[PluginSpec]:
    """Yield one PluginSpec per optimizer (target returns an ``OptimizerFactory``)."""


@hookspec
def t5k_schedules() -> Iterable[PluginSpec]:
    """Yield one PluginSpec per learning-rate schedule (target returns a ``Schedule``)."""
