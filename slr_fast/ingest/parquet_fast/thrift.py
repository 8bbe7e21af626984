"""The thrift compact protocol, as much of it as reading a Parquet footer and page headers needs (Numba, nogil).

Field numbers follow Apache Parquet's `parquet.thrift`. Every read is bounds-checked against `end` and raises
ValueError on malformed input, so a corrupt file never reads outside its buffer.
"""

from __future__ import annotations

import numba
import numpy as np

# Column-chunk fields kept from the footer, per (row group, leaf column).
C_TYPE, C_CODEC, C_NUM_VALUES, C_DATA_OFFSET, C_DICT_OFFSET, C_SIZE, C_RG_ROWS, C_USIZE = range(8)
C_FIELDS = 8
# ColumnMetaData field id -> C_* slot (-1: skipped): type 1, codec 4, num_values 5, total_uncompressed_size 6,
# total_compressed_size 7, data_page_offset 9, dictionary_page_offset 11.
_COLUMN_META_SLOTS = np.full(12, -1, np.int64)
for _fid, _slot in ((1, C_TYPE), (4, C_CODEC), (5, C_NUM_VALUES), (6, C_USIZE), (7, C_SIZE), (9, C_DATA_OFFSET),
                    (11, C_DICT_OFFSET)):
    _COLUMN_META_SLOTS[_fid] = _slot
# Page-header fields (see page_header).
H_TYPE, H_USIZE, H_CSIZE, H_COUNT, H_ENCODING, H_V2_DEF_BYTES, H_V2_REP_BYTES, H_V2_COMPRESSED, H_V1_DEF_ENCODING = \
    range(9)
H_FIELDS = 9


@numba.njit(nogil=True, cache=True)
def varint(b, p, end):
    """Unsigned LEB128 varint at p -> (value, next p)."""
    result = np.int64(0)
    shift = 0
    while True:
        if p >= end or shift > 63:
            raise ValueError("parquet: bad varint")
        byte = np.int64(b[p])
        p += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, p
        shift += 7


@numba.njit(nogil=True, cache=True)
def _zigzag(b, p, end):
    """A zigzag-encoded signed varint (thrift i16/i32/i64) -> (value, next p)."""
    n, p = varint(b, p, end)
    return (n >> 1) ^ -(n & 1), p


@numba.njit(nogil=True, cache=True)
def _field(b, p, end, last_id):
    """A struct field header -> (field id, compact type, next p); type 0 means the struct ended."""
    if p >= end:
        raise ValueError("parquet: truncated struct")
    byte = np.int64(b[p])
    p += 1
    kind = byte & 0x0F
    if kind == 0:
        return 0, 0, p
    delta = byte >> 4
    if delta:
        return last_id + delta, kind, p
    fid, p = _zigzag(b, p, end)
    return fid, kind, p


@numba.njit(nogil=True, cache=True)
def _list_header(b, p, end):
    """A list/set header -> (size, element type, next p)."""
    if p >= end:
        raise ValueError("parquet: truncated list")
    byte = np.int64(b[p])
    p += 1
    size = byte >> 4
    if size == 15:
        size, p = varint(b, p, end)
    return size, byte & 0x0F, p


@numba.njit(nogil=True, cache=True)
def _skip(b, p, end, kind):
    """Skip one value of compact type `kind` (booleans as struct fields carry no bytes)."""
    if kind <= 2:
        return p
    if kind == 3:
        p += 1
    elif kind <= 6:
        _, p = varint(b, p, end)
    elif kind == 7:
        p += 8
    elif kind == 8:
        n, p = varint(b, p, end)
        p += n
    elif kind == 9 or kind == 10:
        size, elem, p = _list_header(b, p, end)
        for _ in range(size):
            p = p + 1 if elem <= 2 else _skip(b, p, end, elem)  # list booleans are one byte each
    elif kind == 11:
        size, p = varint(b, p, end)
        if size:
            if p >= end:
                raise ValueError("parquet: truncated map")
            kv = np.int64(b[p])
            p += 1
            for _ in range(size):
                p = _skip(b, p, end, kv >> 4)
                p = _skip(b, p, end, kv & 0x0F)
    elif kind == 12:
        fid = 0
        while True:
            fid, t, p = _field(b, p, end, fid)
            if t == 0:
                break
            p = _skip(b, p, end, t)
    else:
        raise ValueError("parquet: unknown thrift type")
    if p > end:
        raise ValueError("parquet: truncated value")
    return p


@numba.njit(nogil=True, cache=True)
def _column_meta(b, p, end, out):
    """ColumnMetaData struct -> out[C_TYPE..C_USIZE] (the integer fields _COLUMN_META_SLOTS maps)."""
    fid = 0
    while True:
        fid, t, p = _field(b, p, end, fid)
        if t == 0:
            return p
        slot = _COLUMN_META_SLOTS[fid] if 0 <= fid < _COLUMN_META_SLOTS.size else -1
        if slot >= 0 and (t == 5 or t == 6):  # i32 or i64
            out[slot], p = _zigzag(b, p, end)
        else:
            p = _skip(b, p, end, t)


@numba.njit(nogil=True, cache=True)
def _schema_element(b, p, end, out):
    """SchemaElement struct -> out = [type, repetition, num_children, name start, name length] (-1: absent)."""
    fid = 0
    while True:
        fid, t, p = _field(b, p, end, fid)
        if t == 0:
            return p
        if fid == 4 and t == 8:  # name: kept as a span of b, decoded by the caller
            length, p = varint(b, p, end)
            if p + length > end:
                raise ValueError("parquet: truncated name")
            out[3], out[4] = p, length
            p += length
        elif (fid == 1 or fid == 3 or fid == 5) and t == 5:
            out[0 if fid == 1 else 1 if fid == 3 else 2], p = _zigzag(b, p, end)
        else:
            p = _skip(b, p, end, t)


@numba.njit(nogil=True, cache=True)
def _row_group(b, p, end, chunks, rg):
    """RowGroup struct -> chunks[rg] (one row per leaf column; row-group row count in every row)."""
    fid = 0
    num_rows = -1
    while True:
        fid, t, p = _field(b, p, end, fid)
        if t == 0:
            break
        if fid == 1 and t == 9:
            size, elem, p = _list_header(b, p, end)
            if size != chunks.shape[1] or elem != 12:
                raise ValueError("parquet: row group column count differs from the schema")
            for c in range(size):
                cid = 0
                while True:
                    cid, ct, p = _field(b, p, end, cid)
                    if ct == 0:
                        break
                    if cid == 3 and ct == 12:
                        p = _column_meta(b, p, end, chunks[rg, c])
                    elif cid == 1 or cid >= 8:  # data in another file, or encrypted
                        raise ValueError("parquet: external or encrypted column chunk")
                    else:
                        p = _skip(b, p, end, ct)
        elif fid == 3 and t == 6:
            num_rows, p = _zigzag(b, p, end)
        else:
            p = _skip(b, p, end, t)
    chunks[rg, :, C_RG_ROWS] = num_rows
    return p


@numba.njit(nogil=True, cache=True)
def _footer_length(b):
    """The footer length from a file's last 8 bytes (b ends where the file ends); checks the magic bytes."""
    n = b.size
    if n < 8 or b[n - 4] != 80 or b[n - 3] != 65 or b[n - 2] != 82:
        raise ValueError("parquet: not a parquet file (magic bytes)")
    if b[n - 1] != 49:  # "PARE": encrypted footer
        raise ValueError("parquet: encrypted file")
    return np.int64(b[n - 8]) | np.int64(b[n - 7]) << 8 | np.int64(b[n - 6]) << 16 | np.int64(b[n - 5]) << 24


@numba.njit(nogil=True, cache=True)
def parse_footer(b):
    """File footer -> (schema (S, 5): type, repetition, num_children, name start, name length; chunks
    (row groups, leaves, C_FIELDS); num_rows). `b` is the file's tail, holding at least the footer and the last
    8 bytes; name starts index into b."""
    n = b.size
    flen = _footer_length(b)
    p = n - 8 - flen
    end = n - 8
    if p < 0:
        raise ValueError("parquet: footer longer than the bytes given")
    schema = np.full((0, 5), -1, np.int64)
    chunks = np.full((0, 0, C_FIELDS), -1, np.int64)
    num_rows = -1
    fid = 0
    while True:
        fid, t, p = _field(b, p, end, fid)
        if t == 0:
            break
        if fid == 2 and t == 9:
            size, elem, p = _list_header(b, p, end)
            if size > (end - p) // 2:  # an element takes >= 2 bytes: a larger count is corrupt, not allocated
                raise ValueError("parquet: schema longer than the footer")
            schema = np.full((size, 5), -1, np.int64)
            for s in range(size):
                p = _schema_element(b, p, end, schema[s])
        elif fid == 3 and t == 6:
            num_rows, p = _zigzag(b, p, end)
        elif fid == 4 and t == 9:
            if schema.shape[0] == 0:
                raise ValueError("parquet: row groups before the schema")
            leaves = 0
            for s in range(1, schema.shape[0]):
                leaves += schema[s, 2] <= 0
            size, elem, p = _list_header(b, p, end)
            if size > (end - p) // 2:
                raise ValueError("parquet: more row groups than the footer holds")
            chunks = np.full((size, leaves, C_FIELDS), -1, np.int64)
            for rg in range(size):
                p = _row_group(b, p, end, chunks, rg)
        elif fid >= 8:
            raise ValueError("parquet: encrypted file")
        else:
            p = _skip(b, p, end, t)
    return schema, chunks, num_rows


@numba.njit(nogil=True, cache=True)
def page_header(b, p, end, h):
    """PageHeader struct at p -> h[H_*] (page type, sizes, value count, encodings, v2 level lengths); returns
    where the page's data starts."""
    h[:] = 0
    h[H_V2_COMPRESSED] = 1
    h[H_V1_DEF_ENCODING] = 3  # RLE
    fid = 0
    while True:
        fid, t, p = _field(b, p, end, fid)
        if t == 0:
            return p
        if 1 <= fid <= 3 and t == 5:  # type, uncompressed size, compressed size: h[0..2]
            h[fid - 1], p = _zigzag(b, p, end)
        elif fid == 5 or fid == 7 or fid == 8:  # data page v1, dictionary page, data page v2 headers
            sid = 0
            while True:
                sid, st, p = _field(b, p, end, sid)
                if st == 0:
                    break
                if sid == 1 and st == 5:
                    h[H_COUNT], p = _zigzag(b, p, end)
                elif ((fid == 8 and sid == 4) or (fid != 8 and sid == 2)) and st == 5:
                    h[H_ENCODING], p = _zigzag(b, p, end)
                elif fid == 8 and sid == 5 and st == 5:
                    h[H_V2_DEF_BYTES], p = _zigzag(b, p, end)
                elif fid == 8 and sid == 6 and st == 5:
                    h[H_V2_REP_BYTES], p = _zigzag(b, p, end)
                elif fid == 8 and sid == 7 and st <= 2:
                    h[H_V2_COMPRESSED] = st == 1
                elif fid == 5 and sid == 3 and st == 5:
                    h[H_V1_DEF_ENCODING], p = _zigzag(b, p, end)
                else:
                    p = _skip(b, p, end, st)
        else:
            p = _skip(b, p, end, t)


@numba.njit(nogil=True, cache=True)
def chunk_extents(chunks, file_size):
    """Per leaf column: [first byte, end byte, largest uncompressed size] over its chunks, checked to lie in the
    file (a chunk starts at its dictionary page when there is one)."""
    out = np.zeros((chunks.shape[1], 3), np.int64)
    out[:, 0] = file_size
    for rg in range(chunks.shape[0]):
        for c in range(chunks.shape[1]):
            m = chunks[rg, c]
            start = m[C_DICT_OFFSET] if 0 < m[C_DICT_OFFSET] < m[C_DATA_OFFSET] else m[C_DATA_OFFSET]
            # Snappy expands at most ~32x (a 64-byte copy takes 2 bytes): a larger claim is corrupt, not allocated.
            if (start < 4 or m[C_SIZE] < 0 or start + m[C_SIZE] > file_size or m[C_USIZE] < 0
                    or m[C_USIZE] > 32 * m[C_SIZE] + 65536):
                raise ValueError("parquet: column chunk metadata out of range")
            out[c, 0] = min(out[c, 0], start)
            out[c, 1] = max(out[c, 1], start + m[C_SIZE])
            out[c, 2] = max(out[c, 2], m[C_USIZE])
    if chunks.shape[0] == 0:
        raise ValueError("parquet: no row groups")
    return out


@numba.njit(nogil=True, cache=True)
def read_footer(tail, file_size):
    """parse_footer and chunk_extents in one call (one GIL release per file instead of two)."""
    schema, chunks, num_rows = parse_footer(tail)
    return schema, chunks, num_rows, chunk_extents(chunks, file_size)
