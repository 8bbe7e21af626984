"""MultiScalePooling views against direct computations on the valid frames of each sequence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from slr_fast.model.pooling import AttentionPooling, MultiScalePooling, masked_mean_max, segment_weights


@pytest.mark.parametrize("length", [1, 3, 8, 13, 37])
def test_segments_match_adaptive_average_pooling_of_the_valid_frames(length):
    T, D, scales = 40, 5, (1, 2, 4, 8)
    h = torch.randn(1, T, D)
    w = segment_weights(torch.tensor([length]), T, scales)  # (1, 15, T)
    got = torch.bmm(w, h)  # (1, 15, D)
    valid = h[:, :length].transpose(1, 2)  # (1, D, L)
    want = torch.cat([F.adaptive_avg_pool1d(valid, s) for s in scales], dim=-1).transpose(1, 2)  # (1, 15, D)
    torch.testing.assert_close(got, want)
    assert (w[..., length:] == 0).all()  # no weight on padding


def test_empty_sequence_pools_to_zeros():
    h = torch.randn(2, 6, 4)
    lengths = torch.tensor([0, 6])
    valid = torch.arange(6)[None] < lengths[:, None]
    assert (segment_weights(lengths, 6, (1, 2))[0] == 0).all()
    mean, mx = masked_mean_max(h, valid)
    assert (mean[0] == 0).all() and (mx[0] == 0).all()
    torch.testing.assert_close(mean[1], h[1].mean(0))
    torch.testing.assert_close(mx[1], h[1].amax(0))


def test_mean_max_use_only_valid_frames():
    h = torch.randn(3, 9, 4)
    lengths = torch.tensor([9, 4, 1])
    valid = torch.arange(9)[None] < lengths[:, None]
    mean, mx = masked_mean_max(h, valid)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(mean[b], h[b, :n].mean(0))
        torch.testing.assert_close(mx[b], h[b, :n].amax(0))


def test_attention_pooling_weights_only_valid_frames_and_prefers_matching_ones():
    torch.manual_seed(0)
    pool = AttentionPooling(dim=8, queries=1)
    with torch.no_grad():
        pool.key.weight.copy_(torch.eye(8))
        pool.value.weight.copy_(torch.eye(8))
        pool.queries.copy_(torch.zeros(1, 8))
        pool.queries[0, 0] = 50.0  # the query looks for channel 0
    h = torch.zeros(1, 6, 8)
    h[0, 2, 0] = 1.0  # the important frame
    h[0, 2, 1] = 7.0  # its content
    h[0, 5, 0] = 5.0  # an even "better" frame, but it is padding
    valid = torch.tensor([[True] * 5 + [False]])
    out = pool(h, valid).detach()  # (1, 8)
    assert out[0, 1].item() == pytest.approx(7.0, rel=1e-4)  # picked frame 2, ignored the padded frame 5


def test_multiscale_output_width_and_layout():
    pool = MultiScalePooling(dim=4, kinds=("avg", "max", "adaptive", "attention"), scales=(1, 2), queries=3)
    assert pool.out_dim == 4 * (1 + 1 + 3 + 3)
    h = torch.randn(2, 7, 4)
    lengths = torch.tensor([7, 3])
    valid = torch.arange(7)[None] < lengths[:, None]
    out = pool(h, valid, lengths)
    assert out.shape == (2, pool.out_dim)
    mean, mx = masked_mean_max(h, valid)
    torch.testing.assert_close(out[:, :4], mean)  # views concatenated in the configured order
    torch.testing.assert_close(out[:, 4:8], mx)
    torch.testing.assert_close(out[:, 8:12], mean)  # adaptive scale 1 is the mean
