"""Entry point of the ``t5k-plugin-example`` distribution (group ``t5kernel``).

``t5k list-plugins`` imports this module, so it stays light: the config dataclass is
plain Python and the objective is named by a ``"module:attribute"`` string that the
kernel imports only when a run selects ``objective.name=ul2``.
"""

from __future__ import annotations

from t5kernel.api import PluginSpec, hookimpl

from t5k_plugin_example.config import Ul2Config


@hookimpl
def t5k_objectives():
    yield PluginSpec(
        name="ul2",
        target="t5k_plugin_example.ul2:Ul2",
        config=Ul2Config,
        summary="UL2 mixture of denoisers (Tay et al. 2022): R/X span corruption at "
        "mu 3/8/64, r 0.15/0.5 and S prefix LM, inputs led by [NLU]/[NLG]/[S2S]",
        # the kernel API this plugin was written for (resumable_examples is 1.1)
        api_version=(1, 1),
    )
