"""`t5k convert` and `init_checkpoint`: Hugging Face T5 folders in and out of t5k runs.

Random-init models only (nothing downloaded); transformers is a test-only dependency.
"""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from t5kernel import checkpoint as ckpt
from t5kernel.api import BuildContext
from t5kernel.cli import main
from t5kernel.config import compose, plugin_config, validate
from t5kernel.registry import default_registry
from t5kernel.runloop import Runner, prepare_run_dir
from t5kernel.testing import TINY_OVERRIDES

transformers = pytest.importorskip("transformers")

#: no downstream tasks (a file's task set replaces the default): nothing to evaluate
NO_TASKS = "tasks: {}\n"
TINY = [o for o in TINY_OVERRIDES if not o.startswith("tasks.")]
#: without the model and vocabulary too: an imported run keeps its own
TINY_DATA = [o for o in TINY if not o.startswith(("model.", "vocabulary."))]


def build(run_dir, step_dir=None):
    """(vocabulary, architecture, model) of a run, through the registry as convert does."""
    registry = default_registry()
    cfg = validate(compose([run_dir / "config.yaml"]), registry)
    ctx = BuildContext(registry=registry, run_dir=run_dir, seed=int(cfg.seed))
    made = []
    for section, kind in ((cfg.vocabulary, "vocabulary"), (cfg.model, "architecture")):
        record = registry.get(kind, str(section.name))
        made.append(registry.build(kind, record.name, plugin_config(section, record), ctx))
    vocab, arch = made
    model = arch.build(vocab.vocab_size)
    if step_dir is not None:
        ckpt.load_model_weights(model, step_dir)
    return vocab, arch, model.eval()


def logits_pair(vocab, arch, model, hf, texts):
    examples = [{"inputs": np.array(vocab.encode(t)[:20] + [1]),
                 "targets": np.array(vocab.encode(t)[:8][::-1] + [1])} for t in texts]
    feats = {k: torch.from_numpy(v) for k, v in arch.features(examples, 24, 12, False).items()}
    with torch.no_grad():
        ours = model(feats).logits
        ref = hf(input_ids=feats["encoder_input_tokens"].long(),
                 attention_mask=feats["encoder_segment_ids"] > 0,
                 decoder_input_ids=feats["decoder_input_tokens"].long()).logits
    w = feats["decoder_loss_weights"] > 0
    n = vocab.vocab_size
    return ours[..., :n][w], ref[..., :n][w]


TEXTS = ["Return the value of the expression.", "A module is a file of code.", "x"]


@pytest.fixture(scope="module")
def no_tasks(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "no_tasks.yaml"
    path.write_text(NO_TASKS)
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, no_tasks):
    """A t5k run with num_layers (1) != num_decoder_layers (2), pre-trained a few steps."""
    run_dir = tmp_path_factory.mktemp("runs") / "asym"
    assert main(["run", "--quiet", "--config", str(no_tasks), *TINY,
                 "model.num_decoder_layers=2", "vocabulary.max_training_texts=300",
                 "finetune.steps=0", "pretrain.steps=2", f"run_dir={run_dir}"]) == 0
    return run_dir


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "out"
    assert main(["convert", str(trained_run), str(out)]) == 0
    return out


def test_a_trained_run_exports_and_loads_in_transformers(trained_run, exported):
    assert {p.name for p in exported.iterdir()} >= {
        "config.json", "model.safetensors", "spiece.model", "tokenizer_config.json"}
    cfg = json.loads(exported.joinpath("config.json").read_text())
    assert (cfg["num_layers"], cfg["num_decoder_layers"]) == (1, 2)
    assert exported.joinpath("spiece.model").read_bytes() == (
        trained_run / "vocab" / "spm.model").read_bytes()
    hf, info = transformers.T5ForConditionalGeneration.from_pretrained(
        exported, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    step = ckpt.latest_valid(trained_run / "checkpoints")
    vocab, arch, model = build(trained_run, step)
    ours, ref = logits_pair(vocab, arch, model, hf.eval(), TEXTS)
    assert (ours - ref).abs().max() <= 1e-4
    # exporting the step folder itself gives the same weights
    again = exported.parent / "again"
    assert main(["convert", str(step), str(again)]) == 0
    a, b = load_file(str(exported / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_import_round_trip_and_init_checkpoint(exported, no_tasks, tmp_path, capsys):
    imported = tmp_path / "imported"
    assert main(["convert", str(exported), str(imported)]) == 0
    cfg = OmegaConf.load(imported / "config.yaml")
    assert cfg.model.name == "encdec" and cfg.model.num_decoder_layers == 2
    assert cfg.vocabulary.model_file == str((imported / "spiece.model").resolve())
    step0 = imported / "checkpoints" / "step_0"
    assert cfg.init_checkpoint == str(step0.resolve()) and ckpt.verify(step0)
    # HF -> t5k -> HF: every tensor identical
    back = tmp_path / "back"
    assert main(["convert", str(imported), str(back)]) == 0
    a, b = load_file(str(exported / "model.safetensors")), load_file(str(back / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((back / "config.json").read_text()) == json.loads(
        (exported / "config.json").read_text())

    # a run with init_checkpoint starts from the imported weights
    registry = default_registry()
    run_cfg = validate(compose([imported / "config.yaml", no_tasks], [
        *TINY_DATA, "pretrain.steps=0", "finetune.steps=0", f"run_dir={tmp_path / 'run'}"]),
        registry)
    runner = Runner(run_cfg, registry, prepare_run_dir(run_cfg))
    runner.run()
    state = runner.comps.model.state_dict()
    weights = load_file(str(step0 / "model.safetensors"))
    assert set(state) == set(weights) and all(torch.equal(state[k], weights[k]) for k in weights)
    # and through the command line
    assert main(["run", "--quiet", "--config", str(imported / "config.yaml"), "--config",
                 str(no_tasks), *TINY_DATA, "pretrain.steps=0", "finetune.steps=0",
                 f"run_dir={tmp_path / 'cli_run'}"]) == 0
    out = "".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert f"init:modelweightsfrom{step0.resolve()}" in out


def test_a_resumed_run_keeps_its_own_weights(trained_run, tmp_path):
    """init_checkpoint only initialises a fresh run; resuming restores the run's checkpoint."""
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(trained_run, run_dir)
    step = ckpt.latest_valid(run_dir / "checkpoints")
    own = load_file(str(step / "model.safetensors"))
    other = ckpt.save(tmp_path / "other", 0, {k: v * 2 for k, v in own.items()}, {}, {})
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.init_checkpoint = str(other)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    registry = default_registry()
    run_cfg = validate(compose([run_dir / "config.yaml"], [f"run_dir={run_dir}", "resume=true"]),
                       registry)
    runner = Runner(run_cfg, registry, prepare_run_dir(run_cfg))
    runner.run()
    state = runner.comps.model.state_dict()
    assert all(torch.equal(state[k], own[k]) for k in own)


def test_init_checkpoint_that_does_not_fit_is_an_error(trained_run, no_tasks, tmp_path, capsys):
    step = ckpt.latest_valid(trained_run / "checkpoints")
    args = ["run", "--quiet", "--config", str(no_tasks), *TINY,
            f"vocabulary.model_file={trained_run / 'vocab' / 'spm.model'}",
            "pretrain.steps=0", "finetune.steps=0"]
    assert main([*args, f"init_checkpoint={step}", f"run_dir={tmp_path / 'a'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not fit the model" in err
    assert "unexpected keys: decoder.block.1" in err  # the checkpoint has 2 decoder layers
    assert main([*args, f"init_checkpoint={tmp_path}", f"run_dir={tmp_path / 'b'}"]) == 2
    assert "has no model.safetensors" in capsys.readouterr().err


def _fake_run(trained_run, tmp_path, arch):
    """A run directory of ``arch`` (same vocabulary) holding one checkpoint of that arch."""
    run_dir = tmp_path / arch
    (run_dir / "vocab").mkdir(parents=True)
    (run_dir / "vocab" / "spm.model").write_bytes((trained_run / "vocab" / "spm.model").read_bytes())
    cfg = OmegaConf.load(trained_run / "config.yaml")
    cfg.model.name = arch
    cfg.model.num_decoder_layers = None
    OmegaConf.save(cfg, run_dir / "config.yaml")
    _, _, model = build(run_dir)
    ckpt.save(run_dir / "checkpoints", 1, model.state_dict(), {}, {"step": 1})
    return run_dir


@pytest.mark.parametrize("arch", ["encdec_shared", "lm", "prefix_lm"])
def test_architectures_without_a_hugging_face_equivalent_are_refused(
        trained_run, tmp_path, capsys, arch):
    run_dir = _fake_run(trained_run, tmp_path, arch)
    assert main(["convert", str(run_dir), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no Hugging Face" in err
    assert not (tmp_path / "out").exists()


def test_convert_errors(trained_run, exported, tmp_path, capsys):
    def fails(src, dst, *expected):
        assert main(["convert", str(src), str(dst)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and all(e in err for e in expected), err
        assert not dst.exists() or not any(dst.iterdir())

    fails(tmp_path / "nope", tmp_path / "o1", "does not exist")
    fails(tmp_path, tmp_path / "o2", "neither a Hugging Face model folder")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["convert", str(exported), str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((exported / "config.json").read_text())
    fails(no_weights, tmp_path / "o3", "has no weights")
    t511 = tmp_path / "t511"
    t511.mkdir()
    cfg = json.loads((exported / "config.json").read_text())
    (t511 / "config.json").write_text(json.dumps({**cfg, "feed_forward_proj": "gated-gelu"}))
    fails(t511, tmp_path / "o4", "T5.1.1")
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    (empty_run / "config.yaml").write_text((trained_run / "config.yaml").read_text())
    fails(empty_run, tmp_path / "o5", "no valid checkpoint")
    assert main(["convert", str(exported), str(tmp_path / "o6"), "--arch", "lm"]) == 2
    assert "--arch encdec" in capsys.readouterr().err
