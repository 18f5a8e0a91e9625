"""benchmarks/vs_hf.py --quick runs end to end and reports every metric for both sides.

Numbers are not asserted (they depend on the machine); the structure and the greedy
id check are: a metric missing for one side, a missing ratio, or greedy ids that differ
between t5kernel and transformers (same weights) fail here.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "vs_hf.py"


def _load_module(script: Path = SCRIPT):
    """A benchmark script as a module (its directory importable: it imports its siblings)."""
    import importlib.util

    if str(script.parent) not in sys.path:
        sys.path.insert(0, str(script.parent))
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_script(script: Path, tmp_path: Path, *args: str, timeout: int = 120):
    """Run a benchmark script in a child process with the project and the builtin plugin
    importable, from ``tmp_path``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "plugins" / "builtin" / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=tmp_path)


def test_quick_run_reports_every_metric(tmp_path):
    out = tmp_path / "vs_hf.json"
    proc = _run_script(SCRIPT, tmp_path, "--quick", "--configs", "tiny", "--json", str(out))
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


def test_train_only_run_skips_decoding_and_reports_training_early(tmp_path):
    out = tmp_path / "vs_hf.json"
    proc = _run_script(SCRIPT, tmp_path, "--quick", "--configs", "tiny", "--train-only",
                       "--train-window", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["train_only"] is True and report["train_window"] == 2
    [cfg] = report["configs"]
    for impl in ("ours", "hf"):
        assert cfg[impl]["train_tokens_per_s"] > 0 and cfg[impl]["peak_rss_mb"] > 0
        assert not any(key.startswith(("greedy", "beam4")) for key in cfg[impl]), impl
    assert "greedy_ids_match" not in cfg
    assert "training: ours" in proc.stderr  # printed as soon as measured


def test_flex_attention_and_compile_mode_need_their_settings():
    module = _load_module()
    with pytest.raises(SystemExit):  # FlexAttention has no CPU backward
        module.main(["--quick", "--compile", "--flex-attention"])
    with pytest.raises(SystemExit):
        module.main(["--quick", "--compile-mode", "max-autotune"])


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
        for flag in ("--precision", "--hf-precision"):
            with pytest.raises(SystemExit):
                module.main([flag, "bf16", "--quick"])
        with pytest.raises(SystemExit, match="no native bfloat16"):
            _load_module(PROFILE_SCRIPT).main(["--precision", "bf16", "--quick"])


@pytest.mark.skipif(not __import__("t5k_builtin.backends.cpu", fromlist=["x"]).bf16_supported(),
                    reason="this CPU has no native bfloat16")
def test_quick_run_with_ours_in_bf16_against_transformers_in_fp32(tmp_path):
    """``--precision bf16 --hf-precision fp32``: each side under its own autocast, both
    recorded; the bf16 decodings' ids are reported, not required to match."""
    out = tmp_path / "vs_hf.json"
    proc = _run_script(SCRIPT, tmp_path, "--quick", "--configs", "tiny", "--precision", "bf16",
                       "--hf-precision", "fp32", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    [cfg] = report["configs"]
    assert report["precision"] == cfg["precision"] == "bf16"
    assert report["hf_precision"] == cfg["hf_precision"] == "fp32"
    assert cfg["ours"]["greedy_sequences_per_s"] > 0 and cfg["hf"]["train_tokens_per_s"] > 0
    assert "ours bf16, transformers fp32" in proc.stdout


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


# ------------------------------------------------------------------ step_profile.py
PROFILE_SCRIPT = ROOT / "benchmarks" / "step_profile.py"


@pytest.mark.parametrize("task", ["train", "greedy"])
def test_step_profile_quick_run_splits_both_steps(tmp_path, task):
    out = tmp_path / "profile.json"
    proc = _run_script(PROFILE_SCRIPT, tmp_path, "--quick", "--configs", "tiny", "--task", task,
                       "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    [cfg] = json.loads(out.read_text())["configs"]
    module = _load_module(PROFILE_SCRIPT)
    for impl in ("ours", "hf"):
        side = cfg[impl]
        cats = side["categories"]
        assert set(cats) == set(module.CATEGORIES)
        assert sum(c["share"] for c in cats.values()) == pytest.approx(1.0)
        assert sum(c["seconds"] for c in cats.values()) == pytest.approx(side["step_s"])
        # every step multiplies weights; the recorded shapes give its FLOP rate
        assert cats["weight_matmuls"]["flops"] > 0 and cats["weight_matmuls"]["flops_per_s"] > 0
        assert (cats["optimizer"]["share"] > 0) == (task == "train"), impl
    assert cfg["ratio_ours_over_hf"] == pytest.approx(cfg["hf"]["step_s"] / cfg["ours"]["step_s"])
    # the bound counts only our matmul categories, so it is at least the measured ratio
    assert cfg["ratio_bound_weight_matmuls"] >= cfg["ratio_bound_matmuls"] >= cfg[
        "ratio_ours_over_hf"]
    assert "largest 'other' entries, ours" in proc.stdout


def test_step_profile_counts_matmul_flops_from_recorded_shapes():
    module = _load_module(PROFILE_SCRIPT)
    assert module.matmul_flops("aten::mm", [[4, 3], [3, 5]]) == 2 * 4 * 3 * 5
    assert module.matmul_flops("aten::mm", [[4, 3], [3, 5], [4, 5]]) == 2 * 4 * 3 * 5  # out=
    assert module.matmul_flops("aten::addmm", [[5], [4, 3], [3, 5], [], []]) == 2 * 4 * 3 * 5
    assert module.matmul_flops("aten::bmm", [[2, 4, 3], [2, 3, 5]]) == 2 * 2 * 4 * 3 * 5
    assert module.matmul_flops("aten::bmm", [[2, 4, 3], [2, 3, 5], [2, 4, 5]]) == 240
    assert module.matmul_flops("aten::baddbmm", [[2, 4, 5], [2, 4, 3], [2, 3, 5], [], []]) == 240
    # packed linear: (input [m, k], packed buffer, weight [n, k], bias, rows)
    assert module.matmul_flops("mkl::_mkl_linear", [[4, 3], [99], [5, 3], [], []]) == 120
    # oneDNN's linear: (input [m, k], (packed) weight [n, k], bias, ...)
    assert module.matmul_flops("mkldnn::_linear_pointwise", [[4, 3], [5, 3], [], []]) == 120
    assert module.matmul_flops("aten::mm", []) == 0  # shapes not recorded
    assert module.matmul_flops("aten::relu", [[4, 3]]) == 0


def test_step_profile_puts_ops_in_categories():
    module = _load_module(PROFILE_SCRIPT)

    class Event:
        def __init__(self, name, parent=None):
            self.name, self.cpu_parent = name, parent

    step = Event("Optimizer.step#AdamW.step")
    assert module.category(Event("aten::mul_", Event("aten::_foreach_mul_", step))) == "optimizer"
    assert module.category(Event("aten::mm")) == "weight_matmuls"
    assert module.category(Event("aoti_torch_cpu_mm_out")) == "weight_matmuls"
    assert module.category(Event("mkldnn::_linear_pointwise")) == "weight_matmuls"
    assert module.category(Event("aten::bmm")) == "attention_products"
    assert module.category(Event("aten::_scaled_dot_product_flash_attention_for_cpu")) == \
        "attention_products"
    assert module.category(Event("aten::softmax")) == "other"


def test_step_profile_refuses_unknown_configs_and_steps():
    module = _load_module(PROFILE_SCRIPT)
    with pytest.raises(SystemExit, match="allowed: tiny, small"):
        module.main(["--configs", "base"])
    with pytest.raises(SystemExit, match="--steps"):
        module.main(["--steps", "0"])


@pytest.mark.slow
def test_step_profile_counts_compiled_decodings_gemms_as_matmuls(tmp_path):
    """Compiled decoding calls its GEMMs from inductor's C++ wrapper; without kernel
    profiling they would vanish into one "Call CompiledFxGraph" range in ``other``."""
    out = tmp_path / "profile.json"
    proc = _run_script(PROFILE_SCRIPT, tmp_path, "--quick", "--compile", "--configs", "tiny",
                       "--task", "greedy", "--json", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [cfg] = json.loads(out.read_text())["configs"]
    weights = cfg["ours"]["categories"]["weight_matmuls"]
    assert weights["share_without_flops"] > 0  # the wrapper's aoti_torch_cpu_mm_out calls
    assert not [name for name, _ in cfg["ours"]["top_other"] if "_mm_out" in name]


def test_step_profile_splits_gpu_kernels_by_the_op_that_launched_them():
    """The GPU split (synthetic profiler events, as torch.profiler links them): kernels in
    their launching op's category, unclaimed kernel time and GPU idle time in ``other``,
    a range's device-side span (a user annotation) not counted over its kernels."""
    module = _load_module(PROFILE_SCRIPT)
    cpu, gpu = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA
    Kernel = collections.namedtuple("Kernel", "name device duration")  # durations in us

    class Event:
        def __init__(self, name, device=cpu, kernels=(), parent=None, shapes=None, us=0,
                     span=False):
            self.name, self.device_type, self.kernels = name, device, list(kernels)
            self.is_user_annotation = span
            self.cpu_parent, self.input_shapes = parent, shapes
            self.time_range = types.SimpleNamespace(elapsed_us=lambda: us)

    step = Event("Optimizer.step#AdamW.step")
    events = [
        Event("aten::mm", kernels=[Kernel("sm90_gemm", 0, 300)], shapes=[[64, 32], [32, 16]]),
        Event("aten::bmm", kernels=[Kernel("sm90_gemm", 0, 100)], shapes=[[2, 8, 4], [2, 4, 8]]),
        Event("aten::_efficient_attention_backward", kernels=[Kernel("fmha_bwd", 0, 200)]),
        Event("aten::_fused_adamw_", kernels=[Kernel("multi_tensor_apply", 0, 50)], parent=step),
        Event("aten::add", kernels=[Kernel("elementwise", 0, 40)]),
        Event("sm90_gemm", gpu, us=400), Event("fmha_bwd", gpu, us=200),
        Event("multi_tensor_apply", gpu, us=50), Event("elementwise", gpu, us=40),
        Event("triton_poi_fused_add_0", gpu, us=60),  # launched by no op: inductor's
        # inductor's range around its graph, and the range's span on the GPU
        Event("## Call CompiledFxGraph abc ##", kernels=[Kernel("## Call CompiledFxGraph abc ##",
                                                                0, 700)]),
        Event("## Call CompiledFxGraph abc ##", gpu, us=700, span=True),
    ]
    parts = module.split_kernels(events, wall=0.001)
    secs = parts["seconds"]
    assert secs["weight_matmuls"] == pytest.approx(300e-6)
    assert secs["attention_products"] == pytest.approx(300e-6)
    assert secs["optimizer"] == pytest.approx(50e-6)
    other = dict(parts["top_other"])
    assert other["triton_poi_fused_add_0"] == pytest.approx(60e-6)
    assert other["elementwise"] == pytest.approx(40e-6)
    assert other[module.GPU_IDLE] == pytest.approx(1000e-6 - 750e-6)
    assert secs["other"] == pytest.approx(60e-6 + 40e-6 + 250e-6)
    assert sum(secs.values()) == pytest.approx(0.001)  # wall = kernels + idle
    assert parts["flops"]["weight_matmuls"] == 2 * 64 * 32 * 16
    assert parts["flops"]["attention_products"] == 2 * 2 * 8 * 4 * 8
    assert parts["uncounted"]["attention_products"] == pytest.approx(200e-6)  # fused: no FLOPs
    top = {(kind, name): t for kind, name, t in parts["top_kernels"]}
    assert top["weight_matmuls", "sm90_gemm"] == pytest.approx(300e-6)
    assert top["attention_products", "sm90_gemm"] == pytest.approx(100e-6)
    assert top["other", "triton_poi_fused_add_0"] == pytest.approx(60e-6)
    assert not any(name.startswith("##") for _, name in top)


# ------------------------------------------------------------- attention_kernels.py
ATTENTION_SCRIPT = ROOT / "benchmarks" / "attention_kernels.py"


def test_attention_kernels_quick_run_checks_the_bias_gradient(tmp_path):
    """On CPU the math kernel is checked against float64 (bias gradient included) and the
    kernels that do not run there are reported as refused, not left out."""
    out = tmp_path / "attention.json"
    proc = _run_script(ATTENTION_SCRIPT, tmp_path, "--device", "cpu", "--quick",
                       "--kernels", "auto,math,efficient_attention", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {(r["layout"], r["kernel"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {(layout, k) for layout in ("shared", "per-row")
                         for k in ("auto", "math", "efficient_attention")}
    for layout in ("shared", "per-row"):
        math = rows[layout, "math"]
        assert math["correct"] and set(math["errors"]) == {"out", "dq", "dk", "dv", "dpos"}
        assert max(math["errors"].values()) < 1e-5  # fp32 on CPU
        assert math["seconds"] > 0
        assert rows[layout, "auto"]["chosen"] == "math"
        assert "error" in rows[layout, "efficient_attention"]  # a CUDA kernel


def test_attention_kernels_flags_a_wrong_bias_gradient():
    module = _load_module(ATTENTION_SCRIPT)

    def no_bias_gradient(t):  # attends with the bias, but lets no gradient reach it
        return torch.softmax(t["q"] @ t["k"].mT + module.bias_of(t).detach(), -1) @ t["v"]
    errors = module.check(no_bias_gradient, module.QUICK_SHAPE, "per-row",
                          torch.device("cpu"), torch.float32)
    assert errors["out"] < 1e-5 and errors["dq"] < 1e-5
    assert errors["dpos"] == float("inf")  # no gradient at all: flagged, not skipped


def test_a_timed_window_runs_its_calls_back_to_back_and_reports_per_call():
    """alternate(window=K): K calls between two synchronisations, time divided by K,
    the keys interleaved measurement by measurement."""
    alternate = _load_module().alternate
    calls, syncs = [], []

    def fn(key):
        def call():
            calls.append(key)
            return len(calls)
        return call

    secs, outs = alternate({"a": fn("a"), "b": fn("b")}, steps=2, warmup=1,
                           sync=lambda: syncs.append(len(calls)), window=3)
    assert calls == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    assert syncs == [2, 5, 5, 8, 8, 11, 11, 14]  # before and after each window only
    assert set(secs) == {"a", "b"} and all(s >= 0 for s in secs.values())
    assert outs == {"a": 11, "b": 14}
