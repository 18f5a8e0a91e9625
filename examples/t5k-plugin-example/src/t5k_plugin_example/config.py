"""The options of the ``ul2`` objective: a light dataclass (no numpy, no torch).

``t5k list-plugins`` and config validation import this module, so it imports nothing
but the standard library and ``t5kernel.errors``. OmegaConf checks keys and types
against the fields; ``__post_init__`` checks ranges, raising ConfigError with
``"<field>=<value> is out of range; allowed: ..."`` (the kernel puts ``objective.`` in
front).

The span denoisers are given as parallel lists, one entry per denoiser, as the
``ul2_objective`` preprocessor of the UL2 paper's appendix takes them
(``mean_noise_span_lengths``, ``noise_densities``, ``optional_task_prefixes``,
``rates``); the S-denoiser (prefix LM) has its own two fields. Defaults are the paper's
final mixture (Tay et al. 2022, §3.1.4):

=====  ===============  ==========  ======  =========
mode   mean span (mu)   rate (r)    weight  share
=====  ===============  ==========  ======  =========
R      3                0.15        1       13.3%
R      8                0.15        1       13.3%
X      3                0.5         1       13.3%
X      8                0.5         1       13.3%
X      64               0.15        1       13.3%
X      64               0.5         1       13.3%
S      (prefix LM)      -           1.5     20%
=====  ===============  ==========  ======  =========

A denoiser is "extreme" (X) when its spans are long (mu >= 12) or its rate high
(r >= 0.3), hence (64, 0.15) is an X-denoiser. The S-denoiser gets about 20% of the
mixture and the span denoisers share the rest uniformly (the paper's final mixture as
public re-implementations read it; the appendix code samples uniformly when given no
``rates``); the relative weights 1 x 6 and 1.5 express that exactly. Weights are
relative (normalised at build time); 0 switches a denoiser off.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from t5kernel.errors import ConfigError

#: the paper's span denoisers, in the order of the table above
PAPER_MEAN_NOISE_SPAN_LENGTHS = (3.0, 8.0, 3.0, 8.0, 64.0, 64.0)
PAPER_NOISE_DENSITIES = (0.15, 0.15, 0.5, 0.5, 0.15, 0.5)
PAPER_SPAN_MODES = ("[NLU]", "[NLU]", "[NLG]", "[NLG]", "[NLG]", "[NLG]")
PAPER_SPAN_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
PAPER_PREFIX_LM_WEIGHT = 1.5
PAPER_PREFIX_LM_MODE = "[S2S]"


def _real(value: Any) -> float:
    """``value`` as a float, or nan when it is not a real number (bools are refused)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _refuse(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={value!r} is out of range; allowed: {allowed}")


@dataclass
class Ul2Config:
    """UL2 mixture of denoisers (Tay et al. 2022, "UL2: Unifying Language Learning
    Paradigms", §3.1): span corruption at several (mu, r) plus prefix LM, each example's
    inputs led by its mode token."""

    #: mean length of a corrupted span, one entry per span denoiser (>= 1)
    mean_noise_span_lengths: list[float] = field(
        default_factory=lambda: list(PAPER_MEAN_NOISE_SPAN_LENGTHS))
    #: fraction of a chunk's tokens corrupted, one entry per span denoiser, in (0, 1)
    noise_densities: list[float] = field(default_factory=lambda: list(PAPER_NOISE_DENSITIES))
    #: mode token (text, encoded by the run's vocabulary) put before each span denoiser's
    #: inputs; "" = none
    span_modes: list[str] = field(default_factory=lambda: list(PAPER_SPAN_MODES))
    #: relative sampling weight of each span denoiser (>= 0)
    span_weights: list[float] = field(default_factory=lambda: list(PAPER_SPAN_WEIGHTS))
    #: relative sampling weight of the S-denoiser (prefix LM); 0 = no S-denoising
    prefix_lm_weight: float = PAPER_PREFIX_LM_WEIGHT
    #: mode token of the S-denoiser's inputs; "" = none
    prefix_lm_mode: str = PAPER_PREFIX_LM_MODE
    #: documents concatenated without separators before chunking (reduce_concat_tokens)
    concat_documents: int = 128
    #: documents longer than this are cut into aligned pieces, one kept at random
    max_document_tokens: int = 65536

    def __post_init__(self) -> None:
        lists = ("mean_noise_span_lengths", "noise_densities", "span_modes", "span_weights")
        sizes = {key: len(getattr(self, key)) for key in lists}
        if len(set(sizes.values())) != 1:
            shown = ", ".join(f"{k}: {n}" for k, n in sizes.items())
            _refuse("span_modes", list(self.span_modes),
                    f"one entry per span denoiser in each of {', '.join(lists)} (got {shown})")
        for i, mean in enumerate(self.mean_noise_span_lengths):
            if not 1.0 <= _real(mean) < math.inf:
                _refuse("mean_noise_span_lengths", list(self.mean_noise_span_lengths),
                        f"finite numbers >= 1 (entry {i} is {mean!r})")
        for i, density in enumerate(self.noise_densities):
            if not 0.0 < _real(density) < 1.0:
                _refuse("noise_densities", list(self.noise_densities),
                        f"numbers in the open interval (0, 1) (entry {i} is {density!r})")
        for i, mode in enumerate(self.span_modes):
            if not isinstance(mode, str):
                _refuse("span_modes", list(self.span_modes),
                        f"strings ('' for none; entry {i} is {mode!r})")
        if not isinstance(self.prefix_lm_mode, str):
            _refuse("prefix_lm_mode", self.prefix_lm_mode, "a string ('' for none)")
        for i, weight in enumerate(self.span_weights):
            if not 0.0 <= _real(weight) < math.inf:
                _refuse("span_weights", list(self.span_weights),
                        f"finite numbers >= 0 (entry {i} is {weight!r})")
        if not 0.0 <= _real(self.prefix_lm_weight) < math.inf:
            _refuse("prefix_lm_weight", self.prefix_lm_weight, "a finite number >= 0")
        if sum(float(w) for w in self.span_weights) + float(self.prefix_lm_weight) <= 0.0:
            _refuse("prefix_lm_weight", self.prefix_lm_weight,
                    "a positive weight here or in span_weights (every denoiser is off)")
        for key in ("concat_documents", "max_document_tokens"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                _refuse(key, value, "an integer >= 1")

    def check_run(self, run: Any) -> None:
        """Refuse a ``pretrain.targets_length`` too short for a full chunk of some
        denoiser, before any work starts (config validation calls this).

        The vocabulary does not exist yet, so the mode tokens' lengths are unknown; each
        is taken as one id per UTF-8 byte plus one (a word-start piece), more than a
        tokenizer makes. A longer mode token leaves less room and so shorter chunks, so
        what this refuses can never fit; the objective checks the exact lengths when its
        stream starts.
        """
        if int(run.pretrain.steps) <= 0 or not bool(run.pretrain.unsupervised):
            return  # pre-training does not read the objective
        from t5k_plugin_example.ul2 import denoisers_of, plan_lengths  # numpy: only here

        bound = {text: (0,) * (len(text.encode("utf-8")) + 1) if text else ()
                 for text in [*self.span_modes, self.prefix_lm_mode]}
        plan_lengths(denoisers_of(self, bound), int(run.pretrain.inputs_length),
                     int(run.pretrain.targets_length), exact_prefixes=False)
