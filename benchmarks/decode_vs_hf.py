"""Greedy and beam decoding throughput: t5kernel vs transformers' ``generate``.

Both sides hold the same random T5 v1.0 weights (nothing downloaded) and decode the same
inputs; the script checks that the outputs are identical token for token, then reports
generated tokens per second and the ratio ours / HF, measured in the same run. Target
(issue 3): at least 1.5x on CPU.

Two scenarios, because where the time goes depends on how outputs end:

- ``full``: the EOS embedding row is zeroed, so every row decodes ``--new-tokens`` tokens.
  Both sides then do the same matrix products; the ratio measures per-step overhead.
- ``varied``: as in evaluation, inputs have different lengths (uniform in
  [16, ``--input-length``], right-padded to it, as the run loop pads evaluation batches)
  and rows end at different lengths (the EOS row is a random direction; with the default
  seed and scale about half the rows end within a few tokens, the rest run to the end).
  t5kernel cuts all-padding input columns and stops computing rows (greedy) and examples
  (beam) whose result is fixed; transformers computes them to the end of the batch.

    python benchmarks/decode_vs_hf.py            # T5-Small dims, batch 16, 48 new tokens
    python benchmarks/decode_vs_hf.py --size tiny --json

transformers is a test-only dependency (``pip install -e ".[test]"``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

SIZES = {
    "tiny": dict(num_layers=2, d_model=128, d_ff=512, d_kv=32, num_heads=4),
    "small": dict(num_layers=6, d_model=512, d_ff=2048, d_kv=64, num_heads=8),
}


def build_pair(dims: dict, vocab: int, seed: int, eos_scale: float | None):
    """Our model and HF's with the same weights; ``eos_scale`` None zeroes the EOS row."""
    import transformers

    from t5k_builtin.configs import EncDecConfig
    from t5k_builtin.model.encdec import EncDecModel, load_hf_state_dict

    torch.manual_seed(seed)
    cfg = transformers.T5Config(
        vocab_size=vocab, d_model=dims["d_model"], d_ff=dims["d_ff"], d_kv=dims["d_kv"],
        num_heads=dims["num_heads"], num_layers=dims["num_layers"], dropout_rate=0.0,
        feed_forward_proj="relu", tie_word_embeddings=True, decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=1,
    )
    hf = transformers.T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        emb = hf.shared.weight
        emb.mul_(0.05)  # HF's N(0, 1) embedding makes a random model repeat its input
        if eos_scale is None:
            emb[1].zero_()
        else:
            emb[1] = torch.randn(emb.shape[1]) * emb[2:].norm(dim=1).mean() * eos_scale
            emb[1] /= emb.shape[1] ** 0.5
    ours = EncDecModel(EncDecConfig(**dims, dropout_rate=0.0), vocab).eval()
    load_hf_state_dict(ours, hf.state_dict())
    return ours, hf


def make_inputs(batch: int, length: int, vocab: int, varied: bool):
    """Random ids ending in EOS, right-padded with 0; all ``length`` long unless ``varied``."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(2, vocab, (batch, length), generator=gen)
    sizes = (torch.randint(16, length + 1, (batch,), generator=gen) if varied
             else torch.full((batch,), length))
    seg = (torch.arange(length)[None, :] < sizes[:, None]).long()
    ids = ids * seg
    ids[torch.arange(batch), sizes - 1] = 1
    return ids, seg


def paired(ours, theirs, repeats: int):
    """Median seconds of each side and the median of per-pair ratios; the two sides
    alternate so that drift in a shared machine's speed hits both alike."""
    ours(), theirs()  # warm-up
    t_ours, t_hf, ratios = [], [], []
    out_ours = out_hf = None
    for _ in range(repeats):
        start = time.perf_counter()
        out_ours = ours()
        t_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        out_hf = theirs()
        t_hf.append(time.perf_counter() - start)
        ratios.append(t_hf[-1] / t_ours[-1])
    return (statistics.median(t_ours), statistics.median(t_hf), statistics.median(ratios),
            out_ours, out_hf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--input-length", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scenario", choices=["full", "varied", "both"], default="both")
    ap.add_argument("--eos-scale", type=float, default=8.0,
                    help="norm of the EOS row relative to the others (varied scenario)")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    vocab = 32128
    n = args.new_tokens
    scenarios = ["full", "varied"] if args.scenario == "both" else [args.scenario]

    rows = []
    for scenario in scenarios:
        ids, seg = make_inputs(args.batch, args.input_length, vocab, scenario == "varied")
        batch = {"encoder_input_tokens": ids, "encoder_segment_ids": seg}
        ours, hf = build_pair(SIZES[args.size], vocab, args.seed,
                              None if scenario == "full" else args.eos_scale)

        def hf_run(beams: int, hf=hf, ids=ids, seg=seg):
            with torch.no_grad():
                return hf.generate(
                    input_ids=ids, attention_mask=seg, do_sample=False, num_beams=beams,
                    length_penalty=0.6, early_stopping=False, max_new_tokens=n,
                    decoder_start_token_id=0, eos_token_id=1, pad_token_id=0,
                )[:, 1:]

        for mode, beams in (("greedy", 1), (f"beam{args.beams}", args.beams)):
            t_ours, t_hf, ratio, out_ours, out_hf = paired(
                lambda b=beams, m=ours, x=batch: m.generate(x, n, num_beams=b, alpha=0.6,
                                                            length_penalty="hf"),
                lambda b=beams: hf_run(b),
                args.repeats,
            )
            lengths = [r.index(1) + 1 if 1 in r else len(r) for r in out_ours.tolist()]
            rows.append({
                "scenario": scenario, "mode": mode, "size": args.size, "batch": args.batch,
                "max_new_tokens": n, "mean_output_length": sum(lengths) / len(lengths),
                "ours_seconds": t_ours, "hf_seconds": t_hf, "ratio": ratio,
                "identical_outputs": _same(out_ours, out_hf),
            })
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"T5-{args.size} dims, batch {args.batch}, input {args.input_length}, at most {n} "
          f"new tokens, torch threads {torch.get_num_threads()}; medians of {args.repeats} "
          "alternating runs")
    print(f"{'scenario':8} {'mode':7} {'mean len':>8} {'ours s':>8} {'HF s':>8} {'ratio':>7}"
          "  identical")
    for r in rows:
        print(f"{r['scenario']:8} {r['mode']:7} {r['mean_output_length']:8.1f} "
              f"{r['ours_seconds']:8.3f} {r['hf_seconds']:8.3f} {r['ratio']:6.2f}x  "
              f"{r['identical_outputs']}")


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to what follows each row's first EOS (HF pads beams with EOS, we with 0)."""
    def cut(x: torch.Tensor) -> list[list[int]]:
        return [r[: r.index(1) + 1] if 1 in r else r for r in x.tolist()]
    return cut(a) == cut(b)


if __name__ == "__main__":
    main()
