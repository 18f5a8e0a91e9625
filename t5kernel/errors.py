"""Errors the kernel raises on purpose.

Every one of them is meant to reach a user as a single readable line (the CLI prints
``error: <message>`` and exits non-zero), so messages name what was wrong and what is
allowed.
"""

from __future__ import annotations


class T5KError(Exception):
    """Base class of every error t5kernel raises on purpose."""


class ConfigError(T5KError):
    """A configuration key, type or value is not acceptable."""


class PluginError(T5KError):
    """A plugin cannot be found, loaded, or used."""


class PluginNotFoundError(PluginError):
    """No active plugin has the requested (kind, name)."""


class PluginConflictError(PluginError):
    """Two distributions register the same (kind, name)."""


class DataError(T5KError):
    """Input data is missing, empty or malformed."""


class RunDirError(T5KError):
    """The run directory cannot be used (e.g. it holds a different run)."""


class CheckpointError(T5KError):
    """A checkpoint is missing, incomplete or fails its checksum."""


class StoppedError(T5KError):
    """The launcher stopped this process (torchrun's SIGTERM after another rank failed)."""
