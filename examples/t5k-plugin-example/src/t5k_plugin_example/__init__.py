"""t5k-plugin-example: UL2's mixture of denoisers as a t5kernel objective plugin."""

__version__ = "0.1.0"
