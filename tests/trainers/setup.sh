#!/usr/bin/env bash
# One virtual environment per trainer, for tests/test_trainers_*.py.
#
# The trainers pin conflicting versions of transformers, datasets and trl, so none of them can live in the
# suite's own environment. Each venv gets the suite's CPU torch (torch==2.13.0, the very file pip picks for
# it: a plain "torch" requirement could pull a multi-GB CUDA build), then the trainer at a pinned release.
#
# Usage: bash tests/trainers/setup.sh [NAME...]   (default: those in tests/trainers/ci-trainers.txt, and azurite)
# Venvs go to $GOLDFISH_TRAINERS_DIR (default: .trainers/ in the repository root, which git ignores);
# one made for the same pins by the same installer that still imports its trainer is kept as it is. Each
# install's wall time is printed.
#
# Installer: uv (the [test] extra pins it), which resolves and links a trainer's 37 to 239 packages several
# times faster than pip and keeps one cache for all the venvs. Without uv, or with GOLDFISH_TRAINERS_INSTALLER=pip,
# pip installs them one after the other, as before (slower: tests/trainers/ci-trainers.txt gives both times).
# uv's venvs hold no pip of their own: `python -m uv pip install --python VENV/bin/python PACKAGE` adds to one.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="${GOLDFISH_TRAINERS_DIR:-$PWD/.trainers}"
mkdir -p "$root"

# name -> requirements (after torch==2.13.0) and the module that proves the install
declare -A reqs=(
  [llamafactory]="llamafactory==0.9.5"
  [axolotl]="axolotl==0.19.0"
  [litgpt]="litgpt==0.5.13 pyarrow==26.0.1 requests"
  [ms-swift]="ms-swift==4.6.0"
  [torchtune]="torchtune==0.6.1 torchao==0.11.0"
  [datasets3]="datasets==3.6.0"
)
declare -A probe=([llamafactory]=llamafactory [axolotl]=axolotl [litgpt]=litgpt [ms-swift]=swift [torchtune]=torchtune [datasets3]=datasets)

installer="${GOLDFISH_TRAINERS_INSTALLER:-uv}"
case "$installer" in
  uv)
    if python -m uv --version >/dev/null 2>&1; then
      uv=(python -m uv)
    elif command -v uv >/dev/null; then
      uv=(uv)
    else
      echo "trainers: uv is not installed (pip install -e '.[test]' installs it): installing with pip instead, several times slower" >&2
      installer=pip
    fi
    ;;
  pip) ;;
  *) echo "trainers: GOLDFISH_TRAINERS_INSTALLER=$installer: expected uv or pip" >&2; exit 2 ;;
esac

# uv reads none of pip's configuration, so it would neither see a local CPU wheel (pip's find-links) nor the
# machine's constraints: pip itself is asked which file it would install for torch==2.13.0 (nothing is
# installed), and uv installs that file, so both installers give the venvs the same torch.
torch_url=""
resolve_torch() {
  [ -n "$torch_url" ] && return
  torch_url="$(python -m pip install -q --dry-run --ignore-installed --no-deps --report - torch==2.13.0 \
    | python -c 'import json, sys; print(json.load(sys.stdin)["install"][0]["download_info"]["url"])')"
  echo "trainers: torch==2.13.0 is $torch_url"
}

# Run pip or uv's pip interface against venv $1.
venv_pip() {
  local venv="$1"
  shift
  if [ "$installer" = uv ]; then
    "${uv[@]}" pip "$@" --python "$venv/bin/python"
  else
    "$venv/bin/pip" "$@"
  fi
}

# PyPI's torchvision and torchaudio wheels are built against PyPI's CUDA torch of their own release; with the
# CPU torch 2.13.0 their operators fail to load ("operator torchvision::nms does not exist", "Could not load
# _torchaudio.so"), and importing them breaks `import transformers.LlamaConfig`. Text training needs neither:
# they are uninstalled, and torchaudio (which LLaMA-Factory imports at the top of its multimodal plugin) is
# replaced by a stub whose every attribute raises. transformers sees no dist-info, so it treats both as absent.
stub_vision_audio() {
  local venv="$1" site
  venv_pip "$venv" uninstall -q torchvision torchaudio 2>/dev/null </dev/null || true
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  mkdir -p "$site/torchaudio"
  cat >"$site/torchaudio/__init__.py" <<'STUB'
"""Stub of goldfish-prep's tests/trainers/setup.sh: PyPI's torchaudio cannot load with CPU torch 2.13.0."""


def __getattr__(name):
    raise ImportError(f"torchaudio.{name}: torchaudio is a stub in this venv (tests/trainers/setup.sh); audio is not supported")
STUB
}

# Make venv $1 from nothing; the caller has checked that it is missing or stale.
make_venv() {
  local name="$1" venv="$root/$1" start
  start=$(date +%s)
  rm -rf "$venv"
  if [ "$installer" = uv ]; then
    "${uv[@]}" venv -q --python "$(python -c 'import sys; print(sys.executable)')" "$venv"
  else
    python -m venv "$venv"
  fi
  if [ "$name" = datasets3 ]; then  # the hf export's reader check: datasets 3.x alone, no torch
    # shellcheck disable=SC2086
    venv_pip "$venv" install -q ${reqs[$name]}
  else
    if [ "$installer" = uv ]; then  # one resolution: a trainer that needs another torch fails it here
      # shellcheck disable=SC2086
      venv_pip "$venv" install -q "torch @ $torch_url" ${reqs[$name]}
    else
      # shellcheck disable=SC2086
      venv_pip "$venv" install -q torch==2.13.0 ${reqs[$name]}
    fi
    stub_vision_audio "$venv"
    # the CPU build, and no CUDA libraries pulled in beside it
    if ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__ != '2.13.0+cpu')"; then
      echo "trainers: $name has torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)'), not 2.13.0+cpu" >&2
      exit 1
    fi
    if "$venv/bin/python" -c 'import importlib.metadata as m; print("\n".join(d.metadata["Name"] for d in m.distributions()))' \
      | grep -qiE '^nvidia-(cu|cudnn|nccl|nvjitlink)'; then
      echo "trainers: $name pulled CUDA packages: pin them out in tests/trainers/setup.sh" >&2
      exit 1
    fi
  fi
  "$venv/bin/python" -c "import ${probe[$name]}"
  echo "$installer: ${reqs[$name]}" >"$venv/.goldfish-requirements"
  echo "trainers: $name installed by $installer in $(( $(date +%s) - start )) s"
}

# Azurite, Microsoft's Azure Blob server, for tests/test_azure_urls.py (tests/azure_server.py): an npm package,
# installed into $root/azurite beside the venvs, so a later run reuses it; `setup.sh azurite` installs it alone.
# 3.37.0 declares node >= 22 but its blob server runs on the node 20 of these machines (npm only warns).
azurite_version=3.37.0
install_azurite() {
  local dir="$root/azurite" start
  if [ "$(node -p "require('$dir/node_modules/azurite/package.json').version" 2>/dev/null)" = "$azurite_version" ] \
    && [ -x "$dir/node_modules/.bin/azurite-blob" ]; then
    echo "azurite: $azurite_version ready in $dir"
    return
  fi
  if ! command -v npm >/dev/null; then
    echo "azurite: npm is not installed (apt-get install npm): the Azure tests skip without Azurite" >&2
    if [ "${GOLDFISH_TRAINERS_REQUIRED:-}" = 1 ]; then exit 1; fi
    return
  fi
  start=$(date +%s)
  rm -rf "$dir"
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "azurite@$azurite_version"
  "$dir/node_modules/.bin/azurite-blob" --version >/dev/null
  echo "azurite: $azurite_version installed in $dir in $(( $(date +%s) - start )) s"
}

names=()
azurite=0
for name in "$@"; do
  if [ "$name" = azurite ]; then azurite=1; else names+=("$name"); fi
done
# default: the trainers CI runs (tests/trainers/ci-trainers.txt) and Azurite; any name of reqs above may be given
if [ $# -eq 0 ]; then
  mapfile -t names < <(grep -v '^#' tests/trainers/ci-trainers.txt | grep .)
  azurite=1
fi
if [ "$azurite" = 1 ]; then
  install_azurite
fi
total=$(date +%s)
todo=()
for name in "${names[@]}"; do
  [ -n "${reqs[$name]:-}" ] || { echo "trainers: no trainer named $name (known: ${!reqs[*]})" >&2; exit 2; }
  venv="$root/$name"
  stamp="$venv/.goldfish-requirements"  # a venv made for other pins, or by the other installer, is made again
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$installer: ${reqs[$name]}" ] \
    && "$venv/bin/python" -c "import ${probe[$name]}" 2>/dev/null; then
    echo "trainers: $name ready in $venv"
  else
    todo+=("$name")
  fi
done
if [ "$installer" = uv ]; then  # once, before the venvs that need it are made
  for name in "${todo[@]}"; do
    [ "$name" = datasets3 ] || { resolve_torch; break; }
  done
fi

if [ "$installer" = uv ] && [ ${#todo[@]} -gt 1 ]; then
  # all at once: one venv's downloads overlap another's unpacking (uv's cache is safe to share); each one's
  # output is shown when it ends, and any failure fails the script after all have ended
  declare -A pids=()
  for name in "${todo[@]}"; do
    make_venv "$name" >"$root/$name.log" 2>&1 &
    pids[$name]=$!
  done
  failed=()
  for name in "${todo[@]}"; do
    wait "${pids[$name]}" || failed+=("$name")
    cat "$root/$name.log"
    rm -f "$root/$name.log"
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "trainers: failed: ${failed[*]} (their output is above)" >&2
    exit 1
  fi
else
  for name in "${todo[@]}"; do
    make_venv "$name"
  done
fi
echo "trainers: ${#names[@]} venv(s) ready in $(( $(date +%s) - total )) s"
