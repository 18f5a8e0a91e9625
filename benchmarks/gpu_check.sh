#!/usr/bin/env bash
# The checks for a lent GPU (the `device` tool), as time-boxed stages; each stage's status
# and seconds are printed, and a failing stage does not stop the next. Stages (default:
# all, in this order):
#   train    benchmarks/vs_hf.py's GPU mode, training only: T5-base pre-training
#            (128 x 512/114, bf16, our model compiled) against Hugging Face T5 on the same
#            GPU, with model FLOP utilisation (the issue's target)
#            (4 steps queued back to back per timing, as a training loop runs them)
#   tests    the CUDA tests: the cuda backend through `t5k run` (fp32 = CPU, bf16/fp16
#            train and resume, compile), decoding on CUDA = CPU, the attention dropout
#            on CUDA (the memory-efficient kernel's bias gradient), and FlexAttention
#            training's gradients = the dense path's
#   attention benchmarks/attention_kernels.py: which attention kernel (memory-efficient,
#            cuDNN, flash, math, FlexAttention) computes T5's biased attention with a
#            correct bias gradient, and how fast at T5-base's encoder shape
#   profile  benchmarks/step_profile.py on the GPU: where each side's training step's
#            kernel time goes (matmuls, attention, optimizer, other kernels, GPU idle)
#   flex     the train stage with our attention through FlexAttention
#            (EncDecModel.flex_attention, experimental)
#   flexprofile the profile stage with FlexAttention
#   flexgraphs the flex stage with the compiled step replayed as CUDA graphs
#            (--compile-mode reduce-overhead: no launch gaps; not in the default list)
#   decode   benchmarks/vs_hf.py's GPU mode in full: training again, then greedy and
#            beam-4 decoding
# JSON results and the log go to $OUT (the device tool's output folder) when it is set.
# On an offline GPU machine without our packages, carry the wheels of
# benchmarks/gpu_wheels.sh and install them first (see there).
#   bash benchmarks/gpu_check.sh                  (from anywhere; torch with CUDA installed)
#   bash benchmarks/gpu_check.sh train profile    (some stages)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-.}
export PYTHONUNBUFFERED=1
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(train tests attention profile flex flexprofile decode)
failed=0

stage() {  # stage NAME SECONDS COMMAND...: run COMMAND under a time limit, report
    local name=$1 limit=$2 start rc
    shift 2
    echo "=== $name (limit ${limit} s): $*"
    start=$(date +%s)
    timeout -k 10 "$limit" "$@"
    rc=$?
    echo "=== $name: status $rc after $(( $(date +%s) - start )) s"
    [ $rc -eq 0 ] || failed=1
}

"$PY" - <<'PY' || exit 1
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check.sh: no CUDA GPU visible (torch {torch.__version__}, built for CUDA "
             f"{torch.version.cuda or 'none'}); run it on a GPU machine")
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__,
      "| CUDA", torch.version.cuda)
PY
for s in "${stages[@]}"; do
    case $s in
    train) stage train 300 "$PY" benchmarks/vs_hf.py --device cuda --compile --steps 3 \
        --train-window 4 --train-only --json "$OUT/vs_hf_cuda_train.json" ;;
    tests) stage tests 240 env T5K_STRICT_PLUGINS=1 "$PY" -m pytest -q -p no:cacheprovider \
        plugins/builtin/tests/test_cuda_backend.py plugins/builtin/tests/test_flex_attention.py \
        "plugins/builtin/tests/test_fast_paths.py::test_attention_dropout_is_the_reference_dropout_on_the_probabilities" ;;
    attention) stage attention 180 "$PY" benchmarks/attention_kernels.py \
        --json "$OUT/attention_kernels.json" ;;
    profile) stage profile 240 "$PY" benchmarks/step_profile.py --device cuda --compile \
        --json "$OUT/profile_cuda_train.json" ;;
    flex) stage flex 300 "$PY" benchmarks/vs_hf.py --device cuda --compile --steps 3 \
        --train-window 4 --train-only --flex-attention --json "$OUT/vs_hf_cuda_train_flex.json" ;;
    flexprofile) stage flexprofile 240 "$PY" benchmarks/step_profile.py --device cuda \
        --compile --flex-attention --json "$OUT/profile_cuda_train_flex.json" ;;
    flexgraphs) stage flexgraphs 300 "$PY" benchmarks/vs_hf.py --device cuda --compile \
        --compile-mode reduce-overhead --steps 3 --train-window 4 --train-only --flex-attention \
        --json "$OUT/vs_hf_cuda_train_flex_graphs.json" ;;
    decode) stage decode 300 "$PY" benchmarks/vs_hf.py --device cuda --compile --steps 3 \
        --json "$OUT/vs_hf_cuda.json" ;;
    *) echo "unknown stage '$s'; stages: train tests attention profile flex flexprofile" \
            "flexgraphs decode"
       exit 2 ;;
    esac
done
exit $failed
