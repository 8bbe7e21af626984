"""Synthetic signer generation: sequences/s (arrays and into a store), and proof the data need a temporal model.

- `generate`: render sequences of the Slovo-shaped vocabulary (1001 classes x 20) to arrays, single process.
- `synth_store`: the default dataset streamed into a Zarr store (what `slr-fast synth` does).
- `separability`: on held-out signers, a ridge classifier on the NaN-aware mean frame against a small GRU trained for
  a few seconds on the same normalized frames (and, as a second witness, the same ridge on 3 time bins).

Timed runs (`--benchmark-enable`) use the full default dataset; under `--benchmark-disable` (CI) smaller ones, so the
suite stays fast while the assertions still hold.
"""

from __future__ import annotations

import numpy as np
import pytest

from slr_fast.synth import SynthConfig, generate, synth_store
from slr_fast.synth.probe import normalize_sequence, probe_accuracy


def _timed(request) -> bool:
    opt = request.config.getoption
    return bool(opt("benchmark_enable", default=False) or not opt("benchmark_disable", default=False))


@pytest.mark.benchmark(group="synth")
def test_generate_speed(benchmark, request):
    n = 1000 if _timed(request) else 60
    config = SynthConfig(classes=1001, per_class=20, signers=20)  # Slovo's shape; we render the first n

    def run():
        return sum(s.frames.shape[0] for s in generate(config, stop=n))

    frames = benchmark.pedantic(run, rounds=3 if _timed(request) else 1, iterations=1)
    best = benchmark.stats.stats.min if benchmark.stats else None
    if best:
        benchmark.extra_info.update(samples_per_s=n / best, frames_per_s=frames / best,
                                    slovo_20020_sequences_s=20020 / (n / best))
    benchmark.extra_info.update(sequences=n, frames=frames, vocabulary_classes=1001)
    assert frames > n * 3


@pytest.mark.benchmark(group="synth")
def test_synth_store_speed(benchmark, request, tmp_path):
    config = SynthConfig() if _timed(request) else SynthConfig(classes=6, per_class=8, signers=4)
    counter = iter(range(100))

    def run():
        return synth_store(tmp_path / f"s{next(counter)}.zarr", config, progress=False)

    store = benchmark.pedantic(run, rounds=2 if _timed(request) else 1, iterations=1)
    best = benchmark.stats.stats.min if benchmark.stats else None
    if best:
        benchmark.extra_info.update(samples_per_s=len(store) / best, frames_per_s=store.num_frames / best)
    benchmark.extra_info.update(sequences=len(store), frames=store.num_frames)
    assert len(store) == config.classes * config.per_class


def _gru_accuracy(seqs, labels, train, layout, num_classes, epochs: int, frames: int = 24) -> float:
    """A one-layer GRU over normalized frames (x, y, presence), trained for `epochs`; held-out accuracy.

    A fixed number of epochs rather than seconds, so the result does not depend on the machine's load.
    """
    import torch

    torch.manual_seed(0)
    x = np.zeros((len(seqs), frames, layout.num_points * 3), np.float32)
    for i, s in enumerate(seqs):
        xy = normalize_sequence(s, layout)
        idx = np.linspace(0, xy.shape[0] - 1, frames).round().astype(int)  # fixed length by nearest frames
        xy = xy[idx]
        seen = np.isfinite(xy[..., 0])
        x[i] = np.concatenate([np.where(seen[..., None], xy, 0.0).reshape(frames, -1), seen], axis=1)
    X, Y = torch.from_numpy(x), torch.from_numpy(np.asarray(labels, np.int64))
    tr = torch.from_numpy(np.flatnonzero(train))
    te = torch.from_numpy(np.flatnonzero(~train))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = torch.nn.Sequential(torch.nn.Linear(X.shape[2], 64), torch.nn.GELU())
            self.gru = torch.nn.GRU(64, 64, batch_first=True, bidirectional=True)
            self.out = torch.nn.Linear(128, num_classes)

        def forward(self, v):
            h, _ = self.gru(self.inp(v))  # (B, T, 128)
            return self.out(h.mean(dim=1))

    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only wait on each other (badly so on a busy machine)
    try:
        for _ in range(epochs):
            for batch in tr[torch.randperm(len(tr))].split(32):
                noise = 0.02 * torch.randn_like(X[batch])  # a little augmentation against signer over-fitting
                loss = torch.nn.functional.cross_entropy(net(X[batch] + noise), Y[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            return float((net(X[te]).argmax(1) == Y[te]).float().mean())
    finally:
        torch.set_num_threads(threads)


@pytest.mark.benchmark(group="synth")
@pytest.mark.parametrize("family_size", [2])
def test_separability(benchmark, request, family_size):
    config = (SynthConfig(family_size=family_size) if _timed(request)
              else SynthConfig(classes=12, per_class=24, signers=8, seed=7, family_size=family_size))
    samples = list(generate(config))
    layout = config.get_layout()
    seqs = [s.frames for s in samples]
    labels = np.array([s.label for s in samples])
    train = np.array([s.split == 0 for s in samples])

    def run():
        return {
            "mean_frame_linear_acc": probe_accuracy(seqs, labels, train, layout, config.classes, bins=1),
            "temporal_linear_acc": probe_accuracy(seqs, labels, train, layout, config.classes, bins=3),
            "gru_acc": _gru_accuracy(seqs, labels, train, layout, config.classes,
                                     epochs=40 if _timed(request) else 25),
        }

    acc = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(acc, classes=config.classes, sequences=len(samples), chance=1 / config.classes)
    print(f"\nheld-out signers, {config.classes} classes: mean-frame linear {acc['mean_frame_linear_acc']:.3f}, "
          f"3-bin linear {acc['temporal_linear_acc']:.3f}, GRU {acc['gru_acc']:.3f}")
    assert acc["gru_acc"] > acc["mean_frame_linear_acc"] + 0.2
    assert acc["temporal_linear_acc"] > acc["mean_frame_linear_acc"] + 0.2
