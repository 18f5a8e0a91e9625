import os

import pytest

# Tests run with the strict plugin mode the CI uses, unless a test turns it off.
os.environ.setdefault("T5K_STRICT_PLUGINS", "1")
os.environ.setdefault("T5K_NO_PROGRESS", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A folder on sys.path where tests install fake plugin distributions."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root
