"""Where a training or decoding step's time goes, ours and transformers', and the ratio
that is left to win.

``vs_hf.py`` says how much faster we are; this says whether more is possible. Per
configuration, one process builds both models exactly as ``vs_hf.py`` does (same weights,
shapes, optimizer, ``--compile`` meaning), times their steps alternately, then profiles
one step of each (``torch.profiler``, self CPU time, shapes recorded) and splits it into:

- ``weight_matmuls``: ``mm`` / ``addmm`` / MKL's or oneDNN's (packed) ``linear`` -- the model's weight
  products, the FLOPs every implementation must do;
- ``attention_products``: ``bmm`` / ``baddbmm`` and fused attention (SDPA) -- also
  required work, but shaped by the implementation (K = d_kv = 64 products run at a
  fraction of the matmul rate on CPUs);
- ``optimizer``: everything under ``Optimizer.step`` / ``zero_grad`` (the same
  fused ``torch.optim.AdamW`` on both sides);
- ``other``: elementwise work, norms, softmax, compiled kernels, Python and dispatch.

With ``--compile``, inductor's kernels are recorded by name
(``torch._inductor.config.cpp.enable_kernel_profile``), so the GEMMs that compiled
decoding's C++ wrapper calls count as matmuls and the fused kernels show in ``other``'s
largest entries. Each matmul category reports its achieved FLOP/s (from the recorded
shapes of the calls that have them) next to a timed ``2048^3`` ``torch.mm``. The
headline bounds divide transformers' step time by ours *if only* our matmul categories
cost anything (at their measured rates): no amount of work on the ``other`` and
``optimizer`` shares can beat ``ratio_bound_matmuls``, and only faster attention
products or weight GEMMs (e.g. bf16 on a CPU with AMX) can raise it. Profiling adds
overhead to both sides, so shares, not profiled seconds, are scaled to the unprofiled
median step.

On a GPU (``--device cuda``: T5-base pre-training in bf16, as ``vs_hf.py``'s GPU mode)
the categories hold device (kernel) time instead: each kernel counts in the category of
the op that launched it, kernels launched outside any op (inductor's Triton kernels) in
``other`` under their own names, and the rest of the unprofiled step's time in ``other``
as ``(GPU idle)``: launch gaps and host work the GPU waited for. Kernel times are taken
as measured (profiling slows the host, not the kernels), and the largest kernels of every
category are listed.

    python benchmarks/step_profile.py --compile                    # tiny and small, training
    python benchmarks/step_profile.py --device cuda --compile      # T5-base, bf16, on a GPU
    python benchmarks/step_profile.py --configs small --task greedy --compile
    python benchmarks/step_profile.py --quick --json profile.json  # one step (tests)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vs_hf  # noqa: E402  (this directory, inserted above)

CATEGORIES = ("weight_matmuls", "attention_products", "optimizer", "other")
#: the categories whose FLOPs are counted and whose time the bounds keep
MATMUL_CATEGORIES = ("weight_matmuls", "attention_products")
#: eager ops, and the shims through which inductor's C++ wrapper calls the same kernels
WEIGHT_OPS = {"aten::mm", "aten::addmm", "mkl::_mkl_linear", "mkldnn::_linear_pointwise",
              "aoti_torch_cpu_mm_out", "aoti_torch_cpu_addmm_out"}
ATTENTION_OPS = {"aten::bmm", "aten::baddbmm", "aoti_torch_cpu_bmm_out",
                 "aoti_torch_cpu_baddbmm_out"}
#: fused attention ops (SDPA and the CUDA kernels' own ops, forward and backward)
FUSED_ATTENTION_PREFIXES = ("aten::_scaled_dot_product", "aten::_efficient_attention",
                            "aten::_flash_attention", "aten::_cudnn_attention")
OPTIMIZER_RANGES = ("Optimizer.step", "Optimizer.zero_grad")
TASKS = ("train", "greedy", "beam4")
#: how many of the largest ``other`` entries (and, on GPUs, kernels) a report names
TOP_OTHER = 8
TOP_KERNELS = 16
UNTRACED = "(Python between ops)"
#: on GPUs: the step's wall time with no kernel running, and kernels no op launched
GPU_IDLE = "(GPU idle)"


def category(event) -> str:
    """The category of one profiler event (by its name, or an enclosing optimizer range)."""
    parent = event
    while parent is not None:
        if parent.name.startswith(OPTIMIZER_RANGES):
            return "optimizer"
        parent = parent.cpu_parent
    if event.name in WEIGHT_OPS:
        return "weight_matmuls"
    if event.name in ATTENTION_OPS or event.name.startswith(FUSED_ATTENTION_PREFIXES):
        return "attention_products"
    return "other"


def matmul_flops(name: str, shapes: list) -> int:
    """FLOPs of one recorded ``mm`` / ``addmm`` / packed ``linear`` / ``bmm`` / ``baddbmm``
    call (0 for other ops or unrecorded shapes: fused attention counts no FLOPs here)."""
    dims = [s for s in shapes if s]
    try:
        if name == "aten::mm":
            (m, k), (_, n) = dims[:2]
            return 2 * m * k * n
        if name == "mkl::_mkl_linear":  # (input, packed weight, weight [n, k], ...)
            (m, k), (n, _) = dims[0], dims[2]
            return 2 * m * k * n
        if name == "mkldnn::_linear_pointwise":  # (input [m, k], (packed) weight [n, k], ...)
            (m, k), (n, _) = dims[0], dims[1]
            return 2 * m * k * n
        if name == "aten::addmm":
            (m, k), (_, n) = dims[1:3]
            return 2 * m * k * n
        if name in ATTENTION_OPS:
            (b, m, k), (_, _, n) = dims[:2] if name == "aten::bmm" else dims[1:3]
            return 2 * b * m * k * n
    except (ValueError, IndexError):  # an unexpected shape list: count nothing, not guess
        return 0
    return 0


def breakdown(fn, device: torch.device | None = None, step_s: float | None = None) -> dict:
    """Seconds and matmul FLOPs per category of one profiled call of ``fn``: self CPU
    time on CPUs (the default), kernel time on GPUs (:func:`split_kernels`, whose idle
    time is what the unprofiled ``step_s`` leaves after the kernels)."""
    from torch.profiler import ProfilerActivity, profile

    device = device or torch.device("cpu")
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    sync = vs_hf.sync_fn(device)
    with profile(activities=activities, record_shapes=True) as prof:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        wall = time.perf_counter() - start
    events = prof.events()
    if device.type == "cuda":
        return split_kernels(events, step_s or wall)
    return split_ops(events, wall)


def split_ops(events, wall: float) -> dict:
    """CPU: self seconds per category of the op events; the call's wall time that no
    event covers (Python between ops) counts as ``other``."""
    secs = dict.fromkeys(CATEGORIES, 0.0)
    flops = dict.fromkeys(CATEGORIES, 0)
    uncounted = dict.fromkeys(CATEGORIES, 0.0)  # matmul seconds without recorded shapes
    other: dict[str, float] = {}
    for event in events:
        if event.device_type != torch.autograd.DeviceType.CPU:
            continue
        kind = category(event)
        secs[kind] += event.self_cpu_time_total / 1e6
        if kind in MATMUL_CATEGORIES:
            counted = matmul_flops(event.name, event.input_shapes or [])
            flops[kind] += counted
            if not counted:
                uncounted[kind] += event.self_cpu_time_total / 1e6
        elif kind == "other":
            other[event.name] = other.get(event.name, 0.0) + event.self_cpu_time_total / 1e6
    # Python between ops belongs to no event
    other[UNTRACED] = max(0.0, wall - sum(secs.values()))
    secs["other"] += other[UNTRACED]
    top = sorted(other.items(), key=lambda kv: -kv[1])[:TOP_OTHER]
    return {"seconds": secs, "flops": flops, "uncounted": uncounted, "top_other": top}


def split_kernels(events, wall: float) -> dict:
    """GPU: device seconds per category. Each CPU op's kernels count in the op's category
    (so a GEMM launched by ``aten::bmm`` is an attention product, one launched by
    ``aten::mm`` a weight matmul), and in ``other`` under the kernel's name. Kernel time
    no op claims (inductor's Triton launches) counts in ``other`` by kernel name; the
    ``wall`` time the GPU spent running nothing, as :data:`GPU_IDLE`. User annotations
    (``record_function`` ranges such as inductor's ``## Call CompiledFxGraph ##``) have a
    device-side span over their kernels: counted, it would count those kernels twice."""
    cpu, gpu = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA
    spans = {e.name for e in events if e.device_type == gpu and getattr(e, "is_user_annotation",
                                                                        False)}
    per_kernel: dict[tuple[str, str], float] = {}  # (category, kernel name) -> seconds
    flops = dict.fromkeys(CATEGORIES, 0)
    uncounted = dict.fromkeys(CATEGORIES, 0.0)
    for event in events:
        if event.device_type != cpu:
            continue
        kernels = [k for k in getattr(event, "kernels", ()) if k.name not in spans]
        if not kernels:
            continue
        kind = category(event)
        for kernel in kernels:
            per_kernel[kind, kernel.name] = (per_kernel.get((kind, kernel.name), 0.0)
                                             + kernel.duration / 1e6)
        if kind in MATMUL_CATEGORIES:
            counted = matmul_flops(event.name, event.input_shapes or [])
            flops[kind] += counted
            if not counted:
                uncounted[kind] += sum(kernel.duration for kernel in kernels) / 1e6
    claimed: dict[str, float] = {}  # kernel seconds that ops claimed, per kernel name
    for (_, name), t in per_kernel.items():
        claimed[name] = claimed.get(name, 0.0) + t
    busy: dict[str, float] = {}  # all device seconds, per kernel name
    for event in events:
        if event.device_type == gpu and event.name not in spans:
            busy[event.name] = busy.get(event.name, 0.0) + event.time_range.elapsed_us() / 1e6
    for name, total in busy.items():
        unclaimed = total - claimed.get(name, 0.0)
        if unclaimed > 1e-9:
            per_kernel["other", name] = per_kernel.get(("other", name), 0.0) + unclaimed
    secs = dict.fromkeys(CATEGORIES, 0.0)
    for (kind, _), t in per_kernel.items():
        secs[kind] += t
    other = {name: t for (kind, name), t in per_kernel.items() if kind == "other"}
    other[GPU_IDLE] = max(0.0, wall - sum(busy.values()))
    secs["other"] += other[GPU_IDLE]
    top = sorted(other.items(), key=lambda kv: -kv[1])[:TOP_OTHER]
    kernels = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:TOP_KERNELS]
    return {"seconds": secs, "flops": flops, "uncounted": uncounted, "top_other": top,
            "top_kernels": [(kind, name, t) for (kind, name), t in kernels]}


def side_report(step_s: float, parts: dict, peak: float) -> dict:
    """Shares of the profiled step, scaled to the unprofiled ``step_s``; FLOP/s per
    matmul category as measured inside the profile."""
    profiled = sum(parts["seconds"].values())
    report: dict = {"step_s": step_s, "profiled_step_s": profiled, "categories": {},
                    "top_other": [(name, step_s * secs / profiled) for name, secs in
                                  parts["top_other"]] if profiled else []}
    if "top_kernels" in parts:  # GPU: kernel seconds as measured
        report["top_kernels"] = parts["top_kernels"]
    for kind in CATEGORIES:
        secs = parts["seconds"][kind]
        entry = {"share": secs / profiled if profiled else 0.0,
                 "seconds": step_s * secs / profiled if profiled else 0.0}
        if kind in MATMUL_CATEGORIES:
            # the rate of the calls whose shapes were recorded (C++-wrapper shims and
            # fused attention record none)
            counted = secs - parts["uncounted"][kind]
            rate = parts["flops"][kind] / counted if counted > 0 and parts["flops"][kind] else None
            entry.update(flops=parts["flops"][kind], flops_per_s=rate,
                         matmul_fraction=rate / peak if rate else None,
                         share_without_flops=parts["uncounted"][kind] / secs if secs else 0.0)
        report["categories"][kind] = entry
    return report


def task_fns(task: str, spec: dict, args) -> dict:
    """``{"ours": fn, "hf": fn}`` for one step of ``task``, built as ``vs_hf.py`` does."""
    device = torch.device(args.device)
    if task == "train":
        ours, hf = (m.to(device) for m in vs_hf.train_pair(spec["dims"], args.dropout))
        vs_hf.prepare_ours(ours, args.compile, args.flex_attention)
        return vs_hf.train_steps(ours, hf, spec["train"], device, args.precision)
    from decode_vs_hf import build_pair

    ours, hf = build_pair(spec["dims"], vs_hf.VOCAB, seed=2, eos_scale=None)
    fns = vs_hf.decode_fns(ours.to(device).eval(), hf.to(device).eval(), spec["decode"],
                           device, args.precision, compile=vs_hf.compiled_decoding(args))
    return {impl: fns[impl, task] for impl in ("ours", "hf")}


def measure(name: str, args) -> dict:
    device = torch.device(args.device)
    if args.compile and device.type == "cpu":
        # name inductor's kernels, and the kernels its C++ wrapper (compiled decoding)
        # calls through ``aoti_torch_cpu_*`` shims, as profiler events: otherwise all of
        # them, GEMMs included, hide in one "Call CompiledFxGraph" range. Set before
        # compiling. With no profiler running, each kernel call pays one callback check:
        # the unprofiled ratios stayed within run-to-run noise (training 1.62/1.71 without
        # it, 1.66/1.69 with it).
        from torch._inductor import config as inductor_config

        inductor_config.cpp.enable_kernel_profile = True
    spec = vs_hf.spec_for(name, args.quick)
    fns = task_fns(args.task, spec, args)
    warmup = int(args.compile) + (not args.quick)  # compiling takes a step or two
    sync = vs_hf.sync_fn(device)
    secs, _ = vs_hf.alternate(fns, args.steps, warmup, sync)
    peak = vs_hf.matmul_flops(device, vs_hf.matmul_size(device, args.quick), sync,
                              precision=args.precision)
    sides = {impl: side_report(secs[impl], breakdown(fns[impl], device, secs[impl]), peak)
             for impl in fns}
    ours = sides["ours"]["categories"]
    hf_s = sides["hf"]["step_s"]
    matmuls = sum(ours[kind]["seconds"] for kind in MATMUL_CATEGORIES)
    weights = ours["weight_matmuls"]["seconds"]
    return {"config": name, "task": args.task, "device": args.device,
            "precision": args.precision, "matmul_flops_per_s": peak, **sides,
            "ratio_ours_over_hf": hf_s / sides["ours"]["step_s"],
            "ratio_bound_matmuls": hf_s / matmuls if matmuls else None,
            "ratio_bound_weight_matmuls": hf_s / weights if weights else None}


def print_report(result: dict) -> None:
    print(f"\n{result['config']} {result['task']}: ours/hf {result['ratio_ours_over_hf']:.2f}x; "
          f"bound if only our matmuls cost anything {result['ratio_bound_matmuls'] or 0:.2f}x "
          f"(weight matmuls only {result['ratio_bound_weight_matmuls'] or 0:.2f}x); "
          f"timed {result['precision']} mm {result['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s")
    print(f"{'category':20s} {'ours s':>8s} {'share':>6s} {'GF/s':>6s}   "
          f"{'hf s':>8s} {'share':>6s} {'GF/s':>6s}")
    for kind in CATEGORIES:
        cells = []
        for impl in ("ours", "hf"):
            entry = result[impl]["categories"][kind]
            rate = entry.get("flops_per_s")
            cells.append(f"{entry['seconds']:8.3f} {entry['share']:6.1%} "
                         + (f"{rate / 1e9:6.0f}" if rate else f"{'-':>6s}"))
        print(f"{kind:20s} {cells[0]}   {cells[1]}")
    print(f"{'step':20s} {result['ours']['step_s']:8.3f} {'':13s}   {result['hf']['step_s']:8.3f}")
    for impl in ("ours", "hf"):
        print(f"largest 'other' entries, {impl}: " + "; ".join(
            f"{name[:60]} {secs:.4f} s" for name, secs in result[impl]["top_other"]))
        for kind, name, secs in result[impl].get("top_kernels", []):
            print(f"  {impl} kernel {secs * 1e3:8.3f} ms  {kind:18s} {name[:110]}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=None,
                    help="comma-separated, of tiny, small (CPU) or base (GPU); default: "
                    "tiny,small on cpu, base on cuda")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--precision", default=None, choices=("fp32", "bf16"),
                    help="autocast for both sides (default: fp32 on cpu, bf16 on cuda)")
    ap.add_argument("--task", choices=TASKS, default="train")
    ap.add_argument("--compile", action="store_true", help="our best CPU settings, as in vs_hf.py")
    ap.add_argument("--flex-attention", action="store_true",
                    help="train ours through FlexAttention (as vs_hf.py; CUDA, --compile)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per side (median)")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="one step at tiny shapes (tests)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch")
    if args.precision is None:
        args.precision = "bf16" if args.device == "cuda" else "fp32"
    if args.flex_attention and not (args.device == "cuda" and args.compile
                                    and args.task == "train"):
        raise SystemExit("--flex-attention is for --device cuda --compile --task train")
    from t5k_builtin.backends.cpu import bf16_supported

    if args.precision == "bf16" and args.device == "cpu" and not bf16_supported():
        raise SystemExit("--precision bf16: this CPU has no native bfloat16 (AVX512-BF16 / "
                         "AMX); use --precision fp32")
    names = [n.strip() for n in (args.configs or vs_hf.DEFAULT_CONFIGS[args.device]).split(",")
             if n.strip()]
    allowed = list(vs_hf.CONFIGS) if args.device == "cuda" else [
        n for n in vs_hf.CONFIGS if n != "base"]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise SystemExit(f"unknown config(s) {unknown or names}; allowed: {', '.join(allowed)}")
    if args.steps < 1:
        raise SystemExit(f"--steps must be at least 1, got {args.steps}")
    if args.quick:
        args.steps = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for name in names:
        results.append(measure(name, args))
        print_report(results[-1])
    if args.json:
        args.json.write_text(json.dumps(
            {"torch": torch.__version__, "threads": torch.get_num_threads(),
             "device": args.device, "precision": args.precision,
             "flex_attention": args.flex_attention,
             "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
             "task": args.task, "ours_compiled": args.compile, "steps": args.steps,
             "quick": args.quick, "configs": results}, indent=1))


if __name__ == "__main__":
    main()
