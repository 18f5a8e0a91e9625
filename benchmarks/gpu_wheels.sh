#!/usr/bin/env bash
# Wheels for running benchmarks/gpu_check.sh on an offline GPU machine whose image has
# torch, transformers, pytest and hypothesis but not our packages: t5kernel, the builtin
# plugin (installed, so that its entry points register) and the pure-Python dependencies
# such images tend to lack. Build them where pip can reach a registry, carry the folder
# over, and install there without an index:
#   bash benchmarks/gpu_wheels.sh [DIR]          (default DIR: .whl in the repository)
#   # on the GPU machine, from the repository root:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl
#   PYTHONPATH=/tmp/site bash benchmarks/gpu_check.sh
# --no-deps everywhere: the image's own torch, numpy, etc. stay as they are. Rebuild after
# changing the packages (our two wheels are copies, not editable installs).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.whl}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
rm -f "$DIR"/t5kernel-*.whl "$DIR"/t5kernel_builtin-*.whl
"$PY" -m pip wheel -q --no-deps -w "$DIR" . plugins/builtin \
    omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 rouge-score nltk langdetect tldextract \
    requests-file
ls "$DIR"
