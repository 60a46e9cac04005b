#!/usr/bin/env bash
# One virtual environment per trainer, for tests/test_trainers_*.py.
#
# The trainers pin conflicting versions of transformers, datasets and trl, so none of them can live in the
# suite's own environment. Each venv gets the suite's CPU torch first (torch==2.13.0: a plain "torch"
# requirement could pull a multi-GB CUDA build), then the trainer at a pinned release.
#
# Usage: bash tests/trainers/setup.sh [NAME...]   (default: those in tests/trainers/ci-trainers.txt)
# Venvs go to $GOLDFISH_TRAINERS_DIR (default: .trainers/ in the repository root, which git ignores);
# one that already imports its trainer is kept as it is. Each install's wall time is printed.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="${GOLDFISH_TRAINERS_DIR:-$PWD/.trainers}"
mkdir -p "$root"

# name -> pip requirements (after torch==2.13.0) and the module that proves the install
declare -A reqs=(
  [llamafactory]="llamafactory==0.9.5"
  [axolotl]="axolotl==0.19.0"
  [litgpt]="litgpt==0.5.13 pyarrow==26.0.1 requests"
  [ms-swift]="ms-swift==4.6.0"
  [torchtune]="torchtune==0.6.1 torchao==0.11.0"
  [datasets3]="datasets==3.6.0"
)
declare -A probe=([llamafactory]=llamafactory [axolotl]=axolotl [litgpt]=litgpt [ms-swift]=swift [torchtune]=torchtune [datasets3]=datasets)

# PyPI's torchvision and torchaudio wheels are built against PyPI's CUDA torch of their own release; with the
# CPU torch 2.13.0 their operators fail to load ("operator torchvision::nms does not exist", "Could not load
# _torchaudio.so"), and importing them breaks `import transformers.LlamaConfig`. Text training needs neither:
# they are uninstalled, and torchaudio (which LLaMA-Factory imports at the top of its multimodal plugin) is
# replaced by a stub whose every attribute raises. transformers sees no dist-info, so it treats both as absent.
stub_vision_audio() {
  local venv="$1" site
  "$venv/bin/pip" uninstall -y -q torchvision torchaudio 2>/dev/null || true
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  mkdir -p "$site/torchaudio"
  cat >"$site/torchaudio/__init__.py" <<'STUB'
"""Stub of goldfish-prep's tests/trainers/setup.sh: PyPI's torchaudio cannot load with CPU torch 2.13.0."""


def __getattr__(name):
    raise ImportError(f"torchaudio.{name}: torchaudio is a stub in this venv (tests/trainers/setup.sh); audio is not supported")
STUB
}

names=("$@")
# default: the trainers CI runs (tests/trainers/ci-trainers.txt); any name of reqs above may be given
[ ${#names[@]} -eq 0 ] && mapfile -t names < <(grep -v '^#' tests/trainers/ci-trainers.txt | grep .)
for name in "${names[@]}"; do
  venv="$root/$name"
  stamp="$venv/.goldfish-requirements"  # a venv made for other pins is made again
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${reqs[$name]}" ] \
    && "$venv/bin/python" -c "import ${probe[$name]}" 2>/dev/null; then
    echo "trainers: $name ready in $venv"
    continue
  fi
  start=$(date +%s)
  rm -rf "$venv"
  python -m venv "$venv"
  if [ "$name" = datasets3 ]; then  # the hf export's reader check: datasets 3.x alone, no torch
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q ${reqs[$name]}
  else
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q torch==2.13.0 ${reqs[$name]}
    stub_vision_audio "$venv"
    # the CPU build, and no CUDA libraries pulled in beside it
    "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__ != '2.13.0+cpu')"
    if "$venv/bin/pip" list 2>/dev/null | grep -qiE '^nvidia-(cu|cudnn|nccl|nvjitlink)'; then
      echo "trainers: $name pulled CUDA packages: pin them out in tests/trainers/setup.sh" >&2
      exit 1
    fi
  fi
  "$venv/bin/python" -c "import ${probe[$name]}"
  echo "${reqs[$name]}" >"$stamp"
  echo "trainers: $name installed in $(( $(date +%s) - start )) s"
done
