"""t5kernel-builtin: the T5 paper's variants as t5kernel plugins."""

__version__ = "0.1.0"
