"""`t5k convert` and `init_checkpoint`: Hugging Face T5 folders in and out of t5k runs.

Random-init models only (nothing downloaded); transformers is a test-only dependency.
"""

import contextlib
import json
import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from t5kernel import checkpoint as ckpt
from t5kernel.api import BuildContext
from t5kernel.cli import main
from t5kernel.config import compose, plugin_config, validate
from t5kernel.errors import CheckpointError
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
    mode = exported.joinpath("config.json").stat().st_mode & 0o777  # not 0600 weights
    assert exported.joinpath("model.safetensors").stat().st_mode & 0o777 == mode
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


def test_export_then_import_keeps_the_run_layout(trained_run, exported, tmp_path):
    """t5k -> HF -> t5k: the export holds the 400 true ids' rows; the import pads them
    back to the run's 512 (vocab_divisor 128, not 16), so its config's model section and
    every tensor shape are the run's, and either loads the other's checkpoints."""
    back = tmp_path / "back"
    assert main(["convert", str(exported), str(back)]) == 0
    assert json.loads((exported / "config.json").read_text())["vocab_size"] == 400
    assert OmegaConf.load(back / "config.yaml").model == OmegaConf.load(
        trained_run / "config.yaml").model
    step = ckpt.latest_valid(trained_run / "checkpoints")
    ours = load_file(str(step / "model.safetensors"))
    again = load_file(str(back / "checkpoints" / "step_0" / "model.safetensors"))
    assert {k: v.shape for k, v in again.items()} == {k: v.shape for k, v in ours.items()}
    assert all(torch.equal(again[k], ours[k]) for k in ours if k != "shared.weight")
    assert again["shared.weight"].shape[0] == 512
    assert torch.equal(again["shared.weight"][:400], ours["shared.weight"][:400])
    assert not again["shared.weight"][400:].any()  # masked out of the softmax; zeros
    _, _, model = build(back)
    ckpt.load_model_weights(model, step)  # the original run's checkpoint fits


@contextlib.contextmanager
def file_size_limit(limit):
    """Writes past ``limit`` bytes fail with EFBIG, as on a full disk (Python ignores
    SIGXFSZ); the soft limit only, so it can be lifted again."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_write_failure_is_one_error_line(trained_run, exported, tmp_path, capsys):
    """Export (safetensors' SafetensorError) and import (OSError copying spiece.model)
    into a 'full disk': `error: could not write DST` and exit 2, nothing left behind."""
    (tmp_path / "empty").mkdir()
    for src, dst in ((trained_run, tmp_path / "exp"), (exported, tmp_path / "imp"),
                     (exported, tmp_path / "empty")):
        with file_size_limit(16 * 1024):
            code = main(["convert", str(src), str(dst)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith(f"error: could not write {dst}: ") and "File too large" in err
        assert "Traceback" not in err and ".tmp" not in err
        assert (dst.exists() and not any(dst.iterdir())) == (dst.name == "empty")
        assert not dst.exists() or dst.name == "empty"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no temporary folder


def test_checkpoint_save_reports_safetensors_write_errors(tmp_path):
    """safetensors raises SafetensorError, not OSError, for a failed write."""
    state = {"w": torch.zeros(64, 1024)}
    with file_size_limit(16 * 1024), pytest.raises(CheckpointError,
                                                    match="could not write checkpoint step_3"):
        ckpt.save(tmp_path / "checkpoints", 3, state, {}, {"step": 3})
    assert list((tmp_path / "checkpoints").iterdir()) == []


@pytest.mark.parametrize("existing", [False, True], ids=["new_dst", "empty_dst"])
def test_the_output_appears_only_once_complete(trained_run, exported, tmp_path, monkeypatch,
                                               existing):
    """A hard kill at any point leaves no half-written DST: while the weights are being
    written DST is still missing (or still empty), then it is renamed into place."""
    import safetensors.torch

    seen = []
    real_save_file, real_save = safetensors.torch.save_file, ckpt.save

    def dst_state():
        return "missing" if not dst.exists() else sorted(p.name for p in dst.iterdir())

    def save_file(*args, **kwargs):
        seen.append(dst_state())
        return real_save_file(*args, **kwargs)

    def save(*args, **kwargs):
        seen.append(dst_state())
        return real_save(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    monkeypatch.setattr(ckpt, "save", save)
    for src, name in ((trained_run, "exp"), (exported, "imp")):
        dst = tmp_path / name
        if existing:
            dst.mkdir()
        seen.clear()
        assert main(["convert", str(src), str(dst)]) == 0
        assert seen and all(s == ([] if existing else "missing") for s in seen), seen
        assert (dst / ("config.json" if name == "exp" else "config.yaml")).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "imp"]
    transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "exp")
    cfg = OmegaConf.load(tmp_path / "imp" / "config.yaml")  # paths name DST, not the temporary
    assert cfg.init_checkpoint == str((tmp_path / "imp" / "checkpoints" / "step_0").resolve())
    assert cfg.vocabulary.model_file == str((tmp_path / "imp" / "spiece.model").resolve())


def test_adapter_fine_tuned_checkpoints_are_refused(trained_run, tmp_path, capsys):
    run_dir = tmp_path / "adapters"
    shutil.copytree(trained_run, run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.finetune.strategy = {"name": "adapters", "inner_dim": 8}
    OmegaConf.save(cfg, run_dir / "config.yaml")
    registry = default_registry()
    _, _, model = build(run_dir)
    pretrained = ckpt.latest_valid(run_dir / "checkpoints")
    ckpt.load_model_weights(model, pretrained)
    section = validate(compose([run_dir / "config.yaml"]), registry).finetune.strategy
    record = registry.get("finetune", "adapters")
    registry.build("finetune", record.name, plugin_config(section, record),
                   BuildContext(registry=registry)).setup(model, 4)
    step = ckpt.save(run_dir / "checkpoints", 99, model.state_dict(), {},
                     {"step": 99, "stage_steps": {"pretrain": 2, "finetune": 97}})
    assert main(["convert", str(run_dir), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {step} was fine-tuned with finetune.strategy "
                          "'adapters'") and "(adapters) have no Hugging Face T5 equivalent" in err
    assert not (tmp_path / "out").exists()
    assert main(["convert", str(pretrained), str(tmp_path / "out")]) == 0  # before: fine


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
    (tmp_path / "a_file").write_text("x")
    fails(exported, tmp_path / "a_file" / "sub", f"cannot create {tmp_path / 'a_file' / 'sub'}: "
          f"{tmp_path / 'a_file'} is a file, not a folder")
    assert main(["convert", str(exported), str(tmp_path / "a_file")]) == 2
    assert "a_file is a file; choose a new folder" in capsys.readouterr().err
    assert (tmp_path / "a_file").read_text() == "x"
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


def test_init_checkpoint_from_another_vocabulary_is_refused(trained_run, no_tasks, tmp_path,
                                                            capsys):
    """Same vocabulary size, other pieces (trained on 300 texts instead of 1,500): the
    weights would load and every embedding row mean another piece. Refused, naming the
    file to use; with that file the run starts."""
    step = ckpt.latest_valid(trained_run / "checkpoints")
    args = ["run", "--quiet", "--config", str(no_tasks), *TINY, "model.num_decoder_layers=2",
            "pretrain.steps=1", "finetune.steps=0", f"init_checkpoint={step}"]
    assert main([*args, f"run_dir={tmp_path / 'a'}"]) == 2
    err = capsys.readouterr().err
    assert "comes from a run with a different vocabulary" in err
    assert f"vocabulary.model_file={trained_run / 'vocab' / 'spm.model'}" in err
    assert main([*args, f"vocabulary.model_file={trained_run / 'vocab' / 'spm.model'}",
                 f"run_dir={tmp_path / 'b'}"]) == 0
