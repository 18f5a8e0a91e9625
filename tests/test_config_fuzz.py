"""Generated configs never crash the config stage (issue 9, points 4 and 5).

Overrides and YAML files over the real keys (the default run's, every plugin config
dataclass's) with values from integers, floats, strings, booleans, lists and YAML-ish
junk go through the path ``t5k run`` takes (``cli._resolve_config``: compose + validate).
The outcome is a validated config or one T5KError with a one-line message, nothing else.
Config files cannot run code: unknown resolvers (``${eval:...}``, ``${python:...}``) and
YAML's Python tags are refused, even when some library registered an evaluating resolver.
"""

import argparse
import dataclasses
import os

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from t5kernel import cli
from t5kernel.config import PLUGIN_SECTIONS, compose, validate
from t5kernel.errors import ConfigError, T5KError
from t5kernel.registry import ACTIVE, Registry

REGISTRY = Registry.discover(strict=True)


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1]


def _fields(schema, prefix):
    for f in dataclasses.fields(schema):
        yield f"{prefix}.{f.name}"
        if isinstance(f.default_factory, type) and dataclasses.is_dataclass(f.default_factory):
            yield from _fields(f.default_factory, f"{prefix}.{f.name}")


def _plugins(kind):
    return [r for r in REGISTRY.list(kind) if r.status == ACTIVE and r.config is not None]


DEFAULT = OmegaConf.to_container(validate(compose(), REGISTRY))
KEYS = set(_leaves(DEFAULT))
for _path, _kind in PLUGIN_SECTIONS:
    for _record in _plugins(_kind):
        KEYS.update(_fields(_record.config, _path))
for _record in _plugins("corpus")[:6]:  # tasks from other plugins than the default three
    KEYS.update(_fields(_record.config, f"tasks.{_record.name}"))
KEYS = sorted(KEYS)
NAMES = {path: sorted(r.name for r in _plugins(kind)) for path, kind in PLUGIN_SECTIONS}
JUNK = ["{", "}", "[", "]", "${eval:1}", "${python:__import__('os').getpid()}",
        "${oc.env:HOME}", "${oc.env:T5K_FUZZ_UNSET}", "${oc.decode:'[1'}", "${seed}", "${}",
        "${oc.create:{a: 1}}", "${oc.select:nope,3}", "null", "~", ":", "a: b", "'", '"', "",
        "-", "1e400", "-1e400", "0x10", ".inf", "-.inf", ".nan", "[1, [2]]", "{a: 1}", "yes",
        "&a", "*a", "%", "@x", "???", "!!python/object/apply:os.system [echo]", "\\", "é",
        "[all]", "[topics]", "[]", "{}"]
JUNK_KEYS = ["", "a.b", "model..x", "[0]", "pretrain.steps.x", "tasks", "tasks.", "model",
             ".seed", "seed.", "pretrain", "model.name.x", "tasks.demo_summarize"]

values = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from([-1, 0, 1, 2, 3, 4, 8, 64, 2**20 + 1, 2**31, 2**63, 10**30]).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.booleans().map(lambda b: str(b).lower()),
    st.text(max_size=10),
    st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(["all", "topics", "a"])),
             max_size=3).map(lambda xs: "[" + ", ".join(map(str, xs)) + "]"),
    st.sampled_from(JUNK),
)
pairs = st.one_of(
    st.tuples(st.sampled_from(KEYS), values),
    st.tuples(st.sampled_from(JUNK_KEYS), values),
    st.sampled_from(sorted(NAMES)).flatmap(
        lambda path: st.tuples(st.just(f"{path}.name"), st.sampled_from(NAMES[path]))),
)
flags = st.fixed_dictionaries({
    "arch": st.none() | st.sampled_from(NAMES["model"] + ["nope"]),
    "objective": st.none() | st.sampled_from(NAMES["objective"]),
    "backend": st.none() | st.sampled_from(NAMES["backend"]),
    "corpus": st.none() | st.sampled_from(NAMES["corpus"]),
    "finetune": st.none() | st.sampled_from(NAMES["finetune.strategy"]),
})


def _as_yaml(items):
    """The pairs as a nested YAML mapping, values written verbatim (junk stays junk)."""
    tree: dict = {}
    for key, value in items:
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    lines = []

    def emit(node, indent):
        for key, value in node.items():
            if isinstance(value, dict):
                lines.append(f"{' ' * indent}{key}:")
                emit(value, indent + 2)
            else:
                lines.append(f"{' ' * indent}{key}: {value}")

    emit(tree, 0)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(items=st.lists(pairs, max_size=6), in_file=st.booleans(), shorthand=flags)
def test_generated_configs_validate_or_fail_in_one_line(folder, items, in_file, shorthand):
    overrides = [f"{key}={value}" for key, value in items]
    files = []
    if in_file:
        path = folder / "fuzz.yaml"
        path.write_text(_as_yaml(items), encoding="utf-8")
        files, overrides = [str(path)], []
    args = argparse.Namespace(config=files, overrides=overrides, **shorthand)
    try:
        cfg = cli._resolve_config(args, REGISTRY)
    except T5KError as exc:  # anything else fails the test with its traceback
        message = str(exc)
        assert message.strip() and "\n" not in message and "\r" not in message, repr(message)
        event(f"refused: {type(exc).__name__}")
        return
    event("valid")
    assert isinstance(cfg, DictConfig)
    saved = folder / "config.yaml"  # what a run saves must read back as the same run
    saved.write_text(OmegaConf.to_yaml(cfg), encoding="utf-8")
    again = validate(compose([saved], [], REGISTRY), REGISTRY)
    assert OmegaConf.to_container(again, resolve=True) == OmegaConf.to_container(cfg, resolve=True)


# ------------------------------------------------------------- config files run no code
EVIL = ["${eval:'__import__(\"os\").system(\"touch pwned\")'}",
        "${python:os.getpid}",
        "${eval:__import__('os').system('touch pwned')}"]  # not even valid interpolation syntax


@pytest.mark.parametrize("value", EVIL)
def test_an_evaluating_resolver_in_a_yaml_file_is_refused(tmp_path, value):
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump({"model": {"d_model": value}}))
    with pytest.raises(ConfigError) as info:
        validate(compose([path]), REGISTRY)
    message = str(info.value)
    assert "key: model.d_model" in message
    assert "unknown resolver" in message or "not valid interpolation syntax" in message
    assert "\n" not in message and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("value", EVIL)
def test_an_evaluating_resolver_in_an_override_is_refused(value, capsys, tmp_path):
    assert cli.main(["run", "--dry-run", f"run_dir={tmp_path / 'r'}", f"name={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "key: name" in err and "\n" not in err
    assert "unknown resolver" in err or "not valid interpolation syntax" in err


def test_a_registered_evaluating_resolver_is_still_not_available(tmp_path):
    """A library or plugin may register an ``eval`` resolver; configs cannot use it."""
    calls = []
    register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
    register("eval", lambda expr: calls.append(expr) or 7)
    try:
        path = tmp_path / "evil.yaml"
        path.write_text("seed: ${eval:'1 + 1'}\n")
        with pytest.raises(ConfigError, match=r"unknown resolver 'eval'.*\(key: seed\)"):
            validate(compose([path]), REGISTRY)
        with pytest.raises(ConfigError, match="unknown resolver 'eval'"):
            validate(compose(overrides=["objective.name=${eval:span}"]), REGISTRY)
        path.write_text("name: \\${eval:'1 + 1'}\n")  # escaped: text, resolved to "${eval:...}"
        cfg = validate(compose([path]), REGISTRY)
        assert cfg.name == "${eval:'1 + 1'}"
        path.write_text(OmegaConf.to_yaml(cfg))  # the saved config keeps it text
        assert validate(compose([path]), REGISTRY).name == "${eval:'1 + 1'}"
        assert calls == []
        assert OmegaConf.has_resolver("eval")  # restored for whoever registered it
        assert OmegaConf.create({"x": "${eval:2}"}).x == 7  # outside the config stage
        assert len(calls) == 1  # called once: outside the config stage only
    finally:
        OmegaConf.clear_resolver("eval")


def test_builtin_resolvers_still_work(tmp_path, monkeypatch):
    monkeypatch.setenv("T5K_FUZZ_NAME", "from-env")
    path = tmp_path / "ok.yaml"
    path.write_text("name: ${oc.env:T5K_FUZZ_NAME}\nseed: 3\npretrain:\n  log_every: ${seed}\n")
    cfg = validate(compose([path]), REGISTRY)
    assert (cfg.name, cfg.pretrain.log_every) == ("from-env", 3)


@pytest.mark.parametrize("text, needle", [
    ("seed: !!python/object/apply:os.system ['touch pwned']\n", "python/object"),
    ("model: {\n", "not valid YAML"),
    ("- 1\n- 2\n", "mapping at top level"),
])
def test_yaml_that_is_not_a_plain_config_is_refused(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle) as info:
        compose([path])
    assert "\n" not in str(info.value) and not (tmp_path / "pwned").exists()
    assert not os.path.exists("pwned")
