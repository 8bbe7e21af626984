"""Short clips cut from the real signer clip with PyAV (never downloaded), shared by the video and Slovo tests."""

from __future__ import annotations

from pathlib import Path

# 58 frames, 540x720, ~29.9 fps: a signer whose face and body Holistic finds in every frame, the right hand in 20.
REAL_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "pose-samples" / "test_video.mp4"


def encode(dst: Path, frames, rate, faststart: bool = False) -> Path:
    import av

    dst.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(dst), "w", options=options) as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=rate)
        for i, frame in enumerate(frames):
            if i == 0:
                stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst


def cut(dst: Path, start: int, stop: int, faststart: bool = False) -> Path:
    """Frames [start, stop) of the real clip, re-encoded (H.264) into `dst`; `faststart` puts the index first."""
    import av

    with av.open(str(REAL_CLIP)) as inp:
        vin = inp.streams.video[0]
        frames = [f for i, f in enumerate(inp.decode(vin)) if start <= i < stop]
        return encode(dst, frames, vin.average_rate or 30, faststart)
