"""Model throughput: samples/s of the `tiny` and `base` presets, forward (inference) and forward+backward (a training
step without the optimizer), for every KernelConfig the device runs, side by side in group "model".

Per case, `benchmark.extra_info` holds `samples_per_s` (batch size over the best time; on CPU the best *CPU time* of
the one timing thread, so a loaded shared machine does not distort it; pytest-benchmark's own table is wall-clock
and can be switched with --benchmark-timer time.process_time), `speedup_vs_torch` (the
all-`torch` reference model's best time over this one's, both timed in interleaved rounds of the same test so they
see the same load), `best_ms`, the batch shape, the parameter count and, on CUDA, `peak_mem_mb` (peak allocated
memory of one step, weights included).

Configurations: on CPU `torch` and `native` (fp32, timed single-threaded so figures from a shared machine are
reproducible; the Triton interpreter is a correctness tool and Inductor's CPU compile takes minutes). On CUDA also
`triton`, and `native+compile` / `triton+compile` (torch.compile of the whole model, compiled before timing), under
bf16 autocast as training runs. Batches: tiny B=64 x T=64 (the demo); base B=32 x T=64 on CUDA (the P100 batch),
B=4 on CPU so CI's untimed run stays quick. Synthetic loader-style input: 5% of points missing and a third of the
frames without hands. With timing disabled (CI: --benchmark-disable) every case runs once and checks its logits
against the reference model's.

Run: .venv/bin/python -m pytest benchmarks/test_model.py --benchmark-enable --benchmark-only -s
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest
import torch
from _threads import one_torch_thread_on_cpu

from kernels.registry import KernelConfig
from slr_fast.layout import DEFAULT_LAYOUT
from slr_fast.model import ModelConfig, SignModel

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
NUM_CLASSES = 1001  # the largest label set the seed trained (Slovo + "no event")
T = 64
BATCH = {"tiny": 64, "base": 32 if CUDA else 4}
MODES = ("fwd", "fwd_bwd")
CONFIGS = ("torch", "native", "triton", "native+compile", "triton+compile")


def _runs_here(config: str) -> tuple[bool, str]:
    if CUDA:
        if "triton" in config and torch.cuda.get_device_capability() < (7, 0):
            return False, "Triton does not support compute capability < 7.0 (this GPU takes the PyTorch path)"
        return True, ""
    if "triton" in config:
        return False, "Triton timings need a CUDA GPU (the CPU interpreter is for correctness only)"
    if "compile" in config:
        return False, "torch.compile of the model takes minutes on 2 CPU cores; compiled timings are GPU-only here"
    return True, ""


def _batch(B: int) -> dict:
    g = torch.Generator().manual_seed(0)
    P, C = DEFAULT_LAYOUT.num_points, DEFAULT_LAYOUT.num_channels
    mask = (torch.rand(B, T, P, generator=g) > 0.05).float()
    hands = list(range(40, 82))  # left and right hand in the default layout
    no_hands = torch.rand(B, T, generator=g) < 1 / 3
    mask[:, :, hands] *= (~no_hands).float().unsqueeze(-1)
    x = torch.rand(B, T, P, C, generator=g) * mask.unsqueeze(-1)
    label = torch.randint(0, NUM_CLASSES, (B,), generator=g)
    length = torch.full((B,), T, dtype=torch.int32)  # resampled to T, as the loader does by default
    return {k: v.to(DEVICE) for k, v in dict(x=x, mask=mask, length=length, label=label).items()}


def _model(preset: str, config: str) -> tuple[SignModel, Callable]:
    """The model with this config's kernels (same seed, same weights for every config) and the callable to time."""
    backend, _, compiled = config.partition("+")
    torch.manual_seed(0)
    cfg = ModelConfig.preset(preset, num_classes=NUM_CLASSES, layout=DEFAULT_LAYOUT)
    model = SignModel(cfg, kernels=KernelConfig.parse(backend)).to(DEVICE)
    return model, (torch.compile(model) if compiled else model)


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def _step(model: SignModel, run: Callable, batch: dict, mode: str) -> Callable[[], torch.Tensor]:
    """One inference forward (eval, no grad) or one training forward+backward (train mode, main + aux losses)."""
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if CUDA else contextlib.nullcontext()

    def fwd():
        model.eval()
        with torch.no_grad(), autocast:
            out = run(batch["x"], batch["mask"], batch["length"]).logits
        _sync()
        return out

    def fwd_bwd():
        model.train()
        with autocast:
            out = run(batch["x"], batch["mask"], batch["length"])
            loss = torch.nn.functional.cross_entropy(out.logits.float(), batch["label"])
            loss = loss + 0.3 * sum(torch.nn.functional.cross_entropy(a.float(), batch["label"])
                                    for a in out.aux_logits)
        model.zero_grad(set_to_none=True)
        loss.backward()
        _sync()
        return out.logits.detach()

    return fwd if mode == "fwd" else fwd_bwd


# CPU: the process's CPU time (one thread, see _one_cpu_thread), which a shared machine's load does not inflate;
# wall-clock time there measured the other tenants. CUDA: wall-clock time around a synchronized step.
TIMER = time.perf_counter if CUDA else time.process_time


def _best_times(runs: dict[str, Callable], rounds: int = 5) -> dict[str, float]:
    """Best seconds per call of each callable, timed in interleaved rounds (so all see the same load)."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = TIMER()
            run()
            best[name] = min(best[name], TIMER() - t0)
    return best


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    with one_torch_thread_on_cpu():
        yield


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("preset", ["tiny", "base"])
def test_model(benchmark, preset: str, config: str, mode: str) -> None:
    """One preset x KernelConfig x mode; extra_info carries samples/s, the ratio to the torch model, peak memory."""
    ok, reason = _runs_here(config)
    if not ok:
        pytest.skip(reason)
    B = BATCH[preset]
    batch = _batch(B)
    model, run = _model(preset, config)
    step = _step(model, run, batch, mode)
    if "compile" in config:
        step()  # compile the graphs now, untimed
    if CUDA:
        torch.cuda.reset_peak_memory_stats()

    benchmark.group = "model"
    rounds, warmup = (1, 0) if benchmark.disabled else (10, 2)
    logits = benchmark.pedantic(step, rounds=rounds, warmup_rounds=warmup)

    # The timed model computes the reference model's logits (same weights; fwd in eval mode is deterministic).
    ref_model, _ = _model(preset, "torch")
    want = _step(ref_model, ref_model, batch, "fwd")()
    got = step() if mode == "fwd" else _step(model, run, batch, "fwd")()
    tol = dict(atol=5e-2, rtol=5e-2) if CUDA else dict(atol=1e-4, rtol=1e-4)  # bf16 autocast on CUDA
    torch.testing.assert_close(got.float(), want.float(), **tol)
    assert logits.shape == (B, NUM_CLASSES)

    info = {"preset": preset, "kernels": config, "mode": mode, "batch": B, "frames": T,
            "parameters": model.num_parameters(), "device": torch.cuda.get_device_name() if CUDA else "cpu"}
    if CUDA:
        info["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if not benchmark.disabled:
        info["timer"] = TIMER.__name__
        best = _best_times({"this": step, "torch": _step(ref_model, ref_model, batch, mode)})
        info["samples_per_s"] = round(B / best["this"], 1)
        info["speedup_vs_torch"] = round(best["torch"] / best["this"], 3)
        info["best_ms"] = round(best["this"] * 1e3, 3)
        print(f"\n{preset:>5} {config:<15} {mode:<7} {best['this'] * 1e3:9.2f} ms  {info['samples_per_s']:9.1f} "
              f"samples/s  x{info['speedup_vs_torch']:.2f} vs torch"
              + (f"  peak {info['peak_mem_mb']:.0f} MB" if CUDA else ""))
    benchmark.extra_info.update(info)
