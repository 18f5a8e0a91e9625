"""Which attention kernel serves T5's biased attention: correct bias gradients, and speed.

T5 adds a learned relative-position bias to every attention score, so training needs the
gradient of the bias as well as of q, k and v. PyTorch offers several kernels behind
``F.scaled_dot_product_attention`` (memory-efficient, cuDNN, flash, math) and
FlexAttention (a compiled kernel with the bias added in a ``score_mod``); they differ in
whether they accept a bias, whether they compute its gradient, and in speed. For each
kernel and two bias layouts this script

- checks the output and the gradients of q, k, v and the position bias against a float64
  reference on small inputs (relative error ``||x - ref|| / ||ref||``), so a kernel that
  drops or mangles the bias gradient shows as a failure, not as a fast time;
- times forward + backward at T5-base's encoder shape (128 x 12 heads x 512 x 64) and
  reports TFLOP/s (4 B H L^2 d forward, 2.5x that backward).

Layouts: ``shared`` is one ``[1, H, L, L]`` position bias for all rows (no padding);
``per-row`` adds each row's padding mask as the model does (``layers.visibility``:
padding sees only padding), giving ``[B, H, L, L]`` (the run loop's packed or padded
batches). ``flex`` is the model's own FlexAttention path (``layers.flex_attend``: the
position bias in the ``score_mod``, the mask as a block mask). ``flash_attention`` takes
no bias: it runs unbiased, as a bound on what a biased kernel could reach. ``auto`` is
PyTorch's own choice, named in the report. A kernel that refuses the inputs is reported
with its error.

    python benchmarks/attention_kernels.py --json attention.json   # on a GPU (~1-2 min)
    python benchmarks/attention_kernels.py --device cpu --quick     # plumbing check
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

KERNELS = ("auto", "efficient_attention", "cudnn_attention", "flash_attention", "math", "flex")
LAYOUTS = ("shared", "per-row")
#: (rows, heads, length, d_kv): T5-base's encoder at the paper's pre-training shape
FULL_SHAPE = (128, 12, 512, 64)
CHECK_SHAPE = (2, 4, 128, 64)
QUICK_SHAPE = (2, 2, 32, 16)
#: relative error above which a result counts as wrong (bf16 operands land near 1e-2)
TOLERANCE = 5e-2


def make_inputs(shape, layout: str, device, dtype, seed: int = 0) -> dict:
    """q, k, v, the position bias leaf ``[1, H, L, L]`` and (per-row) the segment ids
    ``[B, L]`` of rows padded by 0 to L/4 tokens and their mask bias ``[B, 1, L, L]``."""
    b, h, n, d = shape
    gen = torch.Generator().manual_seed(seed)
    t = {name: torch.randn(b, h, n, d, generator=gen).to(device, dtype)
         for name in ("q", "k", "v")}
    t["q"] = t["q"] / d**0.5  # T5 folds the scale into q's initialisation
    t["pos"] = torch.randn(1, h, n, n, generator=gen).to(device, dtype)
    t["mask"] = t["segments"] = None
    if layout == "per-row":
        from t5k_builtin.model.layers import bias_as, mask_bias, visibility

        pad = torch.arange(b) * (n // 4) // max(b - 1, 1)
        segments = (torch.arange(n)[None, :] < (n - pad)[:, None]).long().to(device)
        t["segments"] = segments
        t["mask"] = bias_as(mask_bias(visibility(segments, segments, causal=False)), dtype)
    for name in ("q", "k", "v", "pos"):
        t[name].requires_grad_(True)
    return t


def bias_of(t: dict):
    return t["pos"] if t["mask"] is None else t["pos"] + t["mask"]


def reference(t: dict):
    """float64 ``softmax(q k^T + bias) v`` on copies of the inputs; returns (out, grads)."""
    c = {k: (v.detach().double().requires_grad_(k in ("q", "k", "v", "pos"))
             if v is not None else None) for k, v in t.items()}
    scores = c["q"] @ c["k"].transpose(-1, -2) + bias_of(c)
    out = torch.softmax(scores, dim=-1) @ c["v"]
    return out, c


def sdpa_fn(kernel: str):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def run(t):
        bias = None if kernel == "flash_attention" else bias_of(t)
        ctx = (contextlib.nullcontext() if kernel == "auto"
               else sdpa_kernel([getattr(SDPBackend, kernel.upper())]))
        with ctx:
            return F.scaled_dot_product_attention(t["q"], t["k"], t["v"], attn_mask=bias,
                                                  scale=1.0)
    return run


def flex_fn():
    """The model's FlexAttention path (its block mask made per call, as per batch)."""
    from t5k_builtin.model.layers import FlexBias, flex_attend, flex_bias

    def run(t):
        if t["segments"] is None:
            bias = FlexBias(t["pos"], None)
        else:
            bias = flex_bias(t["pos"], t["segments"], t["segments"], causal=False)
        return flex_attend(t["q"], t["k"], t["v"], bias)
    return run


def chosen_backend(t: dict) -> str:
    """The kernel PyTorch's ``scaled_dot_product_attention`` picks for these inputs."""
    from torch.nn.attention import SDPBackend

    choice = torch._fused_sdp_choice(t["q"], t["k"], t["v"], bias_of(t), 0.0, False, scale=1.0)
    return SDPBackend(choice).name.lower()


def rel_err(x, ref) -> float:
    if x is None:
        return float("inf")
    x, ref = x.detach().double(), ref.detach().double()
    return float((x - ref).norm() / ref.norm().clamp_min(1e-30))


def check(fn, shape, layout, device, dtype) -> dict:
    t = make_inputs(shape, layout, device, dtype)
    out = fn(t)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    out.backward(grad)
    ref_out, c = reference(t)
    ref_out.backward(grad.double())
    errs = {"out": rel_err(out, ref_out)}
    errs.update({f"d{name}": rel_err(t[name].grad, c[name].grad)
                 for name in ("q", "k", "v", "pos")})
    return errs


def time_fn(fn, shape, layout, device, dtype, reps: int) -> float:
    """Median seconds of forward + backward."""
    t = make_inputs(shape, layout, device, dtype, seed=2)
    grad = torch.randn(shape, device=device, dtype=dtype)

    def step():
        for name in ("q", "k", "v", "pos"):
            t[name].grad = None
        fn(t).backward(grad)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        step()
    times = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    ap.add_argument("--kernels", default=",".join(KERNELS),
                    help=f"comma-separated, of: {', '.join(KERNELS)}")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="tiny shapes, one rep (tests)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    kernels = [k for k in args.kernels.split(",") if k]
    bad = [k for k in kernels if k not in KERNELS]
    if bad or not kernels:
        ap.error(f"unknown kernel(s) {bad}; choose from {', '.join(KERNELS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible to torch")
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    check_shape, full_shape = ((QUICK_SHAPE, QUICK_SHAPE) if args.quick
                               else (CHECK_SHAPE, FULL_SHAPE))
    reps = 1 if args.quick else args.reps
    b, h, n, d = full_shape
    flops = 3.5 * 4 * b * h * n * n * d
    rows = []
    for layout in LAYOUTS:
        auto = chosen_backend(make_inputs(check_shape, layout, device, dtype))
        for kernel in kernels:
            row = {"layout": layout, "kernel": kernel}
            if kernel == "auto":
                row["chosen"] = auto
            fn = flex_fn() if kernel == "flex" else sdpa_fn(kernel)
            try:
                if kernel != "flash_attention":
                    row["errors"] = check(fn, check_shape, layout, device, dtype)
                    row["correct"] = max(row["errors"].values()) < TOLERANCE
                row["seconds"] = time_fn(fn, full_shape, layout, device, dtype, reps)
                row["tflops"] = flops / row["seconds"] / 1e12
            except Exception as exc:  # a kernel refusing these inputs is a finding
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            rows.append(row)
            print(format_row(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(
            {"torch": torch.__version__, "device": args.device, "dtype": str(dtype),
             "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
             "full_shape": full_shape, "check_shape": check_shape, "tolerance": TOLERANCE,
             "rows": rows}, indent=1))


def format_row(row: dict) -> str:
    name = row["kernel"] + (f" ({row['chosen']})" if "chosen" in row else "")
    head = f"{row['layout']:8s} {name:34s}"
    if "error" in row:
        return f"{head} refused: {row['error']}"
    errs = row.get("errors")
    verdict = ("no bias" if errs is None else "ok" if row["correct"] else "WRONG")
    detail = "" if errs is None else " ".join(f"{k} {v:.1e}" for k, v in errs.items())
    return (f"{head} {row['seconds'] * 1e3:8.2f} ms {row['tflops']:6.0f} TFLOP/s  "
            f"{verdict:7s} {detail}")


if __name__ == "__main__":
    main()
