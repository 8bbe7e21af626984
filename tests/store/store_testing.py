"""Small realistic keypoint sequences for store tests: smooth trajectories with NaN where a hand is not seen."""

from __future__ import annotations

import numpy as np

from slr_fast.layout import DEFAULT_LAYOUT, Layout


def smooth_sequences(n: int, layout: Layout = DEFAULT_LAYOUT, seed: int = 0, max_len: int = 60,
                     lengths: list[int] | None = None) -> list[np.ndarray]:
    """n sequences (T, P, C) float32: a random walk per point, hands missing in some frames."""
    rng = np.random.default_rng(seed)
    lens = lengths if lengths is not None else rng.integers(1, max_len, n).tolist()
    p, c = layout.num_points, layout.num_channels
    hands = [layout.part_slices()[layout.parts[k].name] for k in layout.hand_parts()]
    out = []
    for t in lens:
        base = rng.uniform(0.3, 0.7, (1, p, c))
        walk = np.cumsum(rng.normal(0, 0.004, (t, p, c)), axis=0)
        seq = (base + walk).astype(np.float32)
        for sl in hands:
            seq[rng.random(t) < 0.3, sl] = np.nan
        out.append(seq)
    return out


def rewrite_array(path, name: str, values: np.ndarray, *, recreate: bool = False) -> None:
    """Store `values` as array `name` of the store at `path` and record their checksum, as a tool that writes
    consistent but invalid stores would: what `open` must then catch is the values, not damage."""
    import zarr

    from slr_fast.store.integrity import chunk_crcs, crc32c

    g = zarr.open_group(path, mode="r+")
    if recreate:
        del g[name]
        g.create_array(name, data=values, config={"write_empty_chunks": True})
    else:
        g[name][...] = values
    meta = dict(g.attrs["slr_fast"])
    if "checksums" in meta:
        sums = {**meta["checksums"], name: crc32c(np.asarray(values))}
        if name == "frames":  # the per-chunk checksums, and theirs
            crcs = np.asarray(chunk_crcs(np.asarray(values), g["frames"].chunks[0]), np.uint32)
            g["frames_crc32c"][...] = crcs
            sums["frames_crc32c"] = crc32c(crcs)
        meta["checksums"] = sums
        g.attrs["slr_fast"] = meta


def write_legacy_store(path, seqs: list[np.ndarray], labels: list[int], chunk_frames: int = 64) -> None:
    """A store as slr_fast wrote it before checksums: no crc32c codec, no "checksums" attribute, no
    frames_crc32c array, and zarr's default of leaving out chunks that hold only the fill value."""
    import zarr
    from zarr.codecs import BloscCodec, TransposeCodec

    n, frames = len(seqs), np.concatenate(seqs)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    g = zarr.open_group(path, mode="w", zarr_format=3)
    g.create_array("frames", data=frames, chunks=(chunk_frames, *frames.shape[1:]), fill_value=np.nan,
                   filters=[TransposeCodec(order=(1, 2, 0))],
                   compressors=[BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")])
    columns = {"offsets": offsets, "label": np.asarray(labels, np.int32), "signer": np.full(n, -1, np.int32),
               "split": np.full(n, -1, np.int8),
               "seq_id": np.asarray([str(i) for i in range(n)], dtype=np.dtypes.StringDType())}
    for name, values in columns.items():
        arr = g.create_array(name, shape=values.shape, chunks=(max(1, n),),
                             dtype=str if name == "seq_id" else values.dtype)
        arr[:] = values
    g.attrs["slr_fast"] = {"schema_version": 1, "complete": True, "layout": DEFAULT_LAYOUT.to_dict(),
                           "classes": [str(c) for c in range(max(labels) + 1)], "provenance": {},
                           "chunk_frames": chunk_frames, "compression": "blosc-zstd3-shuffle+time",
                           "num_sequences": n, "num_frames": len(frames)}
