"""Decoding Parquet column chunks (Numba, nogil): Snappy pages, PLAIN and dictionary values, RLE/bit-packed runs.

The decoder reads values only at the rows it is asked for: dictionary indices are unpacked at those positions
straight from the bit-packed runs, never expanded for the whole page. Two small LLVM intrinsics carry the byte
work: `_memcpy` (Numba's slice assignment checks for overlap and copies through a temporary, about 20x slower
than memcpy) and unaligned loads of numbers from a byte buffer (no aligned copy needed before a view).
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

from slr_fast.ingest.parquet_fast.thrift import (
    C_CODEC,
    C_DATA_OFFSET,
    C_DICT_OFFSET,
    C_NUM_VALUES,
    C_RG_ROWS,
    C_SIZE,
    C_TYPE,
    H_COUNT,
    H_CSIZE,
    H_ENCODING,
    H_FIELDS,
    H_TYPE,
    H_USIZE,
    H_V1_DEF_ENCODING,
    H_V2_COMPRESSED,
    H_V2_DEF_BYTES,
    H_V2_REP_BYTES,
    page_header,
    varint,
)

# Parquet physical types, codecs, encodings and page types (parquet.thrift).
INT32, INT64, FLOAT, DOUBLE, BYTE_ARRAY = 1, 2, 4, 5, 6
UNCOMPRESSED, SNAPPY = 0, 1
_PLAIN, _PLAIN_DICTIONARY, _RLE, _RLE_DICTIONARY = 0, 2, 3, 8
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3


@intrinsic
def _memcpy(typingctx, dst, dst_offset, src, src_offset, count):
    """dst[dst_offset:+count] = src[src_offset:+count] for uint8 arrays that do not overlap there."""
    sig = types.void(dst, dst_offset, src, src_offset, count)

    def codegen(context, builder, signature, args):
        d = context.make_array(signature.args[0])(context, builder, args[0])
        s = context.make_array(signature.args[2])(context, builder, args[2])
        cgutils.raw_memcpy(builder, builder.gep(d.data, [args[1]]), builder.gep(s.data, [args[3]]), args[4], 1)

    return sig, codegen


def _unaligned_load(nbtype):
    """An intrinsic reading one `nbtype` number at any byte offset of a uint8 array (little-endian, as x86/ARM)."""

    @intrinsic
    def load(typingctx, buf, offset):
        def codegen(context, builder, signature, args):
            arr = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = builder.bitcast(builder.gep(arr.data, [args[1]]), context.get_value_type(nbtype).as_pointer())
            return builder.load(ptr, align=1)

        return nbtype(buf, offset), codegen

    return load


@intrinsic
def _store_i64(typingctx, buf, offset, value):
    """Write an int64 at any byte offset of a uint8 array."""
    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(arr.data, [args[1]]), context.get_value_type(types.int64).as_pointer())
        builder.store(args[2], ptr, align=1)

    return types.void(buf, offset, types.int64), codegen


_load_i32 = _unaligned_load(types.int32)
_load_i64 = _unaligned_load(types.int64)
_load_f32 = _unaligned_load(types.float32)
_load_f64 = _unaligned_load(types.float64)


@numba.njit(nogil=True, cache=True)
def _move(dst, o, src, p, length):
    """dst[o:o+length] = src[p:p+length] front to back in 8-byte words, for a literal (two arrays) or a copy
    within dst whose source is at least 8 bytes behind (each word then reads bytes already written). Snappy's
    elements are mostly short, where a memcpy call costs more than the copy."""
    j = 0
    while j + 8 <= length:
        _store_i64(dst, o + j, _load_i64(src, p + j))
        j += 8
    while j < length:
        dst[o + j] = src[p + j]
        j += 1


@numba.njit(nogil=True, cache=True)
def _snappy(src, s0, s1, dst):
    """Decompress the Snappy block src[s0:s1] into dst, which has exactly its uncompressed size."""
    n, p = varint(src, s0, s1)
    if n != dst.size:
        raise ValueError("parquet: snappy size differs from the page header")
    o = 0
    while p < s1:
        tag = np.int64(src[p])
        p += 1
        if tag & 3 == 0:  # literal
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                if p + extra > s1:
                    raise ValueError("parquet: truncated snappy literal")
                length = 0
                for j in range(extra):
                    length |= np.int64(src[p + j]) << (8 * j)
                p += extra
            length += 1
            if p + length > s1 or o + length > n:
                raise ValueError("parquet: snappy literal out of bounds")
            if length >= 256:
                _memcpy(dst, o, src, p, length)
            else:
                _move(dst, o, src, p, length)
            o += length
            p += length
            continue
        if tag & 3 == 1:
            if p + 1 > s1:
                raise ValueError("parquet: truncated snappy copy")
            length = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | np.int64(src[p])
            p += 1
        else:
            width = 2 if tag & 3 == 2 else 4
            if p + width > s1:
                raise ValueError("parquet: truncated snappy copy")
            length = (tag >> 2) + 1
            offset = 0
            for j in range(width):
                offset |= np.int64(src[p + j]) << (8 * j)
            p += width
        if offset == 0 or offset > o or o + length > n:
            raise ValueError("parquet: snappy copy out of bounds")
        if offset >= 8:
            _move(dst, o, dst, o - offset, length)
        else:  # a short pattern repeated: byte by byte
            for j in range(length):
                dst[o + j] = dst[o - offset + j]
        o += length
    if o != n:
        raise ValueError("parquet: snappy stream ended early")


@numba.njit(nogil=True, cache=True)
def _payload(b, start, size, usize, codec, scratch, at):
    """`size` bytes of b at `start`, decompressed to `usize` bytes at scratch[at:]; -> (the bytes, next free at).

    Pages land in a caller-owned scratch buffer reused from file to file: fresh arrays of this size would cost a
    page fault per 4 KiB on every file. Offsets stay 8-byte aligned so dictionaries can be viewed as numbers."""
    if size < 0 or usize < 0 or start + size > b.size:
        raise ValueError("parquet: page outside the file")
    if at + usize > scratch.size:
        raise ValueError("parquet: pages larger than the column's uncompressed size")
    out = scratch[at:at + usize]
    if codec == SNAPPY:
        _snappy(b, start, start + size, out)
    elif codec == UNCOMPRESSED:
        if size != usize:
            raise ValueError("parquet: uncompressed page size mismatch")
        _memcpy(out, 0, b, start, size)
    else:
        raise ValueError("parquet: unsupported codec")
    return out, (at + usize + 7) // 8 * 8


@numba.njit(nogil=True, cache=True)
def _value_f(buf, offset, ptype):
    """One PLAIN number at buf[offset:] as float64."""
    if ptype == DOUBLE:
        return _load_f64(buf, offset)
    if ptype == FLOAT:
        return np.float64(_load_f32(buf, offset))
    if ptype == INT32:
        return np.float64(_load_i32(buf, offset))
    return np.float64(_load_i64(buf, offset))


@numba.njit(nogil=True, cache=True)
def _value_i(buf, offset, ptype):
    """One PLAIN integer at buf[offset:] as int64 (floats are not read as integers)."""
    if ptype == INT32:
        return np.int64(_load_i32(buf, offset))
    if ptype == INT64:
        return _load_i64(buf, offset)
    raise ValueError("parquet: float values where integers are expected")


@numba.njit(nogil=True, cache=True)
def _dictionary(payload, count, ptype, floats, names, name_ends, out):
    """A dictionary page's values as out's dtype; BYTE_ARRAY strings as their index in `names` (or -1)."""
    size = 4 if ptype == INT32 or ptype == FLOAT or ptype == BYTE_ARRAY else 8  # a string takes >= 4 bytes
    if count < 0 or count > payload.size // size:
        raise ValueError("parquet: dictionary larger than its page")
    values = np.empty(count, out.dtype)
    if ptype == BYTE_ARRAY:
        p = 0
        for k in range(count):
            if p + 4 > payload.size:
                raise ValueError("parquet: truncated string dictionary")
            length = np.int64(_load_i32(payload, p))
            p += 4
            if length < 0 or p + length > payload.size:
                raise ValueError("parquet: truncated string dictionary")
            values[k] = -1
            start = 0
            for c in range(name_ends.size):
                if name_ends[c] - start == length:
                    same = True
                    for j in range(length):
                        if payload[p + j] != names[start + j]:
                            same = False
                            break
                    if same:
                        values[k] = c
                        break
                start = name_ends[c]
            p += length
        return values
    if out.itemsize == 8 and ((floats and ptype == DOUBLE) or (not floats and ptype == INT64)):
        return payload[:count * size].view(out.dtype)  # the payload is 8-byte aligned: no conversion copy
    for k in range(count):
        if floats:
            values[k] = _value_f(payload, k * size, ptype)
        else:
            v = _value_i(payload, k * size, ptype)
            values[k] = v
            if values[k] != v:
                raise ValueError("parquet: integer too large for the output dtype")
    return values


@numba.njit(nogil=True, cache=True)
def _unpack_tail(b, at, end, shift, mask):
    """A bit-packed number in the stream's last 8 bytes, read byte by byte within bounds (the rare, slow case)."""
    v = np.int64(0)
    for i in range(min(8, end - at)):
        v |= np.int64(b[at + i]) << (8 * i)
    return (v >> shift) & mask


@numba.njit(nogil=True, cache=True)
def _hybrid(b, p, end, width, dense, pos, base, m, lut, out):
    """Decode the RLE/bit-packed hybrid stream b[p:end] of `width`-bit numbers at m sorted positions, writing
    out[j] = lut[number at position j]. Positions: j itself when `dense`, else pos[j] - base.

    The dense and sparse cases have their own loops: the dense ones vectorize (an RLE run is a fill)."""
    mask = (np.int64(1) << width) - 1
    vbytes = (width + 7) // 8
    last = lut.size - 1
    if last < 0:
        raise ValueError("parquet: empty dictionary")
    bad = False
    padded = lut[:0]
    if dense and width <= 12:  # a small table padded to 2**width entries (the pad is never returned: `bad` raises)
        padded = np.empty(mask + 1, lut.dtype)
        padded[:lut.size] = lut[:min(lut.size, mask + 1)]
        padded[lut.size:] = lut[0]
    j = 0
    run_start = 0
    while j < m:
        h, p = varint(b, p, end)
        count = (h >> 1) * 8 if h & 1 else h >> 1
        if count == 0:
            raise ValueError("parquet: empty run")
        stop = min(m, run_start + count)  # dense: the outputs this run covers
        if h & 1:  # bit-packed: groups of 8 numbers, `width` bytes per group
            nbytes = (h >> 1) * width
            if p + nbytes > end:
                raise ValueError("parquet: truncated bit-packed run")
            # Positions up to `safe` can use one unaligned 8-byte load (shift < 8 plus width <= 32 bits); the loops
            # clamp indices and raise after, which keeps them branch-free. Dense and sparse loops are separate
            # so each stays simple enough for LLVM to optimize.
            safe = run_start + ((end - p - 8) * 8 + 7) // width if end - p >= 8 else run_start - 1
            if dense:
                fast = min(stop, safe + 1)
                if padded.size > mask:  # every `width`-bit number indexes it: no clamp in the hot loop
                    for jj in range(j, fast):
                        bit = (jj - run_start) * width
                        v = (_load_i64(b, p + (bit >> 3)) >> (bit & 7)) & mask
                        bad |= v > last
                        out[jj] = padded[v]
                else:
                    for jj in range(j, fast):
                        bit = (jj - run_start) * width
                        v = (_load_i64(b, p + (bit >> 3)) >> (bit & 7)) & mask
                        bad |= v > last
                        out[jj] = lut[min(v, last)]
                for jj in range(max(j, fast), stop):
                    bit = (jj - run_start) * width
                    v = _unpack_tail(b, p + (bit >> 3), end, bit & 7, mask)
                    bad |= v > last
                    out[jj] = lut[min(v, last)]
                j = stop
            else:
                while j < m and pos[j] - base <= safe and pos[j] - base < run_start + count:
                    bit = (pos[j] - base - run_start) * width
                    v = (_load_i64(b, p + (bit >> 3)) >> (bit & 7)) & mask
                    bad |= v > last
                    out[j] = lut[min(v, last)]
                    j += 1
                while j < m and pos[j] - base < run_start + count:
                    bit = (pos[j] - base - run_start) * width
                    v = _unpack_tail(b, p + (bit >> 3), end, bit & 7, mask)
                    bad |= v > last
                    out[j] = lut[min(v, last)]
                    j += 1
            p += nbytes
        else:  # one number repeated
            if p + vbytes > end:
                raise ValueError("parquet: truncated RLE run")
            v = np.int64(0)
            for i in range(vbytes):
                v |= np.int64(b[p + i]) << (8 * i)
            p += vbytes
            first = j
            if dense:
                j = stop
            else:
                while j < m and pos[j] - base < run_start + count:
                    j += 1
            if j > first:
                if v >= lut.size:
                    raise ValueError("parquet: dictionary index out of range")
                out[first:j] = lut[v]
        run_start += count
    if bad:
        raise ValueError("parquet: dictionary index out of range")


@numba.njit(nogil=True, cache=True)
def _values(payload, start, count, encoding, ptype, floats, dictionary, dense, pos, base, m, out):
    """The values section of a data page (`count` values from payload[start:]) at m positions, as _hybrid."""
    if m == 0:
        return
    if encoding == _PLAIN_DICTIONARY or encoding == _RLE_DICTIONARY:  # bit width, then hybrid indices
        if dictionary.size == 0 or start >= payload.size:
            raise ValueError("parquet: dictionary-encoded page without dictionary or indices")
        width = np.int64(payload[start])
        if width > 32:
            raise ValueError("parquet: bad bit width")
        if width == 0:
            out[:m] = dictionary[0]
        else:
            _hybrid(payload, start + 1, payload.size, width, dense, pos, base, m, dictionary, out)
    elif encoding == _PLAIN and ptype != BYTE_ARRAY:
        size = 4 if ptype == INT32 or ptype == FLOAT else 8
        if start < 0 or start > payload.size or count > (payload.size - start) // size:  # no overflowing product
            raise ValueError("parquet: truncated plain values")
        for j in range(m):
            q = j if dense else pos[j] - base
            if q >= count:
                raise ValueError("parquet: value position out of range")
            at = start + q * size
            if floats:
                out[j] = _value_f(payload, at, ptype)
            else:
                v = _value_i(payload, at, ptype)
                out[j] = v
                if out[j] != v:
                    raise ValueError("parquet: integer too large for the output dtype")
    else:
        raise ValueError("parquet: unsupported encoding")


@numba.njit(nogil=True, cache=True)
def _nonnull_positions(b, p, end, count, dense, rows, lo, row0, m, pos, isnull):
    """Walk a page's width-1 definition levels b[p:end] once: for each wanted row j (positions as in _hybrid),
    isnull[j] and pos[j] = the non-null values before it (its value's position); returns the page's non-nulls.
    Memory stays O(wanted rows) whatever the page claims to hold."""
    j = 0
    run_start = 0
    before = 0  # non-null values before run_start
    while run_start < count:
        h, p = varint(b, p, end)
        if h & 1:  # bit-packed: one byte per 8 levels
            n = (h >> 1) * 8
            if p + (h >> 1) > end:
                raise ValueError("parquet: truncated definition levels")
            scanned = ones = 0
            while j < m:
                q = (j if dense else rows[lo + j] - row0) - run_start
                if q >= n:
                    break
                while scanned < q:
                    ones += (b[p + (scanned >> 3)] >> (scanned & 7)) & 1
                    scanned += 1
                isnull[j] = (b[p + (q >> 3)] >> (q & 7)) & 1 == 0
                pos[j] = before + ones
                j += 1
            for i in range(scanned, min(n, count - run_start)):
                ones += (b[p + (i >> 3)] >> (i & 7)) & 1
            before += ones
            p += h >> 1
        else:  # a run of one level
            n = h >> 1
            if n == 0 or p >= end or b[p] > 1:
                raise ValueError("parquet: bad definition levels")
            level = b[p]
            p += 1
            while j < m:
                q = (j if dense else rows[lo + j] - row0) - run_start
                if q >= n:
                    break
                isnull[j] = level == 0
                pos[j] = before + q if level else before
                j += 1
            if level:
                before += min(n, count - run_start)
        run_start += n
    return before


@numba.njit(nogil=True, cache=True)
def _no_nulls(b, p, end, count):
    """Whether a width-1 definition-level stream starts with a run of `count` ones (the usual no-null page)."""
    if p >= end:
        return False
    h, q = varint(b, p, end)
    return h & 1 == 0 and (h >> 1) >= count and q < end and b[q] == 1


@numba.njit(nogil=True, cache=True)
def read_column(b, base, chunks, col, max_def, dense, rows, out, floats, names, name_ends, scratch):
    """Decode leaf column `col` into out: every row when `dense`, else the sorted file rows `rows`.

    b holds the file's bytes from offset `base` on, at least the column's chunks.
    `floats`: out is a float array and nulls read as NaN (else a null raises). BYTE_ARRAY columns give the index
    of each value in `names` (concatenated bytes ending at `name_ends`), or -1 for a string not among them.
    `scratch` holds the decompressed pages: at least the largest row group's uncompressed column size + 8 per page.
    """
    h = np.zeros(H_FIELDS, np.int64)
    total = out.size
    if not dense:
        file_rows = 0
        for rg in range(chunks.shape[0]):
            file_rows += chunks[rg, col, C_RG_ROWS]
        for i in range(rows.size):
            if rows[i] < 0 or rows[i] >= file_rows or (i and rows[i] < rows[i - 1]):
                raise ValueError("parquet: rows not sorted or out of range")
    k = 0  # next wanted output
    row0 = 0  # first row of the current page
    expected_rows = 0
    for rg in range(chunks.shape[0]):
        meta = chunks[rg, col]
        ptype, codec = meta[C_TYPE], meta[C_CODEC]
        if ptype != INT32 and ptype != INT64 and ptype != FLOAT and ptype != DOUBLE and ptype != BYTE_ARRAY:
            raise ValueError("parquet: unsupported physical type")
        p = meta[C_DATA_OFFSET]
        if 0 < meta[C_DICT_OFFSET] < p:
            p = meta[C_DICT_OFFSET]
        p -= base
        chunk_end = p + meta[C_SIZE]
        if p < 0 or meta[C_SIZE] < 0 or chunk_end > b.size:
            raise ValueError("parquet: column chunk outside the file")
        dictionary = np.empty(0, out.dtype)
        free = 0  # scratch use: the dictionary page stays, data pages reuse the space after it
        seen = 0
        while seen < meta[C_NUM_VALUES]:
            data = page_header(b, p, chunk_end, h)
            page_type, count = h[H_TYPE], h[H_COUNT]
            p = data + h[H_CSIZE]
            if h[H_CSIZE] < 0 or p > chunk_end or count < 0:
                raise ValueError("parquet: page outside its column chunk")
            if page_type != _DICTIONARY_PAGE and count > meta[C_NUM_VALUES] - seen:
                raise ValueError("parquet: page holds more values than its column chunk")
            if page_type == _DICTIONARY_PAGE:
                payload, free = _payload(b, data, h[H_CSIZE], h[H_USIZE], codec, scratch, 0)
                dictionary = _dictionary(payload, count, ptype, floats, names, name_ends, out)
                continue
            if page_type != _DATA_PAGE and page_type != _DATA_PAGE_V2:
                continue  # index pages carry no values
            levels_buf = np.empty(0, np.uint8)
            levels_start = levels_end = start = 0
            if page_type == _DATA_PAGE:
                payload, _ = _payload(b, data, h[H_CSIZE], h[H_USIZE], codec, scratch, free)
                if max_def:
                    if h[H_V1_DEF_ENCODING] != _RLE or payload.size < 4:
                        raise ValueError("parquet: unsupported definition levels")
                    levels_buf = payload
                    levels_start, levels_end = 4, 4 + np.int64(_load_i32(payload, 0))
                    if levels_end < 4 or levels_end > payload.size:
                        raise ValueError("parquet: bad definition levels length")
                    start = levels_end
            else:
                def_bytes = h[H_V2_DEF_BYTES]
                if h[H_V2_REP_BYTES] or def_bytes < 0 or def_bytes > h[H_CSIZE]:
                    raise ValueError("parquet: unsupported v2 levels")
                # v2 levels are never compressed; they and the values share the scratch after the dictionary.
                levels_buf, values_at = _payload(b, data, def_bytes, def_bytes, UNCOMPRESSED, scratch, free)
                levels_end = def_bytes
                compressed = h[H_V2_COMPRESSED] and codec != UNCOMPRESSED
                size = h[H_CSIZE] - def_bytes
                payload, _ = _payload(b, data + def_bytes, size, h[H_USIZE] - def_bytes if compressed else size,
                                      codec if compressed else UNCOMPRESSED, scratch, values_at)
            # The wanted outputs inside this page: out[lo:hi].
            lo = k
            if dense:
                k = row0 + count
                if k > total:
                    raise ValueError("parquet: more rows than the footer says")
            else:
                while k < total and rows[k] < row0 + count:
                    k += 1
            m = k - lo
            if max_def and not _no_nulls(levels_buf, levels_start, levels_end, count):
                pos, isnull = np.empty(m, np.int64), np.empty(m, np.bool_)
                nvalues = _nonnull_positions(levels_buf, levels_start, levels_end, count, dense, rows, lo, row0, m,
                                             pos, isnull)
                dst = np.empty(m, np.int64)
                kept = 0
                for j in range(m):
                    if not isnull[j]:
                        pos[kept], dst[kept] = pos[j], lo + j
                        kept += 1
                    elif floats:
                        out[lo + j] = np.nan
                    else:
                        raise ValueError("parquet: null in an integer column")
                found = np.empty(kept, out.dtype)
                _values(payload, start, nvalues, h[H_ENCODING], ptype, floats, dictionary, False, pos, 0, kept, found)
                for j in range(kept):
                    out[dst[j]] = found[j]
            else:
                _values(payload, start, count, h[H_ENCODING], ptype, floats, dictionary, dense, rows[lo:k], row0, m,
                        out[lo:k])
            seen += count
            row0 += count
        expected_rows += meta[C_RG_ROWS]
        if row0 != expected_rows or seen != meta[C_NUM_VALUES]:
            raise ValueError("parquet: row count differs from the footer")
    if k != total:
        raise ValueError("parquet: asked for rows beyond the end of the column")
