"""What each anti-overfitting remedy costs per training step: forward, the run's loss (slr_fast.train.remedies)
and backward of the `tiny` model with one remedy on, beside the same step with all of them off, group "remedies".

Per case `benchmark.extra_info` holds `vs_off` (the step time with the remedy over the step time without any,
both timed in interleaved rounds of the same test, so they see the same load) and `best_ms`. On CPU the timer is
the process's CPU time on one torch thread (benchmarks/test_model.py says why). Expected: the curriculum and the
margin loss cost nothing measurable, the consistency loss a few per cent (per-part pooling and heads), the
distillation one teacher forward pass per step (no backward).
With timing disabled (CI) every case runs one step and checks its loss is finite and has its component.

Run: .venv/bin/python -m pytest benchmarks/test_remedies_cost.py --benchmark-enable --benchmark-only -s
"""

from __future__ import annotations

import time

import pytest
import torch
from _threads import one_torch_thread_on_cpu

from slr_fast.model import ModelConfig, SignModel
from slr_fast.train.config import LossConfig, TrainConfig
from slr_fast.train.ema import EMA
from slr_fast.train.remedies import Remedies

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
K, B, T = 100, 32, 32  # the study's scale: 100 classes, batch 32
CASES = {
    "curriculum": (dict(focal_schedule="cosine", focal_gamma=2.0), "loss_main"),
    "margin": (dict(margin_weight=0.2), "loss_margin"),
    "distill_ema": (dict(distill_weight=0.5), "loss_distill"),
    "consistency": (dict(consistency_weight=0.1), "loss_consistency"),
}
TIMER = time.perf_counter if CUDA else time.process_time


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    with one_torch_thread_on_cpu():
        yield


def _step(loss_kw: dict, part_heads: bool):
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny", num_classes=K, part_heads=part_heads)
    model = SignModel(cfg).to(DEVICE).train()
    ema = EMA(model, 0.99)
    classes = [f"sign_{i:03d}" for i in range(K)]
    run = TrainConfig(loss=LossConfig(**loss_kw), ema_decay=0.99)
    remedies = Remedies(run, model, ema, classes, 1000, 100, DEVICE)
    if remedies.confusion is not None:  # a matrix as after some epochs: every class has its rivals
        remedies.confusion += torch.rand(K, K, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, cfg.num_points, cfg.channels, generator=g).to(DEVICE)
    mask = (torch.rand(B, T, cfg.num_points, generator=g) > 0.1).float().to(DEVICE)
    length = torch.full((B,), T, device=DEVICE)
    label = torch.randint(0, K, (B,), generator=g).to(DEVICE)

    def step():
        out = model(x, mask, length)
        loss, parts = remedies.loss(out, x, mask, length, label, 500)
        model.zero_grad(set_to_none=True)
        loss.backward()
        if CUDA:
            torch.cuda.synchronize()
        return loss.detach(), parts

    return step


@pytest.mark.parametrize("case", list(CASES))
def test_remedy_step_cost(benchmark, case: str) -> None:
    kw, component = CASES[case]
    step, off = _step(kw, case == "consistency"), _step({}, False)
    benchmark.group = "remedies"
    rounds, warmup = (1, 0) if benchmark.disabled else (10, 2)
    loss, parts = benchmark.pedantic(step, rounds=rounds, warmup_rounds=warmup)
    assert torch.isfinite(loss) and component in parts
    if not benchmark.disabled:
        best = dict.fromkeys(("this", "off"), float("inf"))
        for i in range(12):
            pair = (("this", step), ("off", off))
            for name, run in pair if i % 2 else pair[::-1]:  # alternating order: neither always runs first
                t0 = TIMER()
                run()
                best[name] = min(best[name], TIMER() - t0)
        info = {"best_ms": round(best["this"] * 1e3, 2), "vs_off": round(best["this"] / best["off"], 3),
                "timer": TIMER.__name__, "batch": B, "frames": T, "classes": K}
        benchmark.extra_info.update(info)
        print(f"\n{case:<12} {info['best_ms']:8.1f} ms/step  x{info['vs_off']:.2f} of the step without remedies")
