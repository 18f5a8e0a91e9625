"""Training-step throughput of our T5 vs Hugging Face transformers' T5, same device, same run.

Both models get the same T5 v1.0 dimensions (``--size``, default small), random init,
the same batch of ``--rows`` rows of 512 input / 114 target tokens, one forward +
backward + optimizer step (Adafactor for ours, torch's Adafactor for the peer) per
iteration; each runs under the backend's precision (``--precision``: bf16 autocast on
CUDA by default, fp32 on CPU). Prints tokens/s of each and the ratio ours / peer.

    python benchmarks/train_step.py                      # CPU, 2 rows, small
    python benchmarks/train_step.py --device cuda --rows 128 --compile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch


def hf_model(dims: dict, vocab: int):
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=vocab, d_model=dims["d_model"], d_ff=dims["d_ff"],
                   d_kv=dims["d_kv"], num_heads=dims["num_heads"], num_layers=dims["num_layers"],
                   num_decoder_layers=dims["num_layers"], dropout_rate=0.0,
                   feed_forward_proj="relu", tie_word_embeddings=True,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5ForConditionalGeneration(cfg)


def time_steps(step, iters: int, sync) -> float:
    step()  # warm-up (and compilation)
    step()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    return (time.perf_counter() - start) / iters


def main() -> None:
    from t5k_builtin.configs import AdafactorConfig, EncDecConfig
    from t5k_builtin.model.encdec import EncDecModel
    from t5k_builtin.optim.adafactor import AdafactorFactory
    from t5kernel.api import BuildContext

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", default="small")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = args.rows or (64 if device.type == "cuda" else 2)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    vocab, li, lt = 32128, 512, 114
    dims = {k: v for k, v in EncDecConfig.PRESETS[args.size].items() if v is not None}
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randint(2, 32000, (rows, li), generator=gen).to(device)
    targets = torch.randint(2, 32000, (rows, lt), generator=gen).to(device)

    def autocast():
        if precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    ours = EncDecModel(EncDecConfig(**dims, dropout_rate=0.0), vocab).to(device).train()
    if args.compile:
        ours.compile()
    opt = AdafactorFactory(AdafactorConfig(), BuildContext()).create(ours.parameters())
    for group in opt.param_groups:
        group["lr"], group["global_step"] = 0.01, 0
    batch = {"encoder_input_tokens": inputs, "decoder_target_tokens": targets}

    def our_step():
        with autocast():
            out = ours(batch, return_logits=False)
        ((out.loss_sum + 1e-4 * out.z_loss_sum) / targets.numel()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    peer = hf_model(dims, vocab).to(device).train()
    if args.compile:
        peer.compile()
    peer_opt = torch.optim.Adafactor(peer.parameters(), lr=0.01)

    def peer_step():
        with autocast():
            loss = peer(input_ids=inputs, labels=targets).loss
        loss.backward()
        peer_opt.step()
        peer_opt.zero_grad(set_to_none=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    tokens = rows * (li + lt)
    ours_s = time_steps(our_step, args.iters, sync)
    peer_s = time_steps(peer_step, args.iters, sync)
    result = {"device": str(device), "size": args.size, "rows": rows, "precision": precision,
              "compile": args.compile, "ours_tokens_per_s": tokens / ours_s,
              "hf_tokens_per_s": tokens / peer_s, "ratio_ours_over_hf": peer_s / ours_s}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{args.size} on {device} ({precision}{', compiled' if args.compile else ''}), "
          f"{rows} rows x {li}/{lt}: ours {tokens / ours_s:,.0f} tokens/s, "
          f"HF {tokens / peer_s:,.0f} tokens/s, ratio {peer_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
