#!/usr/bin/env bash
# One command for a lent GPU (the `device` tool; < 5 minutes on one GPU): the CUDA backend
# tests and the attention-dropout test on CUDA (the fused kernel's bias gradient), then the
# GPU mode of benchmarks/vs_hf.py: T5-base pre-training (128 x 512/114,
# bf16, our model compiled) against Hugging Face T5 on the same GPU, with model FLOP
# utilisation; its JSON goes to $OUT (the device tool's output folder) when set.
#   bash benchmarks/gpu_check.sh          (from the repository root, torch with CUDA installed)
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA GPU visible"
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
T5K_STRICT_PLUGINS=1 python -m pytest -q -p no:cacheprovider plugins/builtin/tests/test_cuda_backend.py \
    "plugins/builtin/tests/test_fast_paths.py::test_attention_dropout_is_the_reference_dropout_on_the_probabilities"
python benchmarks/vs_hf.py --device cuda --compile --steps 3 --json "${OUT:-.}/vs_hf_cuda.json"
