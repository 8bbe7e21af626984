"""torch.compile on the torch and native backends: the whole forward is one graph (no breaks) and computes what
eager mode computes, forward and backward."""

from __future__ import annotations

import os

import pytest
import torch
from model_testing import LOGIT_TOL, assert_grads_close, make_batch, tiny_config

from kernels.registry import KernelConfig
from slr_fast.model import SignModel

# Dynamo traces through the registry's cached get_op on the first compiled call (the ops are bound per device then);
# it warns that it bypasses the cache, which is harmless here: get_op is a pure lookup.
pytestmark = pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")


def loss_and_grads(run, model, batch):
    """Logits of `run` (the model or its compiled wrapper) and the gradients it leaves on `model`'s parameters."""
    model.zero_grad()
    out = run(batch["x"], batch["mask"], batch["length"])
    loss = out.logits.logsumexp(-1).sum() + sum(a.logsumexp(-1).sum() for a in out.aux_logits)
    loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_compiled_model_is_one_graph_and_matches_eager(backend):
    # aot_eager runs Dynamo's capture and AOTAutograd's joint graph (where custom code breaks) without Inductor's
    # C++ code generation, which takes minutes on 2 CPU cores; see the slow test below for Inductor itself.
    torch._dynamo.reset()
    model = SignModel(tiny_config(), kernels=KernelConfig.parse(backend)).train()
    batch = make_batch(B=2, T=12, lengths=[12, 7])
    want_logits, want_grads = loss_and_grads(model, model, batch)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)  # fullgraph: a graph break is an error
    logits, grads = loss_and_grads(compiled, model, batch)
    torch.testing.assert_close(logits, want_logits, **LOGIT_TOL)
    assert_grads_close(grads, want_grads, f"compiled {backend}")


def test_layerdrop_training_compiles_without_graph_breaks():
    torch._dynamo.reset()
    model = SignModel(tiny_config(layerdrop=0.5), kernels=KernelConfig.parse("native")).train()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    batch = make_batch(B=2, T=8)
    outs = [compiled(batch["x"], batch["mask"], batch["length"]).logits for _ in range(6)]
    assert all(torch.isfinite(o).all() for o in outs)
    assert len({tuple(o.flatten().tolist()) for o in outs}) > 1  # blocks really dropped at random


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available() and os.environ.get("SLR_FAST_INDUCTOR_CPU") != "1",
                    reason="Inductor's C++ code generation for the model takes ~2 min per backend on 2 CPU cores; "
                           "set SLR_FAST_INDUCTOR_CPU=1 to run it on CPU (always runs on CUDA)")
@pytest.mark.parametrize("backend", ["torch", "native"])
def test_inductor_matches_eager(backend):
    torch._dynamo.reset()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SignModel(tiny_config(), kernels=KernelConfig.parse(backend)).to(device).train()
    batch = {k: v.to(device) for k, v in make_batch(B=2, T=12, lengths=[12, 7]).items()}
    want_logits, want_grads = loss_and_grads(model, model, batch)
    logits, grads = loss_and_grads(torch.compile(model, fullgraph=True), model, batch)
    # Inductor fuses and reorders fp32 arithmetic (and may use TF32 on CUDA): a looser bound than the backends'.
    torch.testing.assert_close(logits, want_logits, atol=1e-4, rtol=1e-3)
    for name, g in want_grads.items():
        torch.testing.assert_close(grads[name], g, atol=1e-4 * float(g.abs().max()) + 1e-8, rtol=1e-3,
                                   msg=lambda m, n=name: f"inductor {backend} grad {n}: {m}")
