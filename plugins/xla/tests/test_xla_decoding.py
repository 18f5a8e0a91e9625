"""Evaluation decoding on the xla backend compiles its graphs once (t5kernel issues 8, 11).

The run loop's ``predict`` decodes with fixed shapes on a backend with ``static_shapes``
(t5kernel.decoding "static shapes"): batches of different input lengths and row counts,
decoded twice and with two decode lengths, must reuse their compiled graphs and give the
CPU model's predictions. Compile counts come from ``torch_xla.debug.metrics``.
"""

from __future__ import annotations

import copy
import dataclasses
import os

import pytest

pytest.importorskip("torch_xla")
os.environ.setdefault("PJRT_DEVICE", "CPU")

import torch  # noqa: E402
import torch_xla.debug.metrics as met  # noqa: E402
from t5k_xla.backend import XlaBackend  # noqa: E402
from t5k_xla.hooks import XlaBackendConfig  # noqa: E402

from t5kernel.config import compose, validate  # noqa: E402
from t5kernel.registry import default_registry  # noqa: E402
from t5kernel.runloop import Runner  # noqa: E402
from t5kernel.testing import pretrain_only_run  # noqa: E402

#: eval.batch_size = 3: a chunk of 3 short inputs, then 2 long ones (padded to 3 rows)
INPUTS = [
    "a cat", "the dog sat", "hello world",
    "translate English to German: the house is wonderful and the garden is green today",
    "summarize: state authorities dispatched emergency crews tuesday to survey the damage",
]


def compiles() -> int:
    data = met.metric_data("CompileTime")
    return 0 if data is None else int(data[0])


def runner_for(run_dir, registry, *overrides):
    cfg = validate(compose([run_dir / "config.yaml"], ["eval.batch_size=3", *overrides],
                           registry), registry)
    return Runner(cfg, registry, run_dir)


def test_static_decoding_compiles_once_and_matches_cpu(tmp_path):
    run_dir = pretrain_only_run(tmp_path, "cpu", "finetune.steps=0")
    registry = default_registry()
    greedy8 = runner_for(run_dir, registry, "eval.max_decode_length=8")
    cpu = greedy8.build(training=False)
    with torch.no_grad():  # make the barely trained model talk instead of ending at once
        cpu.model.shared.weight.mul_(0.2)
        cpu.model.shared.weight[1] *= 3.0
        cpu.model.decoder.relative_attention_bias.weight.mul_(10.0)
    backend = XlaBackend(XlaBackendConfig())
    assert backend.static_shapes
    xla = dataclasses.replace(cpu, backend=backend,
                              model=backend.prepare(copy.deepcopy(cpu.model)))
    lengths = {len(cpu.vocab.encode(s)) for s in INPUTS}
    assert min(lengths) < 8 < 16 < max(lengths)  # two width buckets

    want = greedy8.predict(cpu, INPUTS)
    assert len(set(want)) >= 3 and max(len(p) for p in want) > 5  # informative outputs
    start = compiles()
    assert greedy8.predict(xla, INPUTS) == want
    first = compiles() - start
    assert 0 < first <= 14  # a few graphs per width bucket, not one per step
    assert greedy8.predict(xla, INPUTS) == want
    assert compiles() == start + first  # the second pass compiles nothing

    greedy16 = runner_for(run_dir, registry, "eval.max_decode_length=16")
    want16 = greedy16.predict(cpu, INPUTS)
    mid = compiles()
    assert greedy16.predict(xla, INPUTS) == want16
    assert compiles() - mid <= first  # twice the steps, no more graphs

    beam = runner_for(run_dir, registry, "eval.max_decode_length=8", "eval.num_beams=2")
    want_beam = beam.predict(cpu, INPUTS)
    mid = compiles()
    assert beam.predict(xla, INPUTS) == want_beam
    beam_graphs = compiles() - mid
    assert beam_graphs <= 16
    assert beam.predict(xla, INPUTS) == want_beam
    assert compiles() == mid + beam_graphs


def test_prefix_lm_static_generate_compiles_once(tmp_path):
    """The decoder-only model's static decoder (prompt prefill, then a fixed-size cache)
    through ``generate(static_shapes=True)``: prompts in two width buckets, decoded
    twice; the second pass compiles nothing and the ids are the CPU model's."""
    import numpy as np
    import torch_xla

    from t5k_builtin.configs import EncDecConfig
    from t5k_builtin.model.decoder_only import PrefixLMArchitecture
    from t5kernel.api import BuildContext

    cfg = EncDecConfig(num_layers=2, d_model=32, d_ff=64, d_kv=8, num_heads=4, dropout_rate=0.0)
    arch = PrefixLMArchitecture(cfg, BuildContext(seed=5))
    cpu_model = arch.build(200)
    with torch.no_grad():  # make a random model talk instead of ending at once
        cpu_model.shared.weight.mul_(0.2)
        cpu_model.shared.weight[1] *= 0.4
        cpu_model.decoder.relative_attention_bias.weight.mul_(10.0)
    device = torch_xla.device()
    model = copy.deepcopy(cpu_model).to(device)

    def batch(seed, longest):
        rng = np.random.default_rng(seed)
        exs = [{"inputs": np.append(rng.integers(2, 200, rng.integers(2, longest)), 1),
                "targets": np.array([5, 1])} for _ in range(4)]
        feats = arch.features(exs, 24, 6, pack=False)
        return {k: torch.from_numpy(v).long() for k, v in feats.items()
                if k.startswith("encoder")}

    batches = [batch(1, 6), batch(2, 20)]  # widths in the 8 and 24 (= given) buckets
    counts = []
    for _ in range(2):
        for b in batches:
            ids = model.generate({k: v.to(device) for k, v in b.items()}, 8,
                                 static_shapes=True, sync=torch_xla.sync)
            want = cpu_model.generate(b, 8)
            assert torch.equal(ids.cpu(), want)
            assert len(set(want.flatten().tolist())) > 4
        counts.append(compiles())
    assert counts[1] == counts[0]
