"""Greedy and beam decoding throughput: t5kernel vs transformers' ``generate``.

Both sides hold the same random T5 v1.0 weights (nothing downloaded) and decode the same
inputs; the script checks that the outputs are identical token for token, then reports
generated tokens per second and the ratio ours / HF, measured in the same run. Target
(issue 3): at least 1.5x on CPU.

    python benchmarks/decode_vs_hf.py            # T5-Small dims, batch 8, 32 new tokens
    python benchmarks/decode_vs_hf.py --size tiny --batch 32 --new-tokens 64 --json

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


def build_pair(dims: dict, vocab: int, seed: int):
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
        hf.shared.weight[1].zero_()  # no EOS: every row decodes the full length on both sides
        hf.shared.weight.mul_(0.05)
    ours = EncDecModel(EncDecConfig(**dims, dropout_rate=0.0), vocab).eval()
    load_hf_state_dict(ours, hf.state_dict())
    return ours, hf


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--input-length", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    vocab = 32128
    ours, hf = build_pair(SIZES[args.size], vocab, seed=0)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(2, vocab, (args.batch, args.input_length), generator=gen)
    ids[:, -1] = 1
    seg = torch.ones_like(ids)
    batch = {"encoder_input_tokens": ids, "encoder_segment_ids": seg}
    n = args.new_tokens

    def hf_run(beams: int):
        with torch.no_grad():
            return hf.generate(
                input_ids=ids, attention_mask=seg, do_sample=False, num_beams=beams,
                length_penalty=0.6, early_stopping=False, max_new_tokens=n, min_new_tokens=0,
                decoder_start_token_id=0, eos_token_id=1, pad_token_id=0,
            )[:, 1:]

    rows = []
    for name, beams in (("greedy", 1), (f"beam{args.beams}", args.beams)):
        t_ours, out_ours = timed(
            lambda b=beams: ours.generate(batch, n, num_beams=b, alpha=0.6, length_penalty="hf"),
            args.repeats,
        )
        t_hf, out_hf = timed(lambda b=beams: hf_run(b), args.repeats)
        same = out_ours.shape == out_hf.shape and torch.equal(out_ours, out_hf)
        tokens = args.batch * n
        rows.append({
            "mode": name, "size": args.size, "batch": args.batch, "new_tokens": n,
            "ours_tok_per_s": tokens / t_ours, "hf_tok_per_s": tokens / t_hf,
            "ratio": t_hf / t_ours, "identical_outputs": bool(same),
        })
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"T5-{args.size} dims, batch {args.batch}, input {args.input_length}, {n} new tokens, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'mode':8} {'ours tok/s':>11} {'HF tok/s':>10} {'ratio':>7}  identical")
    for r in rows:
        print(f"{r['mode']:8} {r['ours_tok_per_s']:11.1f} {r['hf_tok_per_s']:10.1f} "
              f"{r['ratio']:6.2f}x  {r['identical_outputs']}")


if __name__ == "__main__":
    main()
