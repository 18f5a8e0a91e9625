"""t5kernel vs transformers' T5ForConditionalGeneration: training, decoding, memory, FLOP/s.

Both sides hold the same random T5 v1.0 weights (nothing downloaded). Per configuration:

- one timing process builds both models and alternates their iterations (ours, theirs,
  ours, ...) so drift in a shared machine's speed hits both alike: training tokens/s
  (forward, loss, backward, fused ``torch.optim.AdamW`` step for both, so only the model
  differs; fused is transformers' ``Trainer`` default on torch >= 2.8), greedy and
  beam-4 sequences/s with the cache (ours through ``model.generate`` /
  ``t5kernel.decoding.generate`` as the run loop calls them, theirs through
  ``generate(num_beams=..., length_penalty=0.6)`` matching our ``"hf"`` length penalty),
  and whether the greedy ids are identical;
- one memory process per implementation runs the same work alone and reports its
  ``ru_maxrss`` (and CUDA peak), so one model's allocations cannot inflate the other's.
  Memory figures (``*_mb``) are MiB (2^20 bytes).

Dropout: ours draws the reference's masks (Mesh TF, facts §1.6: one mask per row shared
across positions, the attention mask shared across queries), transformers element-wise;
that is each implementation's own T5, but it is less random-number and memory work on
our side. ``--elementwise-dropout`` makes ours drop element-wise as transformers does, and
``--dropout 0`` takes dropout out of the comparison.

Achieved FLOP/s use the weight-matmul FLOPs of our architecture's ``describe()``
(training = 3x forward; decoding counts every input token once and every generated token
per beam) and are divided by the FLOP/s of a timed fp32 ``torch.mm`` measured in the same
process. Decoding inputs end in EOS and the EOS embedding row is zeroed, so every row
decodes all new tokens on both sides (same work; see ``decode_vs_hf.py`` for early stops).

``--precision bf16`` runs both sides' forwards under bf16 autocast (refused on CPUs
without native bf16); ``--hf-precision`` gives transformers a precision of its own (e.g.
ours in bf16 against transformers as users run it, in fp32; the FLOP/s fractions are
then of the timed ``mm`` in ours' precision); ``--compile`` compiles our model (``torch.compile``) for training
and, on CPU, decodes through compiled fixed-shape steps (``generate(..., compile=True)``;
the warm-up iteration compiles): our best settings against transformers as users run
it. ``--device cuda`` (GPU mode) defaults to T5-base pre-training shapes (128 x 512/114)
in bf16 and adds model FLOP utilisation: model FLOPs (weight matmuls plus attention
products, x3 for training) per second over the GPU's datasheet dense peak
(``NOMINAL_PEAK``). ``--train-only`` skips decoding (the GPU target is the training step);
``--compile-mode`` passes a ``torch.compile`` mode (e.g. ``max-autotune-no-cudagraphs``);
``--sdpa-backend`` restricts our training attention to one fused kernel (diagnostics: which
of PyTorch's kernels serves T5's biased attention fastest on this GPU);
``--flex-attention`` trains ours through FlexAttention (``EncDecModel.flex_attention``;
CUDA, with ``--compile``).
The timing process reports its training figures on stderr as soon as they are measured.

    python benchmarks/vs_hf.py                          # tiny and small, CPU, fp32
    python benchmarks/vs_hf.py --compile                # our best CPU settings
    python benchmarks/vs_hf.py --configs tiny --steps 5 --json vs_hf.json
    python benchmarks/vs_hf.py --device cuda --compile  # T5-base MFU in bf16 (< 5 min)
    python benchmarks/vs_hf.py --device cuda --compile --train-only
    python benchmarks/vs_hf.py --quick                  # one step, tiny shapes (tests)

transformers is a test-only dependency (``pip install -e ".[test]"``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

VOCAB = 32128
#: model dimensions and training shapes (rows, input length, target length) of the issue
CONFIGS = {
    "tiny": dict(dims=dict(num_layers=4, d_model=256, d_ff=1024, d_kv=64, num_heads=4),
                 train=(16, 128, 32)),
    "small": dict(dims=dict(num_layers=6, d_model=512, d_ff=2048, d_kv=64, num_heads=8),
                  train=(8, 512, 114)),
    # the GPU mode's model: T5-base pre-training at the paper's 128 x 512/114
    "base": dict(dims=dict(num_layers=12, d_model=768, d_ff=3072, d_kv=64, num_heads=12),
                 train=(128, 512, 114)),
}
#: configurations run when --configs is not given, per device
DEFAULT_CONFIGS = {"cpu": "tiny,small", "cuda": "base"}
#: dense tensor-core peak FLOP/s per GPU model and precision (vendor datasheets, without
#: sparsity), for MFU; the first name found in the device name counts, so the PCIe / NVL
#: parts come before their SXM namesakes
NOMINAL_PEAK = {"H200 NVL": {"bf16": 835.5e12, "fp32": 417.8e12},  # fp32 = TF32
                "H100 NVL": {"bf16": 835.5e12, "fp32": 417.8e12},
                "H100 PCIe": {"bf16": 756.5e12, "fp32": 378.0e12},
                "H200": {"bf16": 989.4e12, "fp32": 494.7e12},
                "H100": {"bf16": 989.4e12, "fp32": 494.7e12},
                "A100": {"bf16": 312e12, "fp32": 156e12}}
DECODE = (32, 128, 32)  # rows, input length, new tokens
BEAMS = 4
QUICK_TRAIN, QUICK_DECODE = (2, 16, 8), (2, 16, 4)
METRICS = ("train_tokens_per_s", "train_flops_per_s", "train_matmul_fraction",
           "train_model_flops_per_s",
           "greedy_sequences_per_s", "greedy_flops_per_s", "greedy_matmul_fraction",
           "beam4_sequences_per_s", "beam4_flops_per_s", "beam4_matmul_fraction",
           "peak_rss_mb")


# ------------------------------------------------------------------------- models
def hf_config(dims: dict, dropout: float):
    import transformers

    return transformers.T5Config(
        vocab_size=VOCAB, d_model=dims["d_model"], d_ff=dims["d_ff"], d_kv=dims["d_kv"],
        num_heads=dims["num_heads"], num_layers=dims["num_layers"], dropout_rate=dropout,
        feed_forward_proj="relu", tie_word_embeddings=True, decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=1)


def ours_model(dims: dict, dropout: float, broadcast: bool = True):
    """Our model; ``broadcast``: the paper's dropout masks shared over positions (our
    default) or element-wise ones as transformers draws them."""
    from t5k_builtin.configs import EncDecConfig
    from t5k_builtin.model.encdec import EncDecModel

    return EncDecModel(EncDecConfig(**dims, dropout_rate=dropout, dropout_broadcast=broadcast),
                       VOCAB)


def train_pair(dims: dict, dropout: float, seed: int = 0, broadcast: bool = True):
    """HF model and ours with HF's weights, both with ``dropout``, in train mode."""
    import transformers

    from t5k_builtin.model.encdec import load_hf_state_dict

    torch.manual_seed(seed)
    hf = transformers.T5ForConditionalGeneration(hf_config(dims, dropout))
    with torch.no_grad():
        hf.shared.weight.mul_(0.05)  # as decode_vs_hf: keep the random model's logits sane
    ours = ours_model(dims, dropout, broadcast)
    load_hf_state_dict(ours, hf.state_dict())
    return ours.train(), hf.train()


def autocast(device: torch.device, precision: str):
    """bf16 autocast on ``device`` (both sides' forwards), or nothing for fp32."""
    import contextlib

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def sdpa_context(backend: str | None):
    """``F.scaled_dot_product_attention`` restricted to ``backend`` (``SDPBackend`` name,
    lower case), or left to PyTorch's choice."""
    import contextlib

    if not backend:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([getattr(SDPBackend, backend.upper())])


def train_steps(ours, hf, shape: tuple[int, int, int], device: torch.device,
                precision: str = "fp32", sdpa_backend: str | None = None,
                hf_precision: str | None = None):
    """Closures doing one forward (under ``precision``'s autocast) + mean token loss +
    backward + AdamW step each: the fused AdamW, for both (transformers' ``Trainer``
    default optimizer, ``adamw_torch_fused``, on torch >= 2.8; on CPU 5x faster than the
    foreach one, 0.06 vs 0.31 s per t5-small step here). ``hf_precision``: transformers'
    autocast, if not ``precision``."""
    hf_precision = hf_precision or precision
    rows, li, lt = shape
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randint(2, VOCAB, (rows, li), generator=gen).to(device)
    targets = torch.randint(2, VOCAB, (rows, lt), generator=gen).to(device)
    batch = {"encoder_input_tokens": inputs, "decoder_target_tokens": targets}
    steps = {}
    if ours is not None:
        opt = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=True)

        def ours_step():
            with sdpa_context(sdpa_backend):
                with autocast(device, precision):
                    out = ours(batch, return_logits=False)
                (out.loss_sum / out.num_tokens).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        steps["ours"] = ours_step
    if hf is not None:
        hf_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, fused=True)

        def hf_step():
            with autocast(device, hf_precision):
                loss = hf(input_ids=inputs, labels=targets).loss
            loss.backward()
            hf_opt.step()
            hf_opt.zero_grad(set_to_none=True)
        steps["hf"] = hf_step
    return steps


def decode_fns(ours, hf, shape: tuple[int, int, int], device: torch.device,
               precision: str = "fp32", compile: bool = False, hf_precision: str | None = None):
    """``{(impl, mode): closure}`` for greedy and beam-4 decoding of the same inputs
    (under ``precision``'s autocast); ``compile``: ours through compiled static-shape
    steps (``generate(..., compile=True)``); ``hf_precision``: transformers' autocast, if
    not ``precision``."""
    from decode_vs_hf import make_inputs

    from t5kernel import decoding

    rows, length, new = shape
    ids, seg = (t.to(device) for t in make_inputs(rows, length, VOCAB, varied=False))
    batch = {"encoder_input_tokens": ids, "encoder_segment_ids": seg}
    fns = {}
    if ours is not None:
        fast = {"compile": True} if compile else {}
        fns["ours", "greedy"] = lambda: ours.generate(batch, new, **fast)
        fns["ours", "beam4"] = lambda: decoding.generate(
            ours, batch, new, num_beams=BEAMS, alpha=0.6, length_penalty="hf", **fast)
    if hf is not None:
        def theirs(beams: int):
            beam_args = dict(length_penalty=0.6, early_stopping=False) if beams > 1 else {}
            with torch.no_grad():
                return hf.generate(
                    input_ids=ids, attention_mask=seg, do_sample=False, num_beams=beams,
                    max_new_tokens=new, **beam_args,
                    decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)[:, 1:]
        fns["hf", "greedy"] = lambda: theirs(1)
        fns["hf", "beam4"] = lambda: theirs(BEAMS)

    def under_autocast(fn, precision):
        def run():
            with autocast(device, precision):
                return fn()
        return run
    precisions = {"ours": precision, "hf": hf_precision or precision}
    return {key: under_autocast(fn, precisions[key[0]]) for key, fn in fns.items()}


def zero_eos(model) -> None:
    """Zero the EOS embedding row (both models call it ``shared``): no row ends early."""
    with torch.no_grad():
        model.shared.weight[1].zero_()


# ------------------------------------------------------------------------ timing
def sync_fn(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def alternate(fns: dict, steps: int, warmup: int, sync,
              window: int = 1) -> tuple[dict, dict]:
    """Median seconds per call for each key, the keys' measurements interleaved; and each
    key's last output. A measurement times ``window`` calls back to back between two
    synchronisations (a training loop queues its steps without waiting for each one),
    and its time is divided by ``window``."""
    outs = {}
    for _ in range(warmup):
        for key, fn in fns.items():
            outs[key] = fn()
    times: dict = {key: [] for key in fns}
    for _ in range(steps):
        for key, fn in fns.items():
            sync()
            start = time.perf_counter()
            for _ in range(window):
                outs[key] = fn()
            sync()
            times[key].append((time.perf_counter() - start) / window)
    return {k: statistics.median(v) for k, v in times.items()}, outs


def matmul_flops(device: torch.device, n: int, sync, repeats: int = 5,
                 precision: str = "fp32") -> float:
    """FLOP/s of an ``n x n`` ``torch.mm`` in ``precision`` on this machine (best of
    ``repeats``)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def flops(dims: dict) -> tuple[int, int]:
    """Forward weight-matmul FLOPs per input and per target token (our describe())."""
    from t5k_builtin.configs import EncDecConfig
    from t5k_builtin.model.encdec import EncDecArchitecture

    info = EncDecArchitecture(EncDecConfig(**dims)).describe(VOCAB)
    return (info["forward_matmul_flops_per_input_token"],
            info["forward_matmul_flops_per_target_token"])


def attention_flops(dims: dict, rows: int, li: int, lt: int) -> int:
    """Forward FLOPs of the attention score and value products of one training batch
    (4 * H * d_kv per query per key per attention layer; every key counted, as MFU
    conventions do): encoder self-attention, decoder self- and cross-attention."""
    inner = dims["num_heads"] * dims["d_kv"]
    layers = dims["num_layers"]
    return 4 * inner * rows * layers * (li * li + lt * lt + lt * li)


def nominal_peak(device: torch.device, precision: str) -> float | None:
    """The datasheet dense peak of this GPU in ``precision`` (None if unknown or CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for model, peaks in NOMINAL_PEAK.items():
        if model in name:
            return peaks[precision]
    return None


def compiled_decoding(args) -> bool:
    """``--compile`` decodes through compiled steps on CPU; on CUDA it compiles training
    only (the GPU mode measures T5-base training, and its run must stay under 5 minutes)."""
    return args.compile and args.device == "cpu"


def prepare_ours(model, compile: bool, flex: bool = False, mode: str | None = None):
    """Our model with ``--flex-attention`` applied, compiled (in ``mode``, if given) when
    ``compile``."""
    model.flex_attention = flex
    if compile:
        model.compile(**({"mode": mode} if mode else {}))
    return model


def matmul_size(device: torch.device, quick: bool) -> int:
    """The side of the square ``mm`` timed as this machine's matmul rate."""
    return 256 if quick else (8192 if device.type == "cuda" else 2048)


def same_ids(a: torch.Tensor, b: torch.Tensor) -> bool:
    from decode_vs_hf import _same

    return _same(a.cpu(), b.cpu())


def time_worker(args, spec: dict) -> dict:
    """Both implementations in this process, iterations alternating."""
    from decode_vs_hf import build_pair

    device, sync = torch.device(args.device), sync_fn(torch.device(args.device))
    warmup = 0 if args.quick else 1 + int(args.compile)  # compiling takes a step or two
    per_in, per_tgt = flops(spec["dims"])
    size = matmul_size(device, args.quick)
    peak = matmul_flops(device, size, sync, precision=args.precision)
    nominal = nominal_peak(device, args.precision)
    rows, li, lt = spec["train"]
    ours, hf = (m.to(device) for m in train_pair(spec["dims"], args.dropout,
                                                       broadcast=not args.elementwise_dropout))
    prepare_ours(ours, args.compile, args.flex_attention, args.compile_mode)
    steps = train_steps(ours, hf, spec["train"], device, args.precision, args.sdpa_backend,
                        args.hf_precision)
    secs, _ = alternate(steps, args.steps, warmup, sync, args.train_window)
    result: dict = {impl: {} for impl in ("ours", "hf")}
    train_flops = 3 * rows * (li * per_in + lt * per_tgt)
    model_flops = train_flops + 3 * attention_flops(spec["dims"], rows, li, lt)
    for impl, s in secs.items():
        result[impl].update(train_tokens_per_s=rows * (li + lt) / s,
                            train_flops_per_s=train_flops / s,
                            train_matmul_fraction=train_flops / s / peak,
                            train_model_flops_per_s=model_flops / s)
        if nominal:
            result[impl]["train_mfu"] = model_flops / s / nominal
    print("training: " + "; ".join(
        f"{impl} {r['train_tokens_per_s']:.4g} tokens/s"
        + (f", MFU {r['train_mfu']:.1%}" if "train_mfu" in r else "")
        for impl, r in result.items()), file=sys.stderr, flush=True)
    out = {"matmul_flops_per_s": peak, "matmul_size": size,
           "nominal_peak_flops_per_s": nominal}
    del ours, hf, steps
    if args.train_only:
        return {**out, **result}
    ours, hf = build_pair(spec["dims"], VOCAB, seed=2, eos_scale=None)
    ours, hf = ours.to(device).eval(), hf.to(device).eval()
    drows, dlen, new = spec["decode"]
    fns = decode_fns(ours, hf, spec["decode"], device, args.precision, compiled_decoding(args),
                     args.hf_precision)
    matches = {}
    for mode, beams in (("greedy", 1), ("beam4", BEAMS)):
        pair = {k: v for k, v in fns.items() if k[1] == mode}
        secs, outs = alternate(pair, args.steps, warmup, sync)
        work = drows * (dlen * per_in + beams * new * per_tgt)
        for (impl, _), s in secs.items():
            result[impl].update({f"{mode}_sequences_per_s": drows / s,
                                 f"{mode}_flops_per_s": work / s,
                                 f"{mode}_matmul_fraction": work / s / peak})
        matches[f"{mode}_ids_match"] = same_ids(outs["ours", mode], outs["hf", mode])
    return {**out, **matches, **result}


def memory_worker(args, spec: dict, impl: str) -> dict:
    """Training and decoding of one implementation alone; its peak resident memory.

    Both sides import torch and transformers, so the baselines match; ours is built
    directly (weight values do not change memory), never next to an HF model.
    """
    import transformers  # both sides import it, so their baselines match

    device, sync = torch.device(args.device), sync_fn(torch.device(args.device))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.manual_seed(0)
    if impl == "ours":
        model = ours_model(spec["dims"], args.dropout, not args.elementwise_dropout)
        pair = (model, None)
    else:
        model = transformers.T5ForConditionalGeneration(hf_config(spec["dims"], args.dropout))
        pair = (None, model)
    model.to(device).train()
    zero_eos(model)  # every row decodes all new tokens, as in the timing process
    if impl == "ours":
        prepare_ours(model, args.compile, args.flex_attention, args.compile_mode)
    steps = train_steps(*pair, spec["train"], device, args.precision, args.sdpa_backend,
                        args.hf_precision)
    for _ in range(args.steps):
        steps[impl]()
    model.eval()
    if not args.train_only:
        for fn in decode_fns(*pair, spec["decode"], device, args.precision,
                             compiled_decoding(args), args.hf_precision).values():
            fn()
    sync()
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_after_imports_mb": base}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


# --------------------------------------------------------------------- orchestration
def spec_for(name: str, quick: bool) -> dict:
    spec = dict(CONFIGS[name])
    spec["train"], spec["decode"] = ((QUICK_TRAIN, QUICK_DECODE) if quick
                                     else (spec["train"], DECODE))
    return spec


def run_child(args, *extra: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--device", args.device,
           "--steps", str(args.steps), "--train-window", str(args.train_window),
           "--dropout", str(args.dropout), "--threads", str(args.threads), "--precision", args.precision,
           "--hf-precision", args.hf_precision, *extra]
    cmd += (["--quick"] * args.quick + ["--compile"] * args.compile
            + ["--elementwise-dropout"] * args.elementwise_dropout
            + ["--train-only"] * args.train_only
            + ["--compile-mode", args.compile_mode] * bool(args.compile_mode)
            + ["--sdpa-backend", args.sdpa_backend] * bool(args.sdpa_backend)
            + ["--flex-attention"] * args.flex_attention)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def collect(proc) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"worker {proc.args[3:]} failed with status {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def measure(args, name: str) -> dict:
    """One configuration: the two memory processes side by side, then the timing process
    alone so that its timings never share the machine with them (``--quick``, whose
    numbers mean nothing, runs all three at once)."""
    procs = {impl: run_child(args, "--worker", f"memory-{impl}", "--configs", name)
             for impl in ("ours", "hf")}
    if args.quick:
        procs["time"] = run_child(args, "--worker", "time", "--configs", name)
    mem = {impl: collect(procs[impl]) for impl in ("ours", "hf")}
    timed = collect(procs.get("time") or run_child(args, "--worker", "time", "--configs", name))
    spec = spec_for(name, args.quick)
    for impl in ("ours", "hf"):
        timed[impl].update(mem[impl])
    ratio = {k: timed["ours"][k] / timed["hf"][k] for k in timed["ours"]
             if isinstance(timed["ours"][k], float) and timed["hf"].get(k)}
    return {"config": name, **spec["dims"], "vocab_size": VOCAB,
            "train_shape": dict(zip(("rows", "inputs", "targets"), spec["train"], strict=True)),
            "decode_shape": dict(zip(("rows", "inputs", "new_tokens"), spec["decode"], strict=True)),
            "beams": BEAMS, "precision": args.precision, "hf_precision": args.hf_precision,
            "ours_compiled": args.compile,
            "compile_mode": args.compile_mode, "sdpa_backend": args.sdpa_backend,
            "flex_attention": args.flex_attention, **timed,
            "ratio_ours_over_hf": ratio}


def print_table(results: list[dict]) -> None:
    keys = [*METRICS, "train_mfu", "peak_cuda_mb"]  # the last two on GPUs only
    print(f"{'config':7} {'metric':24} {'t5kernel':>12} {'transformers':>13} {'ratio':>7}")
    for r in results:
        for k in keys:
            if k not in r["ours"]:
                continue
            print(f"{r['config']:7} {k:24} {r['ours'][k]:12.4g} {r['hf'][k]:13.4g} "
                  f"{r['ratio_ours_over_hf'][k]:6.2f}x")
        precisions = ("" if r["hf_precision"] == r["precision"]
                      else f"ours {r['precision']}, transformers {r['hf_precision']}; ")
        print(f"{r['config']:7} {precisions}{r['precision']} matmul FLOP/s "
              f"{r['matmul_flops_per_s']:.3g}"
              + ("" if "greedy_ids_match" not in r else
                 f"; greedy ids match: {r['greedy_ids_match']}; "
                 f"beam-4 ids match: {r['beam4_ids_match']}"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=None,
                    help="comma-separated, from: " + ", ".join(CONFIGS)
                    + " (default: tiny,small on cpu; base on cuda)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--precision", default=None, choices=("fp32", "bf16"),
                    help="autocast for both sides (default: fp32 on cpu, bf16 on cuda)")
    ap.add_argument("--hf-precision", default=None, choices=("fp32", "bf16"),
                    help="transformers' own autocast (default: --precision), e.g. ours in "
                    "bf16 against transformers in fp32")
    ap.add_argument("--elementwise-dropout", action="store_true",
                    help="our dropout element-wise like transformers' (default: the paper's "
                    "masks broadcast over positions)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile our model for training and (CPU) decoding (our best "
                    "settings)")
    ap.add_argument("--compile-mode", default=None,
                    choices=("default", "reduce-overhead", "max-autotune",
                             "max-autotune-no-cudagraphs"),
                    help="torch.compile mode for --compile (default: torch's default)")
    ap.add_argument("--sdpa-backend", default=None,
                    choices=("efficient_attention", "cudnn_attention", "flash_attention", "math"),
                    help="restrict our training attention to this fused kernel (default: "
                    "PyTorch's choice)")
    ap.add_argument("--flex-attention", action="store_true",
                    help="train ours through FlexAttention (CUDA, with --compile)")
    ap.add_argument("--train-only", action="store_true",
                    help="measure training only, no decoding (the GPU mode's target)")
    ap.add_argument("--steps", type=int, default=5, help="timed iterations per measurement")
    ap.add_argument("--train-window", type=int, default=1,
                    help="training steps run back to back per timed iteration, with no "
                         "synchronisation between them (as in a training loop; t5k run reads "
                         "the loss only when it logs); on a GPU, a launch-bound step's queue "
                         "then stays full")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--quick", action="store_true",
                    help="one step per configuration on tiny shapes (for tests)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.steps = 1
    if args.train_window < 1:
        ap.error(f"--train-window must be >= 1, got {args.train_window}")
    if args.compile_mode and not args.compile:
        ap.error("--compile-mode needs --compile")
    if args.flex_attention and not (args.device == "cuda" and args.compile):
        ap.error("--flex-attention needs --device cuda and --compile (FlexAttention has no "
                 "CPU backward, and runs as a slow reference uncompiled)")
    if args.precision is None:
        args.precision = "bf16" if args.device == "cuda" else "fp32"
    args.hf_precision = args.hf_precision or args.precision
    if args.configs is None:
        args.configs = DEFAULT_CONFIGS[args.device]
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible to torch")
    from t5k_builtin.backends.cpu import bf16_supported

    if "bf16" in (args.precision, args.hf_precision) and args.device == "cpu" \
            and not bf16_supported():
        ap.error("--precision / --hf-precision bf16: this CPU has no native bfloat16 (AVX512-BF16 / AMX); "
                 "use --precision fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.configs.split(",") if n]
    bad = [n for n in names if n not in CONFIGS]
    if bad or not names:
        ap.error(f"unknown config(s) {bad}; choose from {', '.join(CONFIGS)}")
    if args.worker:
        spec = spec_for(names[0], args.quick)
        out = (time_worker(args, spec) if args.worker == "time"
               else memory_worker(args, spec, args.worker.removeprefix("memory-")))
        print(json.dumps(out))
        return
    from importlib.metadata import version  # not importing transformers here saves seconds

    results = [measure(args, n) for n in names]
    report = {"device": args.device, "torch": torch.__version__,
              "transformers": version("transformers"), "threads": torch.get_num_threads(),
              "steps": args.steps, "train_window": args.train_window,
              "dropout": args.dropout, "quick": args.quick,
              "precision": args.precision, "hf_precision": args.hf_precision,
              "ours_compiled": args.compile,
              "compile_mode": args.compile_mode, "train_only": args.train_only,
              "ours_dropout": "element-wise" if args.elementwise_dropout else "broadcast",
              "optimizer": "torch.optim.AdamW(lr=1e-4, fused=True)", "configs": results}
    if args.device == "cuda":
        report["gpu"] = torch.cuda.get_device_name(0)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
