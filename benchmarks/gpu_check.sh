#!/usr/bin/env bash
# One command for a lent GPU (the `device` tool; < 5 minutes on one GPU): the CUDA backend
# tests, then the training-step benchmark against Hugging Face T5 on the same GPU.
#   bash benchmarks/gpu_check.sh          (from the repository root, torch with CUDA installed)
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA GPU visible"
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
T5K_STRICT_PLUGINS=1 python -m pytest -q -p no:cacheprovider plugins/builtin/tests/test_cuda_backend.py
python benchmarks/train_step.py --device cuda --rows 64 --iters 10
python benchmarks/train_step.py --device cuda --rows 64 --iters 10 --compile
