"""t5kernel: a microkernel that turns the T5 paper into a space of runnable experiments.

The kernel owns the plugin interfaces (:mod:`t5kernel.api`), the registry that discovers
plugins through the ``t5kernel`` entry-point group (:mod:`t5kernel.registry`), the run
configuration (:mod:`t5kernel.config`), the run loop (:mod:`t5kernel.runloop`) and the
``t5k`` command line (:mod:`t5kernel.cli`). It knows no paper variant by name: every
architecture, objective, corpus, ... is a plugin.
"""

__version__ = "0.1.0"
