"""Pre-training on a C4-schema corpus (local shards, seeded shuffle buffer, one of two
ranks) resumes mid-stream with exactly the batches of the uninterrupted run."""

import itertools
import json
import shutil
from pathlib import Path

import pytest

from t5kernel import checkpoint as ckpt
from t5kernel.cli import main
from t5kernel.testing import TINY_OVERRIDES


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from t5k_builtin.configs import EmbeddedCorpusConfig
    from t5k_builtin.corpora.embedded import EmbeddedCorpus

    texts = [ex["text"] for ex in EmbeddedCorpus(EmbeddedCorpusConfig(), None).examples("train")]
    folder = tmp_path_factory.mktemp("c4")
    paths = []
    for shard in range(3):
        path = folder / f"c4-train.{shard:05d}-of-00003.json"
        with open(path, "w") as f:
            for i in range(shard, 900, 3):
                f.write(json.dumps({"text": texts[i], "timestamp": "2019-04-20",
                                    "url": f"https://example.com/{i}"}) + "\n")
        paths.append(str(path))
    return paths


def _losses(run_dir):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage"], r["step"], r.get("loss")) for r in rows if "loss" in r]


def test_c4_run_resumes_exactly(shards, tmp_path):
    run_dir = tmp_path / "c4run"
    args = ["run", "--quiet", *TINY_OVERRIDES, "--corpus", "c4",
            f"corpus.data_files=[{','.join(shards)}]", "corpus.shuffle_buffer=64",
            "corpus.rank=1", "corpus.world_size=2", "pretrain.steps=6",
            "pretrain.checkpoint_every=2", "pretrain.log_every=1", "keep_checkpoints=5",
            "finetune.steps=0", "eval.max_examples=2"]
    assert main([*args, f"run_dir={run_dir}"]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    for step in ckpt.list_steps(copy / "checkpoints"):
        if step > 2:
            shutil.rmtree(copy / "checkpoints" / f"step_{step}")
    (copy / "results.json").unlink()
    state = json.loads((copy / "checkpoints" / "step_2" / "state.json").read_text())
    position = state["data"]["pretrain"]
    assert (position["docs"]["index"], position["offset"]) != (0, 0)  # mid-stream
    assert main(["run", "--quiet", "--config", str(copy / "config.yaml"), f"run_dir={copy}",
                 "resume=true"]) == 0
    assert _losses(copy) == _losses(run_dir)
    corpus = json.loads((run_dir / "results.json").read_text())["stages"]["pretrain"]["corpus"]
    assert corpus["tokens_per_pass"] is None  # 6 small steps read less than one pass


SHARED_C4 = (Path(__file__).resolve().parents[2] / "shared" / "data" / "c4"
             / "c4-en-train.00000-of-01024.first1000.json")


@pytest.mark.skipif(not SHARED_C4.is_file(), reason="../shared/data/c4 is not present")
def test_raw_pages_run_reports_the_cleaning(tmp_path):
    raw = tmp_path / "raw.jsonl"
    with open(SHARED_C4) as f:
        raw.write_text("".join(itertools.islice(f, 150)))
    run_dir = tmp_path / "raw"
    assert main(["run", "--quiet", *TINY_OVERRIDES, "--corpus", "c4", f"corpus.raw_files=[{raw}]",
                 "corpus.cleaning.badwords=false", "pretrain.steps=2", "finetune.steps=0",
                 "eval.max_examples=2", f"run_dir={run_dir}"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    report = results["stages"]["pretrain"]["corpus"]["report"]
    assert report["pages_in"] == 150 and 140 <= report["pages_out"] <= 150
