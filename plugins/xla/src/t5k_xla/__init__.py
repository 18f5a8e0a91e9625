"""t5kernel's torch-xla backend (DESIGN §2: the only distribution that needs torch-xla)."""

__version__ = "0.1.0"
