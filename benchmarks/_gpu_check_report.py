"""gpu-results.md from the results of benchmarks/gpu_check.py: every figure, and the issue's targets met or not."""

from __future__ import annotations

from _gpu_check_steps import TARGETS


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row)
              + " |" for row in rows]
    return lines + [""]


def _result(results: dict, step: str) -> dict:
    return results["steps"].get(step, {}).get("result") or {}


def targets(results: dict) -> list[list]:
    """[target, measured, met] rows; met is "yes", "no", or "not measured"."""
    rows = []
    kernels = _result(results, "kernels").get("rows", [])
    largest = {}
    for r in kernels:  # the compile baseline runs at the largest shape only: that is where targets are judged
        if r["backend"] == "triton" and r["mode"] == "fwd_bwd" and "vs_compile" in r:
            largest[(r["op"], r["shape"])] = r
    for op in ("rmsnorm", "residual_rmsnorm", "swiglu_packed"):
        got = [r for (o, _), r in largest.items() if o == op]
        for r in got:
            frac, comp = r.get("copy_fraction"), r.get("vs_compile")
            ok = frac >= TARGETS["norm_copy_fraction"] and comp >= TARGETS["norm_vs_compile"]
            rows.append([f"{op} fwd+bwd {r['shape']}: ≥ {TARGETS['norm_copy_fraction']:.0%} of copy bandwidth and "
                         f"≥ {TARGETS['norm_vs_compile']}× torch.compile", f"{frac:.0%}, {comp:.2f}×",
                         "yes" if ok else "no"])
        if not got:
            rows.append([f"{op} fwd+bwd: ≥ 80 % of copy bandwidth and ≥ 1.0× torch.compile", "", "not measured"])
    attn = [r for r in kernels if r["op"] == "attention" and r["backend"] == "triton" and r["mode"] == "fwd_bwd"]
    for r in attn:
        v = r.get("vs_native")
        rows.append([f"RoPE attention fwd+bwd {r['shape']}: ≥ {TARGETS['attention_vs_native']}× RoPE + SDPA (native)",
                     f"{v:.2f}×" if v else "", "yes" if v and v >= TARGETS["attention_vs_native"] else "no"])
    if not attn:
        rows.append(["RoPE attention fwd+bwd: ≥ 1.2× RoPE + SDPA (native)", "", "not measured"])
    train = _result(results, "e2e").get("train", {})
    t = train.get("triton", {})
    for base, key, goal in (("native", "vs_native", "train_vs_eager"), ("native+compile", "vs_native+compile",
                                                                         "train_vs_compile")):
        v = t.get(key)
        rows.append([f"base training, triton ≥ {TARGETS[goal]}× {base} (samples/s, bf16)",
                     f"{v:.2f}×" if v else "", "not measured" if v is None else "yes" if v >= TARGETS[goal] else "no"])
    epoch = _result(results, "e2e").get("epoch", {})
    s = epoch.get("seconds")
    rows.append([f"Slovo-shape epoch (15,015 sequences, 1,001 classes, batch 256) ≤ {TARGETS['slovo_epoch_s']} s",
                 f"{s} s" if s is not None else "",
                 "not measured" if s is None else "yes" if s <= TARGETS["slovo_epoch_s"] else "no"])
    return rows


def render(results: dict) -> str:
    """The whole report as Markdown."""
    env = _result(results, "env")
    lines = ["# GPU check" + (" (dry run: toy sizes on CPU, timings meaningless)" if results["dry_run"] else ""), "",
             f"- device: {env.get('device') or 'cpu (no CUDA)'}; nvidia-smi: "
             f"{env.get('nvidia_smi')}",
             f"- versions: python {env.get('python')}, torch {env.get('torch')} (CUDA {env.get('cuda')}), "
             f"triton {env.get('triton')}, numba {env.get('numba')}, numpy {env.get('numpy')}, zarr {env.get('zarr')}",
             f"- date: {results.get('started')} to {results.get('finished', '(unfinished)')}",
             f"- command: `{results['command']}` (budget {results['budget_s']:.0f} s)", ""]
    lines += ["## Steps", ""] + _table(["step", "status", "wall s", "note"], [
        [k, v["status"], v.get("wall_s"), v.get("reason") or ("partial figures" if (v.get("result") or {}).get(
            "partial") else "")] for k, v in results["steps"].items()])
    lines += ["## Targets", ""] + _table(["target", "measured", "met"], targets(results))

    tests = _result(results, "tests")
    if tests:
        lines += ["## Correctness", "", f"`{tests.get('command')}`: {tests.get('summary')}", ""]
        lines += _table(["group", "passed", "failed", "skipped"],
                        [[g, c["passed"], c["failed"], c["skipped"]] for g, c in sorted(tests["counts"].items())])
        lines += [f"- FAILED {f}" for f in tests.get("failures", [])] + [""]
    parity = _result(results, "parity")
    if parity.get("skipped"):
        lines += ["### Training parity: --kernels triton vs native", "", f"Skipped: {parity['skipped']}.", ""]
    elif parity:
        tol = parity["tolerance"]
        lines += ["### Training parity: --kernels triton vs native", "",
                  f"{parity['steps']} steps of batch {parity['batch']} ({parity['sequences']} sequences, "
                  f"{parity['precision']}): largest per-step relative loss difference {parity['step_rel_max']:.2e} "
                  f"(tolerance {tol['step_rel_max']}), epoch-mean {parity['mean_rel']:.2e} (tolerance "
                  f"{tol['mean_rel_max']}): **{'within' if parity['ok'] else 'OUTSIDE'} tolerance**.", ""]
        for name, c in parity["curves"].items():
            lines.append(f"- {name} ({c['seconds']} s): " + ", ".join(f"{v:.4f}" for v in c["losses"]))
    cli = _result(results, "cli")
    if cli:
        lines += ["", "`slr-fast train --epochs 1`: "
                  + "; ".join(f"{k}: exit {v.get('returncode')}, train_loss_aug {v.get('train_loss_aug')}, "
                              f"val_loss {v.get('val_loss')}, {v.get('seconds')} s"
                              for k, v in cli.items() if isinstance(v, dict))
                  + f"; relative train-loss difference {cli.get('train_loss_rel')}", ""]
    ceil = _result(results, "ceilings")
    if ceil:
        lines += ["## Ceilings", "", f"- copy: {ceil['copy_gb_per_s']} GB/s (read + write, {ceil['copy_bytes']} "
                  f"bytes, {ceil['copy_ms']} ms)", f"- matmul {ceil['matmul_n']}³ {ceil['matmul_dtype']}: "
                  f"{ceil['matmul_tflops']} TFLOP/s ({ceil['matmul_ms']} ms, rel. error {ceil['matmul_rel_err']:.1e})",
                  ""]
    kern = _result(results, "kernels")
    if kern:
        lines += ["## Kernels", "", f"{kern['dtype']}; rate = bytes the op must move (GB/s) or visible-pair FLOPs "
                  f"(TFLOP/s) over the median time; copy fraction against {kern['copy_gb_per_s']} GB/s.", ""]
        lines += _table(["op", "shape", "mode", "backend", "ms", "rate", "copy frac", "vs torch", "vs native",
                         "vs compile", "rel err"],
                        [[r["op"], r["shape"], r["mode"], r["backend"], r["ms"], f"{r['rate']} {r['unit']}",
                          r.get("copy_fraction"), r.get("vs_torch"), r.get("vs_native"), r.get("vs_compile"),
                          r["rel_err"]] for r in kern["rows"]])
        wrong = [r for r in kern["rows"] if not r["rel_err"] <= 5e-2]  # NaN fails too
        lines += [f"- **WRONG?** {r['op']} {r['shape']} {r['backend']}: relative error {r['rel_err']} against the "
                  "fp32 reference" for r in wrong] + ([""] if wrong else [])
        if kern.get("tile_sweep"):
            lines += ["### Tile sweep (Triton RMSNorm/SwiGLU, fwd+bwd, elements per program tile; 4096 is the "
                      "launchers' setting)", ""]
            lines += _table(["op", "shape", "tile budget", "ms"],
                            [[r["op"], r["shape"], r["tile_budget"], r["fwd_bwd_ms"]] for r in kern["tile_sweep"]])
        if kern.get("attention_autotune"):
            lines += ["### Attention autotuner's choices (key: T, D, window, dilation, dtypes)", ""]
            for name, chosen in kern["attention_autotune"].items():
                text = "; ".join(f"{k} → {v}" for k, v in chosen.items()) if isinstance(chosen, dict) else chosen
                lines.append(f"- {name}: {text or '(nothing tuned)'}")
            lines.append("")
        lines += [f"- compile baseline failed: {e}" for e in kern.get("compile_errors", [])]
    e2e = _result(results, "e2e")
    if e2e.get("preset"):
        lines += ["## End to end", "", f"`{e2e['preset']}` model, {e2e['classes']} classes, batch {e2e['batch']}, "
                  f"T={e2e['frames']}, {e2e['precision']}, store of {e2e['sequences']} sequences; the loader alone: "
                  f"{e2e['loader_samples_per_s']} samples/s.", ""]
        lines += _table(["kernels", "samples/s", "vs torch", "vs native", "vs native+compile", "warm-up s",
                         "loader wait"],
                        [[k, r["samples_per_s"], r.get("vs_torch"), r.get("vs_native"), r.get("vs_native+compile"),
                          r["warmup_s"], r["loader_wait_frac"]] for k, r in e2e["train"].items()])
        lines += [f"- {k} failed: {v}" for k, v in e2e.get("train_errors", {}).items()]
        ep = e2e.get("epoch") or {}
        if ep:
            lines += ["", f"Slovo-shape epoch ({ep['sequences']} sequences, batch {ep['batch']}, {ep['steps']} steps, "
                      f"automatic kernels): **{ep['seconds']} s** ({ep['samples_per_s']} samples/s, peak memory "
                      f"{ep['peak_mem_gib']} GiB).", ""]
    for step, rec in results["steps"].items():
        if rec["status"] not in ("ok", "skipped"):
            lines += [f"## {step}: {rec['status']} (exit {rec.get('returncode')})", "", "```",
                      rec.get("log_tail", "")[-2000:], "```", ""]
    return "\n".join(lines) + "\n"
