"""Ingest: keypoint sources (GISLR parquet, pose-format .pose) -> (T, P, C) float32 arrays -> Zarr keypoint stores.

    from slr_fast.ingest import read_gislr_file, ingest_gislr
    frames = read_gislr_file("train_landmark_files/26734/1000035562.parquet")   # (T, 87, 2) float32, NaN = missing
    report = ingest_gislr("asl-signs/", "data/gislr.zarr", workers=4, skip_bad=True, split_by_signer=0)
    frames = read_pose_file("clip.pose")                      # pixel or normalized coordinates -> 0..1
    print(report.summary())

Single-file readers are public: prediction on new files reuses them. NumPy sources go through
`slr_fast.store.write_store`.
"""

from slr_fast.ingest.common import IngestError, IngestReport, SourceEntry, load_classes
from slr_fast.ingest.gislr import find_gislr_csv, ingest_gislr, read_gislr_csv, read_gislr_file
from slr_fast.ingest.gislr_format import synthetic_gislr_frames, write_gislr_dataset, write_gislr_file
from slr_fast.ingest.pose import ingest_pose, read_pose_file, read_pose_labels

__all__ = [
    "IngestError",
    "IngestReport",
    "SourceEntry",
    "find_gislr_csv",
    "ingest_gislr",
    "ingest_pose",
    "load_classes",
    "read_gislr_csv",
    "read_gislr_file",
    "read_pose_file",
    "read_pose_labels",
    "synthetic_gislr_frames",
    "write_gislr_dataset",
    "write_gislr_file",
]
