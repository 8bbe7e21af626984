"""ModelConfig presets, validation, serialization; output shapes for several layouts and ablation switches."""

from __future__ import annotations

import pytest
import torch
from model_testing import NUM_CLASSES, make_batch, tiny_config

from slr_fast.layout import DEFAULT_LAYOUT, Layout, Part, get_layout
from slr_fast.model import ModelConfig, ModelOutput, SignModel


def test_presets_take_classes_and_layout_and_print_the_parameter_count():
    layout = get_layout("arm_z")
    for name in ("tiny", "base"):
        cfg = ModelConfig.preset(name, num_classes=1001, layout=layout)
        assert cfg.num_classes == 1001
        assert cfg.part_names == layout.part_names and cfg.part_sizes == layout.part_sizes
        assert cfg.channels == 3 and cfg.layout_name == "arm_z"
        n = sum(p.numel() for p in SignModel(cfg).parameters())
        assert cfg.num_parameters() == n
        assert f"parameters: {n:,}" in str(cfg)
    tiny = ModelConfig.preset("tiny", num_classes=250).num_parameters()
    base = ModelConfig.preset("base", num_classes=250).num_parameters()
    assert tiny < 1_000_000 < 5_000_000 < base < 20_000_000  # CPU-demo scale vs P100 scale


def test_preset_overrides_and_errors_name_the_problem():
    cfg = ModelConfig.preset("tiny", num_classes=5, dim=96, heads=6)
    assert cfg.dim == 96 and cfg.heads == 6
    with pytest.raises(ValueError, match="unknown model preset 'huge'.*base.*tiny"):
        ModelConfig.preset("huge", num_classes=5)
    with pytest.raises(ValueError, match="unknown ModelConfig fields \\['widht'\\]"):
        ModelConfig.preset("tiny", num_classes=5, widht=3)
    with pytest.raises(ValueError, match="dim=100 must split into 6 heads"):
        ModelConfig.preset("tiny", num_classes=5, dim=100, heads=6)
    with pytest.raises(ValueError, match="conv_kernel must be odd"):
        ModelConfig.preset("tiny", num_classes=5, conv_kernel=4)
    with pytest.raises(ValueError, match="pooling.*unknown \\['median'\\]"):
        ModelConfig.preset("tiny", num_classes=5, pooling=("avg", "median"))
    with pytest.raises(ValueError, match="layerdrop must be in \\[0, 1\\)"):
        ModelConfig.preset("tiny", num_classes=5, layerdrop=1.0)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        ModelConfig.preset("tiny", num_classes=0)


def test_config_dict_round_trip_and_unknown_keys():
    cfg = ModelConfig.preset("base", num_classes=500, layout=get_layout("arm"))
    d = cfg.to_dict()
    assert isinstance(d["part_names"], list)
    assert ModelConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown fields \\['colour'\\]"):
        ModelConfig.from_dict({**d, "colour": "red"})


@pytest.mark.parametrize(
    "overrides, n_aux",
    [
        ({}, 2),  # local, conv, global stages: aux heads on the first two
        ({"conv_layers": 0}, 1),
        ({"aux_heads": False}, 0),
        ({"local_layers": 0, "conv_layers": 0}, 0),  # a single stage has nothing before it
        ({"cross_layers": 0, "use_motion": False, "pooling": ("avg",), "multi_level": False}, 2),
    ],
    ids=["default", "no-conv", "no-aux", "global-only", "ablated"],
)
def test_output_shapes_follow_the_config(overrides, n_aux):
    model = SignModel(tiny_config(**overrides))
    batch = make_batch(B=3, T=11)
    out = model(batch["x"], batch["mask"], batch["length"])
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (3, NUM_CLASSES)
    assert len(out.aux_logits) == n_aux
    assert all(a.shape == (3, NUM_CLASSES) for a in out.aux_logits)
    assert torch.isfinite(out.logits).all()


def test_part_networks_come_from_the_layout_not_hard_coded():
    layout = Layout(parts=(Part("left_hand", "left_hand", tuple(range(21))), Part("nose", "pose", (0,))),
                    channels=("x", "y", "z"), name="two_parts")
    model = SignModel(tiny_config(layout=layout))
    assert list(model.embed.encoders) == ["left_hand", "nose"]
    # 21 points x (3 coords + 3 motion + 1 presence) inputs for the hand.
    assert model.embed.encoders["left_hand"].fc1.in_features == 21 * 7
    batch = make_batch(B=2, T=9, layout=layout)
    assert model(batch["x"], batch["mask"], batch["length"]).logits.shape == (2, NUM_CLASSES)


def test_bad_input_shapes_are_named():
    model = SignModel(tiny_config())
    batch = make_batch(B=2, T=8)
    with pytest.raises(ValueError, match="x must be \\(B, T, 87, 2\\).*got \\(2, 8, 86, 2\\)"):
        model(batch["x"][:, :, :86], batch["mask"][:, :, :86])
    with pytest.raises(ValueError, match="mask must be \\(B, T, P\\) = \\(2, 8, 87\\), got \\(2, 7, 87\\)"):
        model(batch["x"], batch["mask"][:, :7])
    with pytest.raises(ValueError, match="length must be \\(B,\\) = \\(2,\\), got \\(3,\\)"):
        model(batch["x"], batch["mask"], torch.tensor([8, 8, 8]))


def test_drop_path_rises_linearly_over_the_backbone():
    model = SignModel(ModelConfig.preset("base", num_classes=5, layout=DEFAULT_LAYOUT, drop_path=0.2))
    blocks = [*model.local_blocks, *model.conv_blocks, *model.global_blocks]
    rates = [b.drop_path.p for b in blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    steps = [b - a for a, b in zip(rates, rates[1:], strict=False)]
    assert all(s == pytest.approx(steps[0]) and s > 0 for s in steps)
