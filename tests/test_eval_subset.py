"""``eval.max_examples`` evaluates the first N examples, but never part of a group scored
together: MultiRC's exact match is per question, over all of its answers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from t5kernel.runloop import Runner

glue = pytest.importorskip("t5k_builtin.corpora.glue")
configs = pytest.importorskip("t5k_builtin.configs")


def _multirc(tmp_path, answers_per_question=(3, 2, 4)):
    questions = [{"question": f"Q{q}?", "idx": q,
                  "answers": [{"text": f"A{q}.{a}", "idx": a, "label": a % 2}
                              for a in range(n)]}
                 for q, n in enumerate(answers_per_question)]
    path = tmp_path / "val.jsonl"
    path.write_text(json.dumps({"idx": 0, "passage": {"text": "P.", "questions": questions}})
                    + "\n")
    return glue.SuperGlueMultirc(configs.SuperGlueTaskConfig(validation_file=str(path)))


def _subset(task, limit: int) -> list[dict]:
    fake = SimpleNamespace(cfg=OmegaConf.create(
        {"eval": {"split": "validation", "max_examples": limit}}))
    return Runner._eval_examples(fake, task)


@pytest.mark.parametrize(("limit", "groups"), [
    (1, [0, 0, 0]), (3, [0, 0, 0]), (4, [0, 0, 0, 1, 1]), (5, [0, 0, 0, 1, 1]),
    (6, [0, 0, 0, 1, 1, 2, 2, 2, 2]), (9, [0, 0, 0, 1, 1, 2, 2, 2, 2]),
    (50, [0, 0, 0, 1, 1, 2, 2, 2, 2]), (0, [0, 0, 0, 1, 1, 2, 2, 2, 2])])
def test_max_examples_keeps_a_multirc_question_whole(tmp_path, limit, groups):
    assert [ex["group"] for ex in _subset(_multirc(tmp_path), limit)] == groups


def test_max_examples_cuts_ungrouped_tasks_exactly():
    task = SimpleNamespace(examples=lambda split: iter(
        {"inputs": str(i), "targets": str(i)} for i in range(10)))
    assert [ex["inputs"] for ex in _subset(task, 4)] == ["0", "1", "2", "3"]


def test_an_empty_split_names_the_task():
    from t5kernel.errors import DataError

    task = SimpleNamespace(name="glue_rte", examples=lambda split: iter(()))
    with pytest.raises(DataError, match="glue_rte: split 'validation' has no examples"):
        _subset(task, 0)
