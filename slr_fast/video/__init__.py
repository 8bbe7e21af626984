"""Videos -> keypoints with MediaPipe Holistic (the optional `video` extra: pip install -e '.[video]').

    from slr_fast.video import read_video_keypoints, extract_videos
    keypoints, info = read_video_keypoints("clip.mp4")             # (T, 87, 2) float32, NaN = not detected
    report = extract_videos(["clips/"], "clips/labels.csv", "data/clips.zarr", workers=4, skip_bad=True)

Nothing here imports MediaPipe or PyAV until a video is read.
"""

from slr_fast.video.cache import count_extractions, default_cache_dir
from slr_fast.video.extract import default_video_workers, extract_entries, extract_files, extract_videos
from slr_fast.video.reader import (
    INSTALL_HINT,
    MODEL_COMPLEXITY,
    VIDEO_SUFFIXES,
    VideoError,
    VideoExtraMissing,
    check_model_complexity,
    read_video_keypoints,
    video_available,
)

__all__ = [
    "INSTALL_HINT",
    "MODEL_COMPLEXITY",
    "VIDEO_SUFFIXES",
    "VideoError",
    "VideoExtraMissing",
    "check_model_complexity",
    "count_extractions",
    "default_cache_dir",
    "default_video_workers",
    "extract_entries",
    "extract_files",
    "extract_videos",
    "read_video_keypoints",
    "video_available",
]
