"""benchmarks/vs_hf.py --quick runs end to end and reports every metric for both sides.

Numbers are not asserted (they depend on the machine); the structure and the greedy
id check are: a metric missing for one side, a missing ratio, or greedy ids that differ
between t5kernel and transformers (same weights) fail here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "vs_hf.py"


def _load_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("vs_hf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_reports_every_metric(tmp_path):
    out = tmp_path / "vs_hf.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "plugins" / "builtin" / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--configs", "tiny", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["steps"] == 1
    [cfg] = report["configs"]
    assert cfg["config"] == "tiny" and cfg["d_model"] == 256 and cfg["vocab_size"] == 32128
    metrics = _load_module().METRICS
    for impl in ("ours", "hf"):
        for key in metrics:
            assert isinstance(cfg[impl][key], float) and cfg[impl][key] > 0, (impl, key)
    for key in metrics:
        assert cfg["ratio_ours_over_hf"][key] == pytest.approx(
            cfg["ours"][key] / cfg["hf"][key]), key
    assert cfg["matmul_flops_per_s"] > 0
    assert cfg["greedy_ids_match"] is True
    assert "beam4_ids_match" in cfg
    assert "train_tokens_per_s" in proc.stdout  # the table


def test_unknown_config_is_refused():
    with pytest.raises(SystemExit):
        _load_module().main(["--configs", "huge"])


def test_gpu_mode_and_bf16_are_refused_where_unavailable():
    import torch

    module = _load_module()
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            module.main(["--device", "cuda", "--quick"])
    from t5k_builtin.backends.cpu import bf16_supported

    if not bf16_supported():
        with pytest.raises(SystemExit):
            module.main(["--precision", "bf16", "--quick"])


def test_model_flops_count_attention_products():
    """MFU's attention term: 4 * H * d_kv per query-key pair per attention layer."""
    module = _load_module()
    dims = module.CONFIGS["base"]["dims"]
    assert module.DEFAULT_CONFIGS["cuda"] == "base"
    assert module.CONFIGS["base"]["train"] == (128, 512, 114)
    # one row, 2 inputs, 1 target, 12 layers of 768-wide attention:
    # encoder 2*2 pairs, decoder self 1*1, cross 1*2 -> 7 pairs per layer
    assert module.attention_flops(dims, 1, 2, 1) == 4 * 768 * 12 * 7
    import torch

    assert module.nominal_peak(torch.device("cpu"), "bf16") is None
