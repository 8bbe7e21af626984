"""ordered_map (the parallel reader loop), IngestReport and the frame checks shared by every source."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from slr_fast.ingest import IngestError, IngestReport
from slr_fast.ingest.common import check_frames, ordered_map
from slr_fast.layout import get_layout


@pytest.mark.parametrize("workers", [1, 3])
def test_ordered_map_keeps_input_order_carries_errors_and_bounds_work(workers):
    running, peak, submitted = [0], [0], []
    lock = threading.Lock()

    def fn(i):
        with lock:
            running[0] += 1
            submitted.append(i)
        time.sleep(0.002 * ((7 * i) % 5))  # later items often finish first
        with lock:
            peak[0] = max(peak[0], running[0])
            running[0] -= 1
        if i % 4 == 3:
            raise ValueError(f"bad {i}")
        return i * i

    seen = []
    for i, result in ordered_map(fn, range(20), workers, ahead=5):
        seen.append(i)
        if i % 4 == 3:
            assert isinstance(result, ValueError) and str(result) == f"bad {i}"
        else:
            assert result == i * i
        assert len(submitted) <= i + 1 + 5  # never more than `ahead` items beyond the one consumed
    assert seen == list(range(20))
    assert peak[0] <= workers


def test_report_summary_lists_skipped_files():
    r = IngestReport(out="s.zarr", written=3, frames=30, classes=["a", "b"],
                     skipped=[("x.parquet", "file not found"), ("y.parquet", "empty sequence: no rows")], seconds=0.5)
    assert r.files_per_s == pytest.approx(10.0)
    lines = r.summary().splitlines()
    assert lines[0].startswith("wrote 3 sequences (30 frames, 2 classes) to s.zarr")
    assert lines[1:] == ["skipped 2 file(s):", "  x.parquet: file not found", "  y.parquet: empty sequence: no rows"]


def test_check_frames():
    layout = get_layout("default")
    ok = np.full((3, 87, 2), np.nan, np.float32)
    ok[2, 5] = 0.5  # one point seen in the last frame is enough
    assert check_frames("f", ok, layout) is ok
    with pytest.raises(IngestError, match="f: all-NaN sequence"):
        check_frames("f", np.full((3, 87, 2), np.nan, np.float32), layout)
    with pytest.raises(IngestError, match="empty sequence"):
        check_frames("f", np.zeros((0, 87, 2), np.float32), layout)
    with pytest.raises(IngestError, match=r"shape \(3, 87, 3\)"):
        check_frames("f", np.zeros((3, 87, 3), np.float32), layout)
