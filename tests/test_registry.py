"""Discovery, listing, lookup and failure isolation of the plugin registry."""

import subprocess
import sys

import pytest

from t5kernel.errors import PluginConflictError, PluginError, PluginNotFoundError
from t5kernel.registry import Registry
from t5kernel.testing import fake_distribution

BUILTIN_EXPECTED = {
    ("architecture", "encdec"), ("architecture", "encdec_shared"),
    ("architecture", "encdec_half"), ("vocabulary", "sentencepiece"), ("objective", "iid_spans"),
    ("objective", "span"), ("objective", "prefix_lm"), ("objective", "lm"), ("objective", "bert"), ("objective", "mass"),
    ("objective", "deshuffle"), ("objective", "iid_drop"),
    ("architecture", "lm"), ("architecture", "prefix_lm"),
    ("corpus", "embedded"), ("corpus", "text_files"), ("corpus", "c4"), ("corpus", "c4_unfiltered"),
    ("corpus", "realnews_like"), ("corpus", "webtext_like"), ("corpus", "wikipedia"),
    ("corpus", "wikipedia_tbc"), ("corpus", "demo_acceptability"),
    ("corpus", "glue_cola"), ("corpus", "glue_sst2"), ("corpus", "glue_mrpc"), ("corpus", "glue_qqp"), ("corpus", "glue_stsb"), ("corpus", "glue_mnli"), ("corpus", "glue_qnli"), ("corpus", "glue_rte"), ("corpus", "glue_wnli"), ("corpus", "super_glue_boolq"), ("corpus", "super_glue_cb"), ("corpus", "super_glue_copa"), ("corpus", "super_glue_multirc"), ("corpus", "super_glue_record"), ("corpus", "super_glue_rte"), ("corpus", "super_glue_wic"), ("corpus", "super_glue_wsc"),
    ("corpus", "demo_summarize"), ("corpus", "demo_pig_latin"), ("mixer", "proportional"), ("mixer", "temperature"), ("mixer", "equal"),
    ("finetune", "full"), ("finetune", "adapters"), ("finetune", "gradual_unfreeze"), ("evaluator", "accuracy"), ("evaluator", "matthews_corr"),
    ("evaluator", "rouge"), ("evaluator", "bleu"),
    ("evaluator", "f1_invalid"), ("evaluator", "pearson_spearman"), ("evaluator", "mean_3class_f1"), ("evaluator", "multirc"), ("evaluator", "squad"), ("evaluator", "paper_averages"),
    ("corpus", "squad"), ("corpus", "cnn_dailymail"), ("corpus", "wmt_ende"), ("corpus", "wmt_enfr"), ("corpus", "wmt_enro"), ("backend", "cpu"), ("backend", "cuda"),
    ("optimizer", "adafactor"), ("schedule", "rsqrt"), ("schedule", "constant"),
}

MIXER_HOOKS = '''
from dataclasses import dataclass
from t5kernel.api import PluginSpec, hookimpl

@dataclass
class Cfg:
    weight: float = 1.0

@hookimpl
def t5k_mixers():
    yield PluginSpec("{name}", "{module}_impl:Mixer", Cfg, "a test mixer"{extra})
'''


def _mixer_dist(root, dist, module, name="flat", extra=""):
    return fake_distribution(
        root, dist, module, MIXER_HOOKS.format(name=name, module=module, extra=extra),
        extra_modules={f"{module}_impl": "class Mixer:\n    def __init__(self, c, ctx):\n"
                       "        self.c = c\n    def rates(self, sizes):\n"
                       "        return {k: 1 / len(sizes) for k in sizes}\n"},
    )


def _by_key(registry):
    return {(r.kind, r.name, r.distribution): r for r in registry.records}


def test_builtin_plugins_are_discovered_through_entry_points():
    reg = Registry.discover(strict=True)
    active = {(r.kind, r.name) for r in reg.records
              if r.status == "active" and r.distribution == "t5kernel-builtin"}
    assert BUILTIN_EXPECTED <= active
    rec = reg.get("architecture", "encdec")
    assert rec.version and rec.entry_point.startswith("builtin = t5k_builtin.hooks")


def test_third_party_plugin_is_listed_with_its_distribution(plugin_path):
    _mixer_dist(plugin_path, "acme-mixers", "acme_hooks")
    reg = Registry.discover(strict=True)
    rec = reg.get("mixer", "flat")
    assert (rec.distribution, rec.version, rec.status) == ("acme-mixers", "1.0", "active")
    mixer = reg.build("mixer", "flat", rec.config())
    assert mixer.rates({"a": 1, "b": 5}) == {"a": 0.5, "b": 0.5}


def test_plugin_failing_at_import_is_reported_and_isolated(plugin_path):
    fake_distribution(plugin_path, "broken-dist", "broken_hooks", "raise RuntimeError('boom')\n")
    reg = Registry.discover(strict=False)
    broken = [r for r in reg.records if r.distribution == "broken-dist"]
    assert len(broken) == 1 and broken[0].status == "broken"
    assert "boom" in broken[0].error and "broken_hooks" in broken[0].error
    assert reg.get("architecture", "encdec").status == "active"  # the rest still works
    with pytest.raises(PluginError, match="broken-dist.*boom"):
        Registry.discover(strict=True)


def test_hook_that_raises_is_isolated(plugin_path):
    fake_distribution(plugin_path, "raising-dist", "raising_hooks", '''
        from t5kernel.api import hookimpl
        @hookimpl
        def t5k_evaluators():
            raise ValueError("bad record")
    ''')
    reg = Registry.discover(strict=False)
    rec = [r for r in reg.records if r.distribution == "raising-dist"]
    assert rec and rec[0].status == "broken" and "bad record" in rec[0].error
    assert reg.get("evaluator", "bleu").status == "active"


def test_duplicate_names_are_refused_naming_both_distributions(plugin_path):
    _mixer_dist(plugin_path, "first-dist", "first_hooks", name="proportional")
    reg = Registry.discover(strict=False)
    with pytest.raises(PluginConflictError) as err:
        reg.get("mixer", "proportional")
    assert "first-dist" in str(err.value) and "t5kernel-builtin" in str(err.value)
    # an explicit choice resolves the conflict
    assert reg.get("mixer", "first-dist:proportional").distribution == "first-dist"
    assert reg.get("mixer", "t5kernel-builtin:proportional").distribution == "t5kernel-builtin"
    with pytest.raises(PluginError, match="also registered by"):
        Registry.discover(strict=True)


def test_a_wrong_distribution_prefix_names_who_provides_the_plugin():
    """``nope:span`` said span's distribution "is not installed" although it is."""
    reg = Registry.discover(strict=True)
    for name in ("nope:span", "t5k-plugin-example:span"):
        with pytest.raises(PluginNotFoundError) as err:
            reg.get("objective", name)
        message = str(err.value)
        assert f"distribution {name.split(':')[0]!r} provides no objective 'span'" in message
        assert "'span' is provided by t5kernel-builtin" in message
        assert "not installed: pip" not in message
    assert reg.get("objective", "t5kernel-builtin:span").name == "span"


def test_incompatible_api_version_is_refused(plugin_path):
    _mixer_dist(plugin_path, "future-dist", "future_hooks", name="future",
                extra=", api_version=(2, 0)")
    reg = Registry.discover(strict=False)
    rec = _by_key(reg)[("mixer", "future", "future-dist")]
    assert rec.status == "incompatible" and "2.0" in rec.error
    with pytest.raises(PluginError, match="incompatible"):
        reg.get("mixer", "future")


def test_disabled_distribution_is_not_loaded(plugin_path, monkeypatch):
    fake_distribution(plugin_path, "noisy-dist", "noisy_hooks", "raise SystemError('loaded')\n")
    monkeypatch.setenv("T5K_DISABLE_PLUGINS", "noisy-dist")
    reg = Registry.discover(strict=True)
    rec = [r for r in reg.records if r.distribution == "noisy-dist"]
    assert rec[0].status == "disabled"


def test_a_plugin_of_a_disabled_distribution_is_named_as_disabled(monkeypatch):
    """Not "not installed: pip install ..." for a distribution that is installed."""
    monkeypatch.setenv("T5K_DISABLE_PLUGINS", "t5kernel-builtin")
    reg = Registry.discover(strict=True)
    with pytest.raises(PluginNotFoundError) as err:
        reg.get("architecture", "encdec")
    message = str(err.value)
    assert "t5kernel-builtin, which is installed but disabled here (T5K_DISABLE_PLUGINS)" in (
        message) and "not installed" not in message


def test_unknown_name_suggests_close_matches():
    reg = Registry.discover(strict=True)
    with pytest.raises(PluginNotFoundError) as err:
        reg.get("architecture", "encdek")
    assert "Did you mean 'encdec'" in str(err.value) and "Available" in str(err.value)
    with pytest.raises(PluginNotFoundError, match="unknown plugin kind"):
        reg.get("widget", "x")


def test_listing_never_imports_implementations(plugin_path):
    fake_distribution(plugin_path, "lazy-dist", "lazy_hooks", '''
        from t5kernel.api import PluginSpec, hookimpl
        @hookimpl
        def t5k_mixers():
            yield PluginSpec("lazy", "lazy_impl:Mixer", summary="imports on use only")
    ''', extra_modules={"lazy_impl": "raise ImportError('implementation imported')\n"})
    reg = Registry.discover(strict=True)
    assert reg.get("mixer", "lazy").status == "active"
    assert "lazy_impl" not in sys.modules
    with pytest.raises(PluginError, match="implementation imported"):
        reg.build("mixer", "lazy", None)


def test_list_plugins_json_does_not_import_torch():
    code = ("import sys, json, io, contextlib\n"
            "from t5kernel.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    main(['list-plugins', '--json'])\n"
            "rows = json.loads(buf.getvalue())\n"
            "print(len(rows), 'torch' in sys.modules, 'datasets' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, torch_loaded, datasets_loaded = out.stdout.split()
    assert int(n) >= len(BUILTIN_EXPECTED)
    assert torch_loaded == "False" and datasets_loaded == "False"


@pytest.mark.parametrize("version", ["(1,)", "2", "None", "'1.1'", "(1, 'x')", "(1, 1, 0)"])
def test_a_malformed_api_version_is_a_broken_plugin_not_a_crash(plugin_path, version):
    _mixer_dist(plugin_path, "odd-api", "odd_api_hooks", name="odd",
                extra=f", api_version={version}")
    reg = Registry.discover(strict=False)  # discovery and listing go on
    rec = _by_key(reg)[("mixer", "odd_api_hooks", "odd-api")]  # named by its entry point
    assert rec.status == "broken" and "api_version must be (major, minor)" in rec.error
    with pytest.raises(PluginNotFoundError):
        reg.get("mixer", "odd")


def test_a_misspelled_hook_is_reported(plugin_path):
    fake_distribution(plugin_path, "typo-dist", "typo_hooks", MIXER_HOOKS.format(
        name="typo", module="typo_hooks", extra="").replace("def t5k_mixers", "def t5k_mixer"))
    reg = Registry.discover(strict=False)
    rec = [r for r in reg.records if r.distribution == "typo-dist"]
    assert len(rec) == 1 and rec[0].status == "broken" and "t5k_mixer" in rec[0].error
    with pytest.raises(PluginError, match="strict plugin mode"):
        Registry.discover(strict=True)


def test_one_distribution_registering_a_name_twice(plugin_path):
    fake_distribution(plugin_path, "twice-dist", "twice_hooks", MIXER_HOOKS.format(
        name="twice", module="twice_hooks", extra="").replace(
        '    yield PluginSpec(', '    yield PluginSpec("twice", "twice_hooks_impl:Mixer")\n'
                                '    yield PluginSpec('),
        extra_modules={"twice_hooks_impl": "class Mixer:\n    pass\n"})
    reg = Registry.discover(strict=False)
    recs = [r for r in reg.records if r.distribution == "twice-dist"]
    assert [r.status for r in recs] == ["active", "broken"]
    assert "registered more than once by twice-dist" in recs[1].error
    assert reg.get("mixer", "twice") is recs[0]  # the first one is used


def test_listing_by_kind_shows_distributions_that_failed_to_load(plugin_path):
    fake_distribution(plugin_path, "boom-dist", "boom_hooks", "raise ImportError('boom')\n")
    reg = Registry.discover(strict=False)
    listed = {(r.distribution, r.status) for r in reg.list("mixer")}
    assert ("boom-dist", "broken") in listed  # its kinds are unknown: it may be the mixer


def test_catalogued_plugin_of_a_broken_distribution_is_named_as_broken():
    from t5kernel.catalogue import available_records
    from t5kernel.registry import PluginRecord, _catalogue_hint

    row = available_records()[0]
    broken = PluginRecord(None, "hooks", row["distribution"], "1.0", "broken",
                          error="failed to import hooks module x: ImportError: boom")
    hint = _catalogue_hint(row["kind"], row["name"], {row["distribution"]: broken})
    assert "installed but failed to load: failed to import hooks module x" in hint
    assert "not installed" not in hint


def test_a_built_object_missing_its_interface_is_named(plugin_path):
    fake_distribution(plugin_path, "hollow-dist", "hollow_hooks", MIXER_HOOKS.format(
        name="hollow", module="hollow_hooks", extra=""),
        extra_modules={"hollow_hooks_impl": "class Mixer:\n    def __init__(self, c, ctx):\n"
                       "        pass\n"})
    reg = Registry.discover(strict=True)
    rec = reg.get("mixer", "hollow")
    with pytest.raises(PluginError, match="built a Mixer without rates"):
        reg.build("mixer", "hollow", rec.config())


def test_plugin_text_is_not_read_as_markup(plugin_path, capsys):
    from t5kernel.cli import main
    from t5kernel.registry import default_registry

    fake_distribution(plugin_path, "markup-dist", "markup_hooks", MIXER_HOOKS.format(
        name="marked", module="markup_hooks", extra="").replace(
        '"a test mixer"', '"closes [/] nothing; see [link] docs"'))
    default_registry(refresh=True)
    try:
        assert main(["list-plugins", "--kind", "mixer"]) == 0
    finally:
        default_registry(refresh=True)
    out = capsys.readouterr().out
    assert "[/]" in out and "[link]" in out
