"""Composition and validation of run configs: every mistake named precisely."""

import pytest
from omegaconf import OmegaConf

from t5kernel.config import compose, validate
from t5kernel.errors import ConfigError, PluginNotFoundError
from t5kernel.registry import Registry


@pytest.fixture(scope="module")
def registry():
    return Registry.discover(strict=True)


def test_default_config_validates_and_fills_plugin_defaults(registry):
    cfg = validate(compose(), registry)
    assert cfg.model.name == "encdec"
    assert cfg.model.relative_attention_num_buckets == 32  # a plugin default filled in
    assert cfg.model.d_model == 128  # the embedded default's override kept
    assert cfg.objective.noise_density == 0.15
    assert cfg.tasks.demo_summarize.num_train > 0
    assert cfg.finetune.strategy.name == "full"
    assert cfg.pretrain.schedule.name == "rsqrt"


def test_resolved_config_round_trips(registry, tmp_path):
    cfg = validate(compose(overrides=["pretrain.steps=7", "model.d_ff=96"]), registry)
    path = tmp_path / "config.yaml"
    path.write_text(OmegaConf.to_yaml(cfg))
    again = validate(compose([path]), registry)
    assert OmegaConf.to_container(again) == OmegaConf.to_container(cfg)


def test_overrides_and_files_merge_in_order(registry, tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("pretrain:\n  steps: 11\nmodel:\n  d_model: 64\n")
    cfg = validate(compose([f], ["pretrain.steps=12"]), registry)
    assert cfg.pretrain.steps == 12 and cfg.model.d_model == 64


@pytest.mark.parametrize("override, needles", [
    (["model.d_modle=3"], ["model.d_modle", "encdec", "d_model"]),
    (["model.d_model=big"], ["model.d_model", "encdec"]),
    (["pretrain.stepz=3"], ["stepz"]),
    (["pretrain.steps=-1"], ["pretrain.steps", ">= 0"]),
    (["pretrain.steps=abc"], ["pretrain.steps"]),
    (["loss.denominator=mean"], ["loss.denominator", "'constant' or 'tokens'"]),
    (["tasks.demo_summarize.num_trian=3"], ["tasks.demo_summarize.num_trian", "num_train"]),
    (["notakey"], ["notakey", "key=value"]),
])
def test_bad_keys_types_and_values_are_named(registry, override, needles):
    with pytest.raises(ConfigError) as err:
        validate(compose(overrides=override), registry)
    for needle in needles:
        assert needle in str(err.value)


def test_unknown_plugin_name_is_named_with_alternatives(registry):
    with pytest.raises(PluginNotFoundError) as err:
        validate(compose(overrides=["objective.name=iid_span"]), registry)
    assert "iid_spans" in str(err.value)


def test_choosing_another_plugin_drops_the_previous_plugins_options(registry):
    cfg = compose(overrides=["model.name=someother"])
    assert set(cfg.model) == {"name"}
    cfg = compose(overrides=["objective.name=iid_spans", "objective.noise_density=0.5"])
    assert cfg.objective.noise_density == 0.5
    cfg = compose(overrides=["objective.name=span"])  # over the default's iid_spans
    assert set(cfg.objective) == {"name"}  # span starts from its own defaults


def test_another_architecture_keeps_the_model_dimensions(registry):
    """Architectures share their dimensions: ``--arch lm`` on the embedded default is a
    decoder-only model of the default's size and dropout (not the plugin's base-sized
    defaults); a size given beside it still applies."""
    default = validate(compose(), registry).model
    for arch in ("lm", "prefix_lm", "encdec_shared", "encdec_half"):
        model = validate(compose(overrides=[f"model.name={arch}"]), registry).model
        assert (model.name, model.num_layers, model.d_model, model.dropout_rate) == (
            arch, default.num_layers, default.d_model, default.dropout_rate), arch
    base = validate(compose(overrides=["model.name=lm", "model.size=base"]), registry).model
    assert (base.num_layers, base.d_model) == (12, 768)


def test_missing_config_file(registry):
    with pytest.raises(ConfigError, match="does not exist"):
        compose(["/nonexistent/exp.yaml"])


def test_config_files_cannot_execute_code(registry, tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("name: ${python:__import__('os').getpid()}\n")
    with pytest.raises(ConfigError, match="key: name"):
        validate(compose([f]), registry)


def test_interpolations_are_resolved_into_the_saved_config(registry, tmp_path):
    f = tmp_path / "interp.yaml"
    f.write_text("name: run-${seed}\nseed: 3\n")
    cfg = validate(compose([f]), registry)
    assert OmegaConf.to_yaml(cfg).count("run-3") == 1


def test_a_file_that_names_tasks_replaces_the_task_set(registry, tmp_path):
    f = tmp_path / "one_task.yaml"
    f.write_text("tasks:\n  demo_pig_latin:\n    num_train: 10\n")
    cfg = validate(compose([f]), registry)
    assert list(cfg.tasks) == ["demo_pig_latin"] and cfg.tasks.demo_pig_latin.num_train == 10
    cfg = validate(compose(overrides=["tasks.demo_pig_latin.num_train=10"]), registry)
    assert len(cfg.tasks) == 3


def test_path_options_are_saved_absolute_so_the_config_works_from_any_directory(
        registry, tmp_path, monkeypatch):
    """Options made with ``path_option`` (files, globs, folders; nested option groups too)
    and ``init_checkpoint`` become absolute at validation; URLs, hub ids and empty values
    stay as given; a hub id that names a local folder is made absolute, as datasets reads
    it; validating the saved config again, elsewhere, changes nothing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "local_c4").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = validate(compose(overrides=[
        "init_checkpoint=runs/a/checkpoints/step_0", "vocabulary.model_file=~/spm.model",
        "corpus.name=c4", "corpus.data_files=[shards/*.json.gz,hf://datasets/x/y.json,'']",
        "corpus.cleaning.badwords_path=../badwords.txt", "corpus.hub_path=org/local_c4",
        "tasks={glue_cola: {train_file: train.tsv, validation_file: ./dev/../dev.tsv},"
        " squad: {train_file: null}}",
    ]), registry)
    assert cfg.init_checkpoint == str(tmp_path / "runs/a/checkpoints/step_0")
    assert cfg.vocabulary.model_file == str(tmp_path / "home" / "spm.model")
    assert list(cfg.corpus.data_files) == [str(tmp_path / "shards/*.json.gz"),
                                           "hf://datasets/x/y.json", ""]
    assert cfg.corpus.cleaning.badwords_path == str(tmp_path.parent / "badwords.txt")
    assert cfg.corpus.hub_path == str(tmp_path / "org" / "local_c4")
    assert cfg.tasks.glue_cola.train_file == str(tmp_path / "train.tsv")
    assert cfg.tasks.glue_cola.validation_file == str(tmp_path / "dev.tsv")
    assert cfg.tasks.glue_cola.hub_path == "nyu-mll/glue"  # no such folder: a hub id
    assert cfg.tasks.squad.train_file is None and cfg.tasks.squad.hub_path == "rajpurkar/squad"
    saved = tmp_path / "config.yaml"
    saved.write_text(OmegaConf.to_yaml(cfg))
    monkeypatch.chdir(tmp_path / "org")
    again = validate(compose([saved]), registry)
    assert OmegaConf.to_container(again) == OmegaConf.to_container(cfg)


def test_a_path_option_takes_no_list_default():
    from t5kernel.api import PATH_OPTION, path_option

    with pytest.raises(ValueError, match="starts empty"):
        path_option(["a"], list_of=True)
    assert path_option(hub=True).metadata[PATH_OPTION] == "hub_or_local"
