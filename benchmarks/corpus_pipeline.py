"""Throughput of the pre-training input pipeline vs what T5-Small training consumes.

Measured in one run on this machine:

1. **C4 cleaning** (``t5k_builtin.corpora.c4_clean.C4Cleaner``, every rule of C4 ``en``
   on, bad words from a synthetic 400-entry list since the real one is not shipped):
   pages/s and MB/s on one core, over real C4 documents when ``--c4`` points at JSON
   lines (default: ``../shared/data/c4`` if present) with extra junk lines mixed in so
   that the line rules have work to do, else over synthetic pages. The language-id step
   (langdetect, the reference's) is timed separately because it dominates.
2. **Tokenise + corrupt + pack** (``DocumentStream`` -> ``span`` objective ->
   ``Batches`` with the ``encdec`` architecture's greedy packing, 512/114, batch 128):
   tokens/s of packed model input on one core, with a SentencePiece vocabulary trained
   on the same text (``--vocab-size``, default 8,000 pieces; T5's has 32,000).
3. **A T5-Small training step** (8 rows of 512/114, forward + backward + Adafactor, every
   core): the tokens/s that training consumes.

Target (issue 5): the input pipeline sustains at least 10x the training consumption.

    python benchmarks/corpus_pipeline.py
    python benchmarks/corpus_pipeline.py --c4 path/to/c4-train.*.json --json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, set before NumPy loads its BLAS

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from objectives import time_train_step  # noqa: E402

from t5kernel.api import BuildContext  # noqa: E402

SHARED_C4 = Path(__file__).resolve().parents[2] / "shared" / "data" / "c4"
JUNK = [
    "Home | About | Contact",
    "Please enable JavaScript to view the comments.",
    "This site uses cookies. Read our privacy policy.",
    "Posted by admin",
    "Share this:",
    "Copyright 2019 All rights reserved",
]


def load_pages(pattern: str | None, n: int) -> list[dict]:
    """C4 JSON lines with junk lines inserted, or synthetic pages from the embedded text."""
    files = sorted(glob.glob(pattern)) if pattern else []
    pages: list[dict] = []
    rng = np.random.default_rng(0)
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                lines = rec["text"].split("\n")
                for _ in range(3):
                    lines.insert(int(rng.integers(len(lines) + 1)), JUNK[rng.integers(len(JUNK))])
                pages.append({"url": rec["url"], "text": "\n".join(lines),
                              "timestamp": rec.get("timestamp", "")})
    if not pages:
        from t5k_builtin.configs import EmbeddedCorpusConfig
        from t5k_builtin.corpora.embedded import EmbeddedCorpus

        texts = [ex["text"] for ex in EmbeddedCorpus(EmbeddedCorpusConfig(), None).examples("train")]
        for i in range(0, len(texts) - 8, 8):
            body = "\n".join(texts[i : i + 8] + [JUNK[i % len(JUNK)]])
            pages.append({"url": f"http://example.com/{i}", "text": body, "timestamp": ""})
    reps = -(-n // len(pages))
    out = []
    for r in range(reps):  # distinct URLs so URL dedupe keeps them
        out.extend({**p, "url": f"{p['url']}?copy={r}" if r else p["url"]} for p in pages)
    return out[:n]


def time_cleaning(pages: list[dict], language: bool) -> tuple[float, float, dict]:
    from t5k_builtin.configs import C4CleanConfig
    from t5k_builtin.corpora.c4_clean import C4Cleaner

    with tempfile.TemporaryDirectory() as tmp:
        words = Path(tmp) / "badwords.txt"
        words.write_text("\n".join(f"zqx{i}word" for i in range(400)) + "\n")
        cfg = C4CleanConfig(badwords_path=str(words), language="en" if language else "",
                            dedupe="lines")
        cleaner = C4Cleaner(cfg)
        size = sum(len(p["text"].encode()) for p in pages)
        start = time.perf_counter()
        kept = sum(1 for _ in cleaner.pages(pages))
        seconds = time.perf_counter() - start
    report = dict(cleaner.report)
    report["kept"] = kept
    return len(pages) / seconds, size / seconds / 1e6, report


def time_tokenise_pack(texts: list[str], vocab_size: int, seconds_budget: float) -> float:
    """Packed (non-padding) model-input tokens/s: tokenise, span-corrupt, pack 512/114."""
    from t5k_builtin.configs import EncDecConfig, SentencePieceConfig, SpanConfig
    from t5k_builtin.model.encdec import EncDecArchitecture
    from t5k_builtin.objectives.span import Span
    from t5k_builtin.vocab import build_sentencepiece
    from t5kernel import data

    vocab = build_sentencepiece(SentencePieceConfig(size=vocab_size),
                                BuildContext(extras={"texts": iter(texts)}))

    class Corpus:
        def examples(self, split):
            return ({"text": t} for t in texts)

    arch = EncDecArchitecture(EncDecConfig(**EncDecConfig.PRESETS["small"]))
    objective = Span(SpanConfig(), BuildContext(extras={"vocabulary": vocab}))

    def open_docs(state):
        return data.DocumentStream(Corpus(), "train", vocab, "bench", state)

    examples = objective.resumable_examples(open_docs, 512, 114, np.random.default_rng(0))
    batches = data.Batches(examples, lambda exs: arch.pack(exs, 512, 114),
                           lambda exs: arch.features(exs, 512, 114, True, num_rows=128),
                           batch_size=128, packed=True)
    tokens, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds_budget:
        batch = next(batches)
        tokens += int(np.count_nonzero(batch["encoder_input_tokens"])
                      + np.count_nonzero(batch["decoder_target_tokens"]))
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_c4 = str(SHARED_C4 / "*.json") if SHARED_C4.is_dir() else None
    parser.add_argument("--c4", default=default_c4, help="glob of C4 JSON-lines files")
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="time spent measuring the tokenise+pack pipeline")
    parser.add_argument("--train-rows", type=int, default=8)
    parser.add_argument("--no-train-step", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    pages = load_pages(args.c4, args.pages)
    rules_rate, rules_mb, _ = time_cleaning(pages, language=False)
    full_rate, full_mb, report = time_cleaning(pages[: max(200, args.pages // 5)], language=True)
    texts = [p["text"] for p in pages]
    pack_rate = time_tokenise_pack(texts, args.vocab_size, args.seconds)
    train = None
    if not args.no_train_step:
        train = time_train_step(args.train_rows, 512, 114, 2) * (512 + 114)
    result = {
        "source": args.c4 or "synthetic (embedded corpus)",
        "cleaning_pages_per_s_without_language_id": rules_rate,
        "cleaning_mb_per_s_without_language_id": rules_mb,
        "cleaning_pages_per_s": full_rate,
        "cleaning_mb_per_s": full_mb,
        "tokenise_corrupt_pack_tokens_per_s": pack_rate,
        "t5_small_training_consumes_tokens_per_s": train,
        "cleaning_report": report,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"pages: {len(pages):,} from {result['source']}")
    print(f"C4 cleaning, all rules but language id: {rules_rate:,.0f} pages/s ({rules_mb:.1f} MB/s)")
    print(f"C4 cleaning, all rules + langdetect:    {full_rate:,.0f} pages/s ({full_mb:.2f} MB/s)")
    print(f"tokenise + span + pack (512/114):       {pack_rate:,.0f} tokens/s")
    if train:
        print(f"T5-Small training step ({args.train_rows} rows, {os.cpu_count()} cores) "
              f"consumes {train:,.0f} tokens/s")
        print(f"pipeline / training: tokenise+pack {pack_rate / train:,.1f}x")


if __name__ == "__main__":
    main()
