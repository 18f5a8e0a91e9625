"""The registry/ catalogue: schema, and agreement with what is really installed."""

import json

import pytest

from t5kernel.catalogue import available_records, catalogue_dir, load_manifest, manifests
from t5kernel.cli import main
from t5kernel.errors import ConfigError
from t5kernel.registry import Registry


def test_every_manifest_matches_the_installed_entry_points():
    reg = Registry.discover(strict=True)
    found = manifests()
    assert {m["distribution"] for m in found} >= {"t5kernel", "t5kernel-builtin"}
    for m in found:
        installed = {(r.kind, r.name) for r in reg.records if r.distribution == m["distribution"]}
        catalogued = {(p["kind"], p["name"]) for p in m["plugins"]}
        if m["distribution"] == "t5kernel" or installed:
            assert catalogued == installed, m["distribution"]


def test_manifest_schema_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('distribution = "x"\nsummary = "s"\ninstall = "i"\nkernel_api = "1"\n'
                   '[[plugins]]\nkind = "gadget"\nname = "n"\nsummary = "s"\n')
    with pytest.raises(ConfigError, match=r"plugins\[0\]\.kind 'gadget'"):
        load_manifest(bad)
    bad.write_text('summary = "s"\n')
    with pytest.raises(ConfigError, match="'distribution'"):
        load_manifest(bad)


def test_available_lists_catalogued_plugins_not_installed(tmp_path, monkeypatch, capsys):
    (tmp_path / "other.toml").write_text(
        'distribution = "t5kernel-imaginary"\nsummary = "s"\ninstall = "pip install t5kernel-imaginary"\n'
        'kernel_api = ">=1.0,<2"\n[[plugins]]\nkind = "backend"\nname = "abacus"\nsummary = "beads"\n')
    monkeypatch.setenv("T5K_CATALOGUE", str(tmp_path))
    assert catalogue_dir() == tmp_path
    rows = available_records("backend")
    assert rows[0]["status"] == "available" and "pip install" in rows[0]["install"]
    assert main(["list-plugins", "--json", "--available", "--kind", "backend"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {(r["name"], r["status"]) for r in listed} >= {("cpu", "active"), ("abacus", "available")}
    for row in listed:
        assert {"kind", "name", "distribution", "version", "summary", "status"} <= set(row)
