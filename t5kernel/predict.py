"""``t5k predict RUN_DIR``: decode any inputs with a run's model.

Evaluation (``t5k eval``) decodes a task's own split and scores it; this decodes what the
user gives (``--input TEXT``, ``--file FILE`` of lines or JSON lines, or standard input),
as T5's predict mode does: each input is tokenised as evaluation tokenises it (truncated
to ``finetune.inputs_length`` - 1 tokens, then EOS), decoded per ``eval.*`` (greedy, or
``eval.num_beams=4`` ...; several ``--checkpoint`` = an ensemble) and written as the raw
decoded text, one line per input in input order (``--jsonl``: ``{"inputs", "prediction"}``
objects). Inputs are the model's own text format: a task's prefix included
(``cola sentence: ...``, ``translate English to German: ...``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from omegaconf import DictConfig

from t5kernel.errors import ConfigError, DataError


def read_inputs(texts: Sequence[str], file: str | None, stdin: TextIO | None = None
                ) -> list[str]:
    """The inputs to decode: ``texts`` then the lines of ``file`` (``-`` = ``stdin``).

    A ``.jsonl`` file holds one JSON object per line whose ``inputs`` is the text (the
    layout of a run's ``predictions/*.jsonl`` and of seqio's examples); any other file one
    input per line, blank lines included (an output line stays aligned with its input).
    """
    inputs = list(texts)
    if file is None:
        return inputs
    if file == "-":
        stream = stdin if stdin is not None else sys.stdin
        lines, name = stream.read().splitlines(), "standard input"
    else:
        path = Path(file).expanduser()
        if not path.is_file():
            raise DataError(f"--file {file!r} does not exist or is not a file")
        try:
            lines, name = path.read_text(encoding="utf-8").splitlines(), str(path)
        except UnicodeDecodeError as err:
            raise DataError(f"--file {file!r} is not UTF-8 text ({err.reason})") from None
    if file != "-" and file.endswith(".jsonl"):
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise DataError(f"{name} line {n} is not JSON (a .jsonl file holds one "
                                "object per line with an \"inputs\" text)") from None
            text = record.get("inputs") if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise DataError(f"{name} line {n}: no \"inputs\" text in this object")
            inputs.append(text)
    else:
        inputs.extend(lines)
    return inputs


def predict(cfg: DictConfig, registry: Any, run_dir: Path, checkpoints: list[Path],
            inputs: list[str], say: Any = None) -> dict[str, Any]:
    """Decode ``inputs`` with the run's model at ``checkpoints`` (none = its latest valid
    checkpoint; several = an ensemble). Returns ``predictions`` (one per input), the
    ``checkpoints`` used and ``truncated``, how many inputs were longer than the model
    reads; ``say`` receives a line about that."""
    from t5kernel.runloop import Runner, load_members, resolve_checkpoints

    if not inputs:
        raise ConfigError("t5k predict: no inputs; give --input TEXT, --file FILE, or text "
                          "lines on standard input")
    run_dir = Path(run_dir)
    checkpoints = resolve_checkpoints(run_dir, checkpoints, cfg)
    runner = Runner(cfg, registry, run_dir)
    comps = runner.build(training=False)
    load_members(runner, comps, checkpoints)
    limit = int(cfg.finetune.inputs_length) - 1
    truncated = sum(1 for text in inputs if len(comps.vocab.encode(text)) > limit)
    if truncated and say is not None:
        say(f"note: {truncated} of {len(inputs)} inputs are longer than "
            f"finetune.inputs_length - 1 = {limit} tokens and were cut there, as evaluation "
            "cuts them (set finetune.inputs_length=N to read more)")
    comps.model.eval()
    predictions = runner.predict(comps, inputs)
    return {"predictions": predictions, "checkpoints": [str(c) for c in checkpoints],
            "truncated": truncated}


def format_predictions(inputs: Iterable[str], predictions: Iterable[str], jsonl: bool) -> str:
    """One line per input: the prediction (a newline inside it becomes a space, so lines
    stay aligned; ``jsonl`` keeps it exactly, beside its input)."""
    if jsonl:
        lines = [json.dumps({"inputs": i, "prediction": p}, ensure_ascii=False)
                 for i, p in zip(inputs, predictions, strict=True)]
    else:
        lines = [" ".join(p.splitlines()) for p in predictions]
    return "".join(line + "\n" for line in lines)
