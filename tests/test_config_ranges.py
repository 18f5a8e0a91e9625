"""Out-of-range values are refused by `t5k run` before any work starts (issue 9, point 4).

Each case goes through the real command line: exit status 2, one line ``error: ...``
naming the key (and what is allowed), and no run directory. The plugin sections' ranges
come from their config dataclasses' ``__post_init__`` (instantiated by
``config.validate``), the cross checks from their ``check_run``.
"""

from dataclasses import dataclass

import pytest
from omegaconf import OmegaConf

from t5kernel.cli import main
from t5kernel.config import compose, validate
from t5kernel.errors import ConfigError, PluginError
from t5kernel.registry import ACTIVE, PluginRecord, Registry
from t5kernel.testing import TINY_OVERRIDES

SPAN = ["--objective", "span"]

CASES = [
    # kernel keys
    (["pretrain.steps=-1"], "pretrain.steps=-1"),
    (["finetune.steps=-5"], "finetune.steps=-5"),
    (["seed=-1"], "seed=-1"),
    (["pretrain.inputs_length=3"], "pretrain.inputs_length=3"),
    (["loss.denominator=mean"], "loss.denominator='mean'"),
    (["loss.nonfinite=skp"], "loss.nonfinite='skp'"),
    (["loss.max_skipped_steps=-5"], "loss.max_skipped_steps=-5"),
    (["eval.length_penalty=gnmt"], "eval.length_penalty='gnmt'"),
    (["eval.alpha=inf"], "eval.alpha=inf"),
    (["eval.averages=[paper_avgs]"], "eval.averages"),
    # objective: density, span length, lengths too short for the objective
    (["objective.noise_density=0"], "objective.noise_density=0.0"),
    (["objective.noise_density=1"], "objective.noise_density=1.0"),
    (["objective.noise_density=1.5"], "objective.noise_density=1.5"),
    (["objective.noise_density=nan"], "objective.noise_density=nan"),
    ([*SPAN, "objective.mean_noise_span_length=0"], "objective.mean_noise_span_length=0.0"),
    ([*SPAN, "pretrain.inputs_length=8"], "pretrain.inputs_length=8"),
    ([*SPAN, "pretrain.inputs_length=512", "pretrain.targets_length=100"],
     "pretrain.targets_length=100"),
    (["pretrain.targets_length=2"], "pretrain.targets_length=2"),  # iid_spans: 3
    (["--objective", "lm"], "objective.name='lm'"),  # no inputs for the encoder
    (["--objective", "deshuffle", "objective.noise_density=1.01"], "objective.noise_density"),
    # model
    (["model.dropout_rate=1.0"], "model.dropout_rate=1.0"),
    (["model.num_heads=0"], "model.num_heads=0"),
    (["model.init=xavier"], "model.init='xavier'"),
    (["model.relative_attention_max_distance=16"], "model.relative_attention_max_distance=16"),
    (["--arch", "encdec_half"], "model.num_layers=1"),  # TINY has 1 layer: nothing to halve
    (["--arch", "lm", "model.num_decoder_layers=3"], "model.num_decoder_layers=3"),
    # other plugins, unknown enumeration strings included
    (["vocabulary.model_type=wordpiece"], "vocabulary.model_type='wordpiece'"),
    (["vocabulary.size=2"], "vocabulary.size=2"),
    (["backend.parallel=horovod"], "backend.parallel='horovod'"),
    (["backend.timeout_minutes=0"], "backend.timeout_minutes=0"),
    (["optimizer.decay_exponent=0"], "optimizer.decay_exponent=0.0"),
    (["pretrain.schedule.warmup_steps=0"], "pretrain.schedule.warmup_steps=0"),
    (["finetune.schedule.value=-1"], "finetune.schedule.value=-1.0"),
    (["mixer.name=temperature", "mixer.temperature=0.5"], "mixer.temperature=0.5"),
    (["finetune.strategy.name=adapters", "finetune.strategy.init=xavier"],
     "finetune.strategy.init='xavier'"),
    (["tasks.demo_summarize.validation_percent=0"], "tasks.demo_summarize.validation_percent=0"),
    (["corpus.sources=[wiki]"], "corpus.sources=['wiki']"),
    (["--corpus", "c4", "corpus.cleaning.language_threshold=2"],
     "corpus.cleaning.language_threshold=2.0"),
    (["--corpus", "c4", "corpus.cleaning.dedupe=paragraphs"], "corpus.cleaning.dedupe"),
    (["--corpus", "c4", "corpus.cleaning.badword=false"],
     "corpus.cleaning.badword: unknown option of corpus 'c4'; allowed: max_page_chars"),
]


@pytest.mark.parametrize("args, needle", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_out_of_range_values_are_refused_before_any_work(tmp_path, capsys, args, needle):
    run_dir = tmp_path / "r"
    assert main(["run", "--quiet", *TINY_OVERRIDES, f"run_dir={run_dir}", *args]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert needle in err, err
    assert "allowed" in err or "Available" in err, err  # says what would be accepted
    assert not run_dir.exists()  # nothing was created: no vocabulary, no checkpoint
    assert captured.out == ""


@pytest.mark.parametrize("args", [
    ["objective.noise_density=0.5", "model.dropout_rate=0.0"],
    ["--objective", "deshuffle", "objective.noise_density=1.0"],
    [*SPAN, "pretrain.inputs_length=10", "pretrain.targets_length=4"],
    [*SPAN, "pretrain.inputs_length=512", "pretrain.targets_length=114"],  # the paper's
    ["--objective", "lm", "--arch", "lm"],
    ["--objective", "lm", "pretrain.steps=0"],  # no pre-training: the objective is unused
    [*SPAN, "pretrain.inputs_length=8", "pretrain.unsupervised=false", "pretrain.tasks=[all]"],
    ["model.num_layers=2", "--arch", "encdec_half"],
])
def test_values_at_the_edges_of_the_ranges_are_accepted(tmp_path, capsys, args):
    run_dir = tmp_path / "r"
    assert main(["run", "--dry-run", *TINY_OVERRIDES, f"run_dir={run_dir}", *args]) == 0
    assert not run_dir.exists()
    assert "objective:" in capsys.readouterr().out


def test_span_lengths_follow_the_reference_helper(registry):
    """T5's own setting passes; one target token fewer is refused with the exact need."""
    base = ["objective.name=span", "pretrain.inputs_length=512"]
    validate(compose(overrides=[*base, "pretrain.targets_length=114"]), registry)
    with pytest.raises(ConfigError, match=r"targets_length=113 .*allowed: an integer >= 114"):
        validate(compose(overrides=[*base, "pretrain.targets_length=113"]), registry)
    trailing = [*base, "objective.trailing_sentinel=true", "pretrain.targets_length=114"]
    with pytest.raises(ConfigError, match=r"allowed: an integer >= 115"):
        validate(compose(overrides=trailing), registry)
    with pytest.raises(ConfigError, match=r"objective.mean_noise_span_length=1000.0 is out of"):
        validate(compose(overrides=[*base, "objective.noise_density=0.99",
                                    "objective.mean_noise_span_length=1000",
                                    "pretrain.inputs_length=65536"]), registry)


@pytest.fixture(scope="module")
def registry():
    return Registry.discover(strict=True)


# ------------------------------------------------- the conventions, with a third-party config
@dataclass
class _Options:
    level: int = 1

    def __post_init__(self):
        if self.level < 0:
            raise ValueError(f"level={self.level} must be >= 0")
        if self.level == 13:
            raise KeyError("unlucky")

    def check_run(self, run):
        if self.level > int(run.pretrain.inputs_length):
            raise ConfigError(f"pretrain.inputs_length={run.pretrain.inputs_length} is below "
                              f"objective.level; allowed: >= {self.level}")
        if self.level == 7:
            raise TypeError("seven is not a level")
        if self.level == 3:
            run.seed = 5  # the run is read-only here


@pytest.fixture(scope="module")
def with_fake_objective(registry):
    fake = PluginRecord("objective", "leveled", "fake-dist", "1.0", ACTIVE,
                        target=lambda config, context: None, config=_Options)
    return Registry([*registry.records, fake])


@pytest.mark.parametrize("level, error, needle", [
    (-1, ConfigError, "objective.level=-1 must be >= 0"),
    (600, ConfigError, "pretrain.inputs_length=128 is below objective.level"),
    (7, ConfigError, "objective: seven is not a level (objective 'leveled')"),
    (13, PluginError, "objective: checking the options of objective plugin 'leveled' raised "
                      "KeyError"),
    (3, ConfigError, "read-only"),
])
def test_plugin_config_errors_name_the_key(with_fake_objective, level, error, needle):
    overrides = ["objective.name=leveled", f"objective.level={level}"]
    with pytest.raises(error) as info:
        validate(compose(overrides=overrides), with_fake_objective)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_valid_run_config_is_returned_writable(with_fake_objective):
    cfg = validate(compose(overrides=["objective.name=leveled", "objective.level=2",
                                      "pretrain.steps=0"]), with_fake_objective)
    cfg.seed = 4  # check_run saw it read-only; the caller gets it writable
    assert OmegaConf.to_container(cfg)["objective"] == {"name": "leveled", "level": 2}
