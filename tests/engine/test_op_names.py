"""Ops are named, not numbered: dispatch codes and parameter slots come from ops.py, and the compiled and reference
implementations read every parameter by the same name (changing one parameter changes both the same way)."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
from engine_testing import assert_matches_reference

from slr_fast.augment import ops
from slr_fast.engine import BatchProcessor
from slr_fast.layout import DEFAULT_LAYOUT
from slr_fast.preprocess import PreprocessConfig

# Per op: parameters under which every parameter shows in the output (a rate of 0 would hide a length), then one
# other valid value per parameter. Every parameter of every op must be listed.
BASE = {"dropout": {"part_rate": 0.2}, "detector_noise": {"miss_rate": 0.2, "swap_rate": 0.3}}
OTHER = {
    "temporal_crop": {"min_frac": 0.5},
    "time_warp": {"min_speed": 0.5, "max_speed": 2.0},
    "speed_change": {"strength": 1.5, "knots": 7},
    "scale": {"min_scale": 0.5, "max_scale": 1.9, "aspect": 0.4},
    "rotate": {"roll_deg": 40.0, "yaw_deg": 70.0, "pitch_deg": 50.0},
    "mirror": {},
    "part_distort": {"scale": 0.4, "rotate_deg": 30.0, "shift": 0.2},
    "noise": {"std": 0.1},
    "dropout": {"rate": 0.3, "part_rate": 0.05},
    "detector_noise": {"jitter_std": 0.05, "jitter_corr": 0.3, "miss_rate": 0.05, "miss_max_len": 2,
                       "swap_rate": 0.05, "swap_max_len": 6},
}
CASES = [(op, name) for op, params in OTHER.items() for name in params]


def test_every_parameter_has_a_slot_and_a_case():
    for name, cls in ops.OPS.items():
        params = [f.name for f in fields(cls) if f.name != "p"]
        slots = ops.SLOTS[name]
        assert list(slots._fields) == params and list(slots) == list(range(len(params))), name
        # The row the pipeline hands the kernels puts each value at its slot.
        op = cls(**OTHER[name])
        assert [op.params()[getattr(slots, p)] for p in params] == [float(getattr(op, p)) for p in params]
        assert sorted(OTHER[name]) == sorted(params), f"{name}: OTHER must list every parameter"


def test_codes_are_distinct_and_temporal_first():
    codes = {name: cls.code for name, cls in ops.OPS.items()}
    assert sorted(codes.values()) == list(range(len(codes)))
    temporal = [c for name, c in codes.items() if ops.OPS[name].stage == ops.TEMPORAL]
    assert max(temporal) < min(c for c in codes.values() if c not in temporal)
    assert (ops.OPS["time_warp"].code, ops.OPS["detector_noise"].code) == (ops.TIME_WARP, ops.DETECTOR_NOISE)


@pytest.mark.parametrize("op,param", CASES)
def test_both_implementations_read_each_parameter_by_name(batch, op, param):
    pc = PreprocessConfig(T=48, resample="pad", drop_handless=False)
    base = {"op": op, "p": 1.0, **BASE.get(op, {})}
    before = BatchProcessor(DEFAULT_LAYOUT, pc, [base], seed=2)
    after = BatchProcessor(DEFAULT_LAYOUT, pc, [{**base, param: OTHER[op][param]}], seed=2)
    got = assert_matches_reference(after, *batch, check_flags=False)  # compiled == reference with this value...
    idx = np.arange(len(batch[1]) - 1)
    plain = before.process(*batch, idx, 0, before.alloc(len(idx)))
    assert not np.array_equal(got["x"], plain["x"]), f"{op}.{param} changed nothing"  # ...and the value is read
