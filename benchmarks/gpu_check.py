"""The GPU verification in one run (scripts/gpu_check.sh calls this): environment, correctness, ceilings, kernels,
training speed, written to gpu-results.json and gpu-results.md.

Steps, each in a child process of its own with a time box, so a hang or a crash (a CUDA error poisons its process)
is recorded and the next step still runs; the results files are rewritten after every step, so a run killed from
outside still leaves what it measured:

- env       GPU, driver, CUDA, torch, triton, numba, zarr versions
- prepare   (in the background from the start) the two synthetic stores and the engine's Numba cache
- tests     tests/kernels and tests/model on CUDA (fp32, fp16, bf16), counted by outcome and dtype
- ceilings  device-to-device copy bandwidth, a bf16 8192³ matrix product
- parity    one epoch with --kernels triton and --kernels native, same weights and seed: loss curves within
            PARITY_TOL
- kernels   RMSNorm (+residual), SwiGLU, RoPE attention fwd and fwd+bwd at the model's shapes: triton, native,
            eager torch, torch.compile of the reference; GB/s, fraction of copy bandwidth; a short tile sweep
- e2e       one Slovo-shape epoch; `base` training samples/s (triton, native, torch, native+compile; bf16)
- cli       the parity pair through `slr-fast train --epochs 1` (run last: only when the budget leaves time)

`--dry-run` runs every step at toy size on CPU (Triton under TRITON_INTERPRET=1): the rehearsal CI runs
(tests/test_gpu_check.py). Timings there mean nothing.

usage: python benchmarks/gpu_check.py [--out DIR] [--dry-run] [--steps env,tests,...] [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEPS = ("env", "tests", "ceilings", "parity", "kernels", "e2e", "cli")
# Seconds each step may take on the GPU machine; the run as a whole is held to --budget (the steps late in the
# order get what is left: `cli`, the least needed, runs only when the others left it time). The dry run on a shared
# 2-core machine gets its own, longer boxes.
BOXES = {"env": 30, "prepare": 300, "tests": 100, "ceilings": 25, "parity": 50, "kernels": 110, "e2e": 160, "cli": 90}
DRY_BOXES = {"env": 120, "prepare": 300, "tests": 300, "ceilings": 120, "parity": 400, "kernels": 400, "e2e": 400,
             "cli": 300}
NEEDS_PREPARE = {"parity", "e2e", "cli"}
DEFAULT_BUDGET_S = 480
REPORT_RESERVE_S = 5


def _child_env(dry: bool) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(ROOT)) if p)
    if dry:
        env["TRITON_INTERPRET"] = "1"  # before anything imports triton: the kernels run in the interpreter
    else:
        env.pop("TRITON_INTERPRET", None)
    return env


def _start(step: str, work: Path, dry: bool, box: float) -> subprocess.Popen:
    log = open(work / f"{step}.log", "w")  # noqa: SIM115  (the child owns it; closed when the child is reaped)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--step", step, "--work", str(work)] + (["--dry-run"] * dry)
    env = dict(_child_env(dry), GPU_CHECK_DEADLINE=str(time.time() + box))  # a step may skip what would not fit
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _finish(proc: subprocess.Popen, step: str, work: Path, timeout: float, t0: float) -> dict:
    """Wait for a step's process up to `timeout` s (killing its whole process group past it); its record."""
    try:
        rc = proc.wait(timeout=max(timeout, 0.1))
        status = "ok" if rc == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # pytest-xdist workers, loader threads' processes: the whole group
        rc = proc.wait()
        status = "timeout"
    record = {"status": status, "returncode": rc, "wall_s": round(time.perf_counter() - t0, 1)}
    result = work / f"{step}.json"
    if result.exists():
        record["result"] = json.loads(result.read_text())["result"]
    if status != "ok":
        record["log_tail"] = (work / f"{step}.log").read_text(errors="replace")[-3000:]
    return record


def run_all(out: Path, work: Path, steps: list[str], budget: float, dry: bool, command: str) -> dict:
    """Every step in order, prepare in the background; results rewritten under `out` after each."""
    boxes = DRY_BOXES if dry else BOXES
    deadline = time.perf_counter() + budget - REPORT_RESERVE_S
    results = {"command": command, "dry_run": dry, "budget_s": budget, "steps": {},
               "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    prepare = None
    if NEEDS_PREPARE & set(steps):
        prepare = (_start("prepare", work, dry, boxes["prepare"]), time.perf_counter())
    for step in steps:
        if step in NEEDS_PREPARE and prepare is not None and "prepare" not in results["steps"]:
            proc, t0 = prepare
            results["steps"]["prepare"] = _finish(proc, "prepare", work,
                                                  min(t0 + boxes["prepare"], deadline) - time.perf_counter(), t0)
        left = deadline - time.perf_counter()
        if left < 5:
            results["steps"][step] = {"status": "skipped", "reason": f"the run's budget of {budget:.0f} s was spent"}
        else:
            t0, box = time.perf_counter(), min(boxes[step], left)
            print(f"[gpu_check] {step} (at most {box:.0f} s)", flush=True)
            results["steps"][step] = _finish(_start(step, work, dry, box), step, work, box, t0)
        print(f"[gpu_check] {step}: {results['steps'][step]['status']}", flush=True)
        _write(out, work, results)
    if prepare is not None and "prepare" not in results["steps"]:
        os.killpg(prepare[0].pid, signal.SIGKILL)
        results["steps"]["prepare"] = _finish(prepare[0], "prepare", work, 0.1, prepare[1])
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    _write(out, work, results)
    return results


def _write(out: Path, work: Path, results: dict) -> None:
    from _gpu_check_report import render

    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "gpu-results.md").write_text(render(results))
    with open(out / "gpu-check.log", "w") as log:  # every step's output, one file (what comes back is counted)
        for step in ("prepare", *STEPS):
            path = work / f"{step}.log"
            if path.exists():
                log.write(f"\n===== {step} =====\n{path.read_text(errors='replace')[-200_000:]}")


def run_step(step: str, work: Path, dry: bool) -> None:
    """One step in this process; its result to work/<step>.json (absent if it raised: the log has the traceback)."""
    sys.path.insert(0, str(HERE))
    import _gpu_check_steps as S

    sizes = S.Sizes.dry() if dry else S.Sizes.gpu()
    if step in ("parity", "e2e", "cli"):
        import _gpu_check_train as T

        fn = getattr(T, f"step_{step}")
    else:
        fn = getattr(S, f"step_{step}")
    t0 = time.perf_counter()
    result = fn(sizes, work)
    result["step_s"] = round(time.perf_counter() - t0, 1)
    (work / f"{step}.json").write_text(json.dumps({"result": result}, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="folder for gpu-results.json/.md and gpu-check.log (default: $OUT)")
    parser.add_argument("--dry-run", action="store_true", help="every step at toy size on CPU (Triton interpreted)")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--budget", type=float,
                        help=f"seconds for the whole run (default {DEFAULT_BUDGET_S} on a GPU, 1800 dry)")
    parser.add_argument("--work", help="scratch folder for stores and step records (default: a new temp folder)")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step in this process
    args = parser.parse_args(argv)
    if args.step:
        run_step(args.step, Path(args.work), args.dry_run)
        return 0
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; valid: {', '.join(STEPS)}")
    out = args.out or os.environ.get("OUT")
    if not out:
        parser.error("give --out DIR (or set OUT)")
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    budget = args.budget or (1800.0 if args.dry_run else float(DEFAULT_BUDGET_S))
    command = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    results = run_all(Path(out), work, steps, budget, args.dry_run, command)
    print(Path(out, "gpu-results.md").read_text()[:8000])  # steps and targets first: what a reply's tail shows
    return 0 if all(r["status"] == "ok" for r in results["steps"].values()) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
