"""Best checkpoint per task (``eval.best_checkpoint_per_task``) picks checkpoints as T5's
``eval_utils.metric_group_max`` does: per selection group, by the mean of its metrics with
NaN ones skipped, a group without numbers ranking lowest; MNLI matched and mismatched (one
task's two evaluation splits) form one group."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from t5kernel.runloop import Runner


def _runner(tasks: dict):
    """The parts of a :class:`Runner` that checkpoint selection reads, and a queue of the
    scores each evaluation returns."""
    queue: list[dict] = []
    fake = SimpleNamespace(
        cfg=OmegaConf.create({"eval": {"split": "validation", "tasks": None}}),
        results={"eval": {}}, global_step=0, log=SimpleNamespace(write=lambda row: None))
    fake._eval_targets = Runner._eval_targets.__get__(fake)
    fake.evaluate = lambda comps: queue.pop(0)
    comps = SimpleNamespace(tasks=tasks)

    def checkpoint(step: int, scores: dict) -> None:
        fake.global_step = step
        queue.append(scores)
        Runner._eval_checkpoint(fake, comps, fake.results.setdefault("best", {}))

    return fake, checkpoint


MNLI = SimpleNamespace(eval_splits={"glue_mnli_matched": "validation",
                                    "glue_mnli_mismatched": "validation_mismatched"})


def test_mnli_matched_and_mismatched_come_from_one_checkpoint():
    fake, checkpoint = _runner({"glue_mnli": MNLI})
    checkpoint(5000, {"glue_mnli_matched": {"accuracy": 84.0},
                      "glue_mnli_mismatched": {"accuracy": 80.0}})  # mean 82.0
    checkpoint(10000, {"glue_mnli_matched": {"accuracy": 82.0},
                       "glue_mnli_mismatched": {"accuracy": 84.5}})  # mean 83.25: best
    assert fake.results["best_step"] == {"glue_mnli_matched": 10000,
                                         "glue_mnli_mismatched": 10000}
    assert fake.results["eval"] == {"glue_mnli_matched": {"accuracy": 82.0},
                                    "glue_mnli_mismatched": {"accuracy": 84.5}}


def test_a_nan_score_never_stays_best():
    fake, checkpoint = _runner({"glue_stsb": SimpleNamespace(), "glue_rte": SimpleNamespace()})
    nan = {"pearson_corrcoef": math.nan, "spearman_corrcoef": math.nan}
    checkpoint(1, {"glue_stsb": nan, "glue_rte": {"accuracy": 60.0}})
    assert fake.results["best_step"] == {"glue_stsb": 1, "glue_rte": 1}  # nothing better yet
    checkpoint(2, {"glue_stsb": {"pearson_corrcoef": 10.0, "spearman_corrcoef": math.nan},
                   "glue_rte": {"accuracy": 60.0}})  # a tie keeps the earlier checkpoint
    checkpoint(3, {"glue_stsb": nan, "glue_rte": {"accuracy": 50.0}})
    checkpoint(4, {"glue_stsb": {"pearson_corrcoef": 9.0, "spearman_corrcoef": 9.5},
                   "glue_rte": {"accuracy": 59.0}})
    assert fake.results["best_step"] == {"glue_stsb": 2, "glue_rte": 1}
    assert fake.results["eval"]["glue_stsb"]["pearson_corrcoef"] == 10.0


@pytest.mark.parametrize("split", ["validation", "test"])
def test_selection_groups_follow_the_results_evaluated(split):
    """With ``eval.split`` other than validation a task is scored under its own name
    (no ``eval_splits``), and selection follows that result."""
    fake, checkpoint = _runner({"glue_mnli": MNLI})
    fake.cfg.eval.split = split
    names = [t.result for t in fake._eval_targets({"glue_mnli": MNLI})]
    assert names == (["glue_mnli_matched", "glue_mnli_mismatched"] if split == "validation"
                     else ["glue_mnli"])
    checkpoint(7, {name: {"accuracy": 1.0} for name in names})
    assert fake.results["best_step"] == {name: 7 for name in names}
