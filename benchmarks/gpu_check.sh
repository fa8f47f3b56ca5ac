#!/usr/bin/env bash
# The one GPU check: install for the GPU, run a small round of configs/gpu-1b.yaml on a model it can reach offline
# (the embedded one: the GPU machine reaches no hub), with 2-process training when there are 2+ GPUs, and write the
# figures to a results file. Meant to finish in under 8 minutes on one modern GPU.
#
#   bash benchmarks/gpu_check.sh [RESULTS_DIR]      # default: benchmarks/results ($OUT on the device tool)
#
# Status: written without a GPU at hand (the sessions so far were not lent one); not run yet.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${1:-${OUT:-benchmarks/results}}"
mkdir -p "$RESULTS"
STAMP="$(date +%Y-%m-%d-%H%M)"
LOG="$RESULTS/gpu-check-$STAMP.log"
exec > >(tee "$LOG") 2>&1

nvidia-smi -L || { echo "no GPU visible (nvidia-smi -L failed)"; exit 1; }
NGPU="$(nvidia-smi -L | wc -l)"
t0=$(date +%s)
make setup DEVICE=gpu
t_setup=$(( $(date +%s) - t0 ))
.venv/bin/alignment env

PROCS=1; [ "$NGPU" -ge 2 ] && PROCS=2
# A small round of the 1B preset's recipe on the embedded model (reachable offline); sizes cut to fit the budget.
OVERRIDES=(
  "model.policy=embedded" "reward_model.base=embedded" "reward_model.num_layers=8" "name=gpu-check"
  "prompts.builtin={math: 200, instruction: 200, chat: 100}"
  "prompts.mix={math: 64, instruction: 64, chat: 32}" "generation.max_new_tokens=256"
  "generation.vllm.max_model_len=1024" "sft.padding_free=false"
  "accelerate.num_processes=$PROCS"
)
t1=$(date +%s)
.venv/bin/python benchmarks/bench_round.py --config configs/gpu-1b.yaml --out "$RESULTS/gpu-round-$STAMP.json" \
  "${OVERRIDES[@]}"
t_round=$(( $(date +%s) - t1 ))

.venv/bin/python - "$RESULTS/gpu-round-$STAMP.json" "$RESULTS/gpu-check-$STAMP.json" <<EOF
import json, subprocess, sys
r = json.load(open(sys.argv[1]))
gpus = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                      capture_output=True, text=True).stdout.strip().splitlines()
out = {"gpus": gpus, "training_processes": $PROCS, "setup_s": $t_setup, "round_s": $t_round,
       "round": {k: r.get(k) for k in ("wall_s", "peak_rss_gib", "stage_s", "engines", "generate", "eval")}}
json.dump(out, open(sys.argv[2], "w"), indent=2)
print(json.dumps(out, indent=2)[:3000])
EOF
echo "gpu check done in $(( $(date +%s) - t0 )) s: $RESULTS/gpu-check-$STAMP.json"
