#!/usr/bin/env bash
# The GPU verification in one command (issue 15): environment, kernel and model tests on CUDA, triton-vs-native
# training parity, copy/matmul ceilings, kernel timings against eager torch, native and torch.compile, `base`
# training samples/s and a Slovo-shape epoch. Results: OUT_DIR/gpu-results.json, gpu-results.md, gpu-check.log.
# The work is benchmarks/gpu_check.py (its docstring lists the steps); this script installs what the GPU machine
# lacks and calls it. Every session that finds a GPU lent runs this first (DEVELOPERS.md).
#
# On the GPU machine (device tool), after fetching the wheels here once with ../shared/device/wheels.sh (.whl/):
#   run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=510)
# The run holds itself to 480 s (8 min; --budget), steps in order env, tests, ceilings, parity, kernels, e2e, cli,
# each time-boxed (cli, the least needed, only if time is left); with a minute or two of machine start that leaves
# ~5 of the 15 device minutes for one rerun of what was cut or failed, at once while the machine is warm (30 s), e.g.
#   run(command="bash scripts/gpu_check.sh --steps kernels,e2e --budget 210", carry=[".whl"], timeout_s=240)
# then give_back. The results come back under the call's files_at; commit the md and json to benchmarks/results/.
#
# Rehearsal on CPU (every step at toy size, Triton interpreted; tests/test_gpu_check.py runs it):
#   scripts/gpu_check.sh /tmp/gpu-check-dry --dry-run
#
# usage: scripts/gpu_check.sh [OUT_DIR] [--dry-run] [--steps env,tests,ceilings,parity,kernels,e2e,cli]
#        [--budget S]
set -uo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-}"
if [[ $# -gt 0 && $1 != --* ]]; then
  out=$1
  shift
fi
dry=0
for arg in "$@"; do [[ $arg == --dry-run ]] && dry=1; done

if ((dry)); then
  py=${PYTHON:-.venv/bin/python}
  [[ -x $py ]] || py=python3
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  out=${out:-$(mktemp -d /tmp/gpu-check-dry.XXXXXX)}
else
  # The GPU image has torch, triton, numba, pytest but no zarr: the carried wheels go to /tmp/site.
  py=${PYTHON:-python3}
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || echo "gpu_check: installing .whl/ failed: the steps that read a store will fail" >&2
  else
    echo "gpu_check: no .whl/ (run ../shared/device/wheels.sh here and carry .whl): no zarr, store steps will fail" >&2
  fi
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if [[ -z $out ]]; then
  echo "gpu_check: give OUT_DIR or set OUT" >&2
  exit 2
fi
exec "$py" benchmarks/gpu_check.py --out "$out" "$@"
