"""Every P Table 2 architecture trains, masks as specified, and counts its parameters (§2).

1. A short Adafactor run per architecture on a copy task (fresh random examples every
   step, packed as in training): the training loss falls, and it falls because the model
   learned to read its inputs: on held-out examples the loss on the target tokens ends
   far below what any predictor blind to the inputs can reach (ln of the number of
   symbols per copied token), and greedy decoding copies held-out inputs.
2. Decoder-only attention masks as model behaviour (facts §2): in the prefix LM a later
   token of the inputs prefix changes the logits at earlier prefix positions, a target
   token never changes earlier logits; in the LM nothing changes earlier logits.
3. Parameter counts of the shared and half-depth encoder-decoders from a closed form
   written out here (facts §1.1-§1.7), against the built module and ``describe``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model.decoder_only import (
    LMArchitecture,
    PrefixLMArchitecture,
    delimited_lm_features,
)
from t5k_builtin.model.encdec import EncDecArchitecture, EncDecHalfArchitecture
from t5k_builtin.model.encdec_shared import EncDecSharedArchitecture
from t5k_builtin.optim.adafactor import Adafactor
from t5kernel.api import BuildContext

ARCHS = {
    "encdec": EncDecArchitecture,
    "encdec_shared": EncDecSharedArchitecture,
    "encdec_half": EncDecHalfArchitecture,  # halves num_layers=2 to one layer per stack
    "lm": LMArchitecture,
    "prefix_lm": PrefixLMArchitecture,
}
DECODER_ONLY = ("lm", "prefix_lm")
DIMS = dict(num_layers=2, d_model=32, d_ff=64, d_kv=8, num_heads=4, dropout_rate=0.0)
EOS = 1
SYMBOLS = 10  # token ids 2..11; 0 = pad, 1 = EOS
VOCAB = 2 + SYMBOLS
INPUTS_LENGTH = TARGETS_LENGTH = 16  # several examples per packed row
STEPS, BATCH, ROWS, LR = 80, 64, 24, 0.05  # ROWS: fixed batch shape (17-20 rows used)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: tiny models gain nothing from more, and oversubscribing a
    shared CPU slowed these overhead-bound steps some 50-fold here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_arch(name: str, seed: int = 0, **kw):
    return ARCHS[name](EncDecConfig(**{**DIMS, **kw}), BuildContext(seed=seed))


def tensors(feats) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in feats.items()}


def copy_examples(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """``n`` copy examples: 2-4 random symbols, targets = inputs (both end in EOS)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = np.append(rng.integers(2, VOCAB, int(rng.integers(2, 5))), EOS)
        out.append({"inputs": x, "targets": x.copy()})
    return out


# --------------------------------------------------------------------- 1. training
def train(model, arch, steps: int, seed: int) -> list[float]:
    """Adafactor (paper settings, constant relative step) on fresh packed batches."""
    pool = copy_examples(steps * BATCH, seed)
    opt = Adafactor(model.parameters(), lr=LR)
    model.train()
    losses = []
    for s in range(steps):
        batch = pool[s * BATCH : (s + 1) * BATCH]
        feats = tensors(arch.features(batch, INPUTS_LENGTH, TARGETS_LENGTH, True, ROWS))
        out = model(feats, return_logits=False)
        loss = out.loss_sum / out.num_tokens
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def target_loss(model, arch, name: str, examples) -> float:
    """Mean cross-entropy over the target tokens (incl. EOS) only, in eval mode.

    The LM's own features weight the whole sequence; the prefix-LM weighting (same rows)
    restricts it to the targets so every architecture is scored on the same tokens.
    """
    if name in DECODER_ONLY:
        feats = delimited_lm_features(
            examples, INPUTS_LENGTH, TARGETS_LENGTH, pack=True, loss_on_targets_only=True
        )
    else:
        feats = arch.features(examples, INPUTS_LENGTH, TARGETS_LENGTH, pack=True)
    model.eval()
    with torch.no_grad():
        out = model(tensors(feats), return_logits=False)
    return float(out.loss_sum / out.num_tokens)


def input_blind_bound(examples) -> float:
    """Lower bound on the expected target loss of any predictor that ignores the inputs.

    Each copied symbol is uniform over SYMBOLS and independent of everything before it in
    the targets, so it costs at least ln(SYMBOLS) nats; EOS may cost 0.
    """
    symbols = sum(ex["targets"].size - 1 for ex in examples)
    tokens = sum(ex["targets"].size for ex in examples)
    return math.log(SYMBOLS) * symbols / tokens


def greedy_accuracy(model, arch, examples) -> float:
    """Fraction of target tokens (incl. EOS) that greedy decoding reproduces in place."""
    feats = arch.features(examples, INPUTS_LENGTH, TARGETS_LENGTH, pack=False)
    prompt = {k: v for k, v in tensors(feats).items() if k.startswith("encoder")}
    model.eval()
    with torch.no_grad():
        ids = model.generate(prompt, TARGETS_LENGTH).numpy()
    ids = np.pad(ids, ((0, 0), (0, TARGETS_LENGTH - ids.shape[1])))
    hits = sum(int((ids[r, : ex["targets"].size] == ex["targets"]).sum())
               for r, ex in enumerate(examples))
    return hits / sum(ex["targets"].size for ex in examples)


@pytest.mark.parametrize("name", list(ARCHS))
def test_short_training_run_learns_to_copy(name):
    arch = make_arch(name)
    model = arch.build(VOCAB)
    # a separate draw (a short sequence may also occur in training; the input-blind
    # bound below holds for any predictor, memorising or not)
    held_out = copy_examples(64, seed=12345)
    bound = input_blind_bound(held_out)
    loss_before = target_loss(model, arch, name, held_out)
    acc_before = greedy_accuracy(model, arch, held_out)

    losses = train(model, arch, STEPS, seed=0)

    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-5:]) < 0.7 * losses[0], losses
    loss_after = target_loss(model, arch, name, held_out)
    acc_after = greedy_accuracy(model, arch, held_out)
    # only a model that reads its inputs can get well below the input-blind bound
    assert loss_after < 0.6 * bound < loss_before, (loss_before, loss_after, bound)
    assert acc_after >= 0.5 and acc_after > acc_before + 0.4, (acc_before, acc_after)


# ------------------------------------------------------------------ 2. masks
def real_logits(model, arch, inputs, targets) -> torch.Tensor:
    """Eval logits ``[len(inputs) + len(targets), VOCAB]`` of one unpacked example
    (the padding columns, -inf, are dropped)."""
    feats = arch.features([{"inputs": inputs, "targets": targets}], 8, 8, pack=False)
    with torch.no_grad():
        logits = model(tensors(feats), return_logits=True).logits[0]
    return logits[: inputs.size + targets.size, :VOCAB]


def moved_positions(model, arch, inputs, targets, index) -> list[int]:
    """Positions whose logits change when token ``index`` of [inputs, targets] changes.

    Asserts every position either moves clearly (> 1e-3) or not at all (<= 1e-6).
    """
    seq = np.concatenate([inputs, targets])
    base = real_logits(model, arch, inputs, targets)
    seq2 = seq.copy()
    seq2[index] = (seq[index] - 2 + 1) % SYMBOLS + 2  # another symbol
    new = real_logits(model, arch, seq2[: inputs.size], seq2[inputs.size :])
    diff = (new - base).abs().amax(-1)
    assert bool(((diff <= 1e-6) | (diff > 1e-3)).all()), diff
    return [p for p in range(seq.size) if diff[p] > 1e-3]


@pytest.mark.parametrize("name", DECODER_ONLY)
def test_decoder_only_visibility_as_behaviour(name):
    """Decoder input position p holds token p - 1 of [inputs, targets] (0 at p = 0).

    LM: token i reaches exactly the positions > i. Prefix LM (facts §2): the region is
    positions 0..len(inputs) (the inputs incl. EOS plus the one predicting the first
    target), fully visible within itself, so an inputs token reaches every position, even
    earlier ones; a target token still reaches only the later positions.
    """
    arch = make_arch(name, seed=3)
    model = arch.build(VOCAB).eval()
    inputs = np.array([2, 3, 4, 5, 6, EOS])
    targets = np.array([7, 8, 9, 10, EOS])
    n_in, n = inputs.size, inputs.size + targets.size
    for i in range(n - 1):  # the final EOS is never a decoder input
        moved = moved_positions(model, arch, inputs, targets, i)
        if name == "prefix_lm" and i < n_in:
            expected = list(range(n))  # reaches earlier region positions too
        else:
            expected = list(range(i + 1, n))  # never an earlier (or its own) position
        assert moved == expected, (name, i, moved)


# ---------------------------------------------------------- 3. parameter counts
@pytest.mark.parametrize(
    "name,layers,decoder_layers",
    [("encdec_shared", 3, None), ("encdec_half", 4, 6)],
)
def test_parameter_count_closed_form(name, layers, decoder_layers):
    """Counts from the layer shapes (facts §1.1-§1.7), in dims where nothing coincides.

    d_model != H * d_kv, a non-default bucket count and a vocabulary that is not a
    multiple of the divisor, so a term using the wrong dimension cannot pass.
    """
    c = EncDecConfig(
        num_layers=layers, num_decoder_layers=decoder_layers, d_model=24, d_ff=40, d_kv=6,
        num_heads=3, relative_attention_num_buckets=16, vocab_divisor=64, dropout_rate=0.0,
    )
    vocab = 300
    d, heads, inner = c.d_model, c.num_heads, c.num_heads * c.d_kv
    embedding = 320 * d  # 300 rows padded up to a multiple of 64, shared and tied
    attention = 3 * d * inner + inner * d  # q, k, v: d -> H*d_kv; o: H*d_kv -> d
    ffn = d * c.d_ff + c.d_ff * d  # wi, wo, no biases
    encoder_block = attention + ffn + 2 * d  # self-attn + FFN, one RMSNorm scale each
    decoder_block = 2 * attention + ffn + 3 * d  # + cross-attention and its RMSNorm
    per_stack = d + 16 * heads  # final RMSNorm + the relative bias table of block 0
    if name == "encdec_shared":  # one decoder-shaped stack serves as both (facts §2)
        expected = embedding + 3 * decoder_block + per_stack
    else:  # 4 / 6 configured layers halve to 2 encoder and 3 decoder layers
        expected = embedding + 2 * encoder_block + 3 * decoder_block + 2 * per_stack

    arch = ARCHS[name](c, BuildContext(seed=0))
    model = arch.build(vocab)
    params = list(model.parameters())  # each tensor once
    assert len({p.data_ptr() for p in params}) == len(params)  # and no storage aliased
    assert sum(p.numel() for p in params) == expected
    assert arch.describe(vocab)["parameters"] == expected
