"""The CPU form of RMVPE: the U-Net and the BiGRU in float32 numpy on OpenBLAS, tiled over two
threads, and long inputs in bounded memory.

:class:`mlx_rvc.models.rmvpe.E2E` states the network in MLX; when the CPU form is active it hands
its U-Net, its GRU and its streamed long-input path to the functions at the end of this module.
MLX's CPU backend is slow for this network: the strided copy that stacks a 3x3 convolution's
column shifts, fresh buffers that page-fault, and a dozen ~10 µs dispatches per GRU step.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import mlx.core as mx
import numpy as np

from ..dsp.f0 import salience_to_f0
from ..dsp.mel import N_MELS

if TYPE_CHECKING:
    from ..models.rmvpe import E2E, Conv, ConvBlockRes, UpConv, _GruParams

logger = logging.getLogger(__name__)

GRU_BLOCK_STEPS = 4096  # time steps whose input projections are computed together


def gru_layer_numpy(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
                    b_hh: np.ndarray) -> np.ndarray:
    """One bidirectional GRU layer with torch.nn.GRU's equations, the two directions on the two
    worker threads (each step is a 256x768 GEMV and a few 512-value ops; numpy releases the GIL
    in the GEMV).

    x: (T, n_in) float32; weights stacked (forward, reverse): w_ih (2, 3h, n_in), w_hh (2, 3h, h),
    biases (2, 3h), gates in torch's order r, z, n. Returns (T, 2h): forward states, then reverse.
    """
    t = x.shape[0]
    out = np.empty((t, 2, w_hh.shape[2]), np.float32)
    _run(lambda d: _gru_direction(x if d == 0 else x[::-1], w_ih[d], w_hh[d], b_ih[d], b_hh[d],
                                  out[:, 0] if d == 0 else out[::-1, 1]), [0, 1])
    return out.reshape(t, -1)


def _gru_direction(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray,
                   out: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
    """States of one GRU direction over x (T, n_in), read in order, into out (T, h), starting
    from ``state`` (zeros when None); returns the last state, so a sequence can be fed in pieces."""
    from scipy.special import expit  # a float32 sigmoid without exp's overflow warnings

    h = w_hh.shape[1]
    w_hh_t = w_hh.T  # (h, 3h) view: BLAS reads it transposed
    state = np.zeros(h, np.float32) if state is None else np.array(state, np.float32)
    gh = np.empty(3 * h, np.float32)
    rz = np.empty(2 * h, np.float32)
    new = np.empty(h, np.float32)
    for s0 in range(0, x.shape[0], GRU_BLOCK_STEPS):  # input projections a block of steps at a time
        gi = x[s0: s0 + GRU_BLOCK_STEPS] @ w_ih.T + b_ih  # (n, 3h)
        for step, g in enumerate(gi, start=s0):
            np.matmul(state, w_hh_t, out=gh)
            gh += b_hh
            np.add(g[: 2 * h], gh[: 2 * h], out=rz)
            expit(rz, out=rz)
            np.multiply(rz[:h], gh[2 * h:], out=new)
            new += g[2 * h:]
            np.tanh(new, out=new)
            np.subtract(state, new, out=state)
            state *= rz[h:]
            state += new  # (1 - z)·n + z·h, in torch's form (h - n)·z + n
            out[step] = state
    return state


# ----------------------------------------------------------------------------- numpy U-Net (CPU)
#
# On the CPU the whole U-Net and output conv run here, in float32 numpy on OpenBLAS. Measured for
# 30 s (2-core Zen 5): OpenBLAS's own two threads run the skinny GEMMs of the shallow levels
# (16-64 channels) at a third of one thread's speed, and whole-image passes (column stacks, bias,
# ReLU, residual, pooling) each stream tens of MB through fresh, page-faulting buffers. So every
# layer works on cache-sized tiles of rows, all passes of a tile while it is in cache, on two
# worker threads each running single-threaded BLAS; activations live in zero-bordered
# (H+2, W+2, C) buffers that convolutions read in place, and the decoder's concatenation is never
# built: its two halves are two sources of the same column stack. Convolutions with 64 to 256 output
# channels use Winograd's F(2x2, 3x3), whose transformed weights are prepared once and kept (16/9
# of those convolutions' weights: ~0.1 GB for the released model's sizes).

TILE_BYTES = 1 << 20  # column stack per tile (the L2 cache per core is 1-2 MB)
MIN_TILE_PIXELS = 512  # below this many pixels per tile, split output channels instead of rows
_BLAS_LOCAL: Any = None  # numpy's OpenBLAS openblas_set_num_threads_local, once found
_WORKERS = min(2, os.cpu_count() or 1)  # the work splits in halves
_unet_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool)
_scratch = threading.local()


def _numpy_openblas_local_threads():
    """numpy's OpenBLAS per-thread thread count setter, or None (other BLAS, older OpenBLAS)."""
    global _BLAS_LOCAL
    if _BLAS_LOCAL is None:
        _BLAS_LOCAL = False
        try:
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "openblas" in line and "numpy" in line}
            for path in sorted(paths):
                fn = getattr(ctypes.CDLL(path), "openblas_set_num_threads_local", None)
                if fn is not None:
                    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
                    _BLAS_LOCAL = fn
                    break
        except OSError as exc:
            logger.debug("numpy's OpenBLAS not found: %s", exc)
    return _BLAS_LOCAL or None


@contextmanager
def _single_threaded_blas():
    """numpy's OpenBLAS single-threaded while the block runs, its thread count restored after.

    The two worker threads each want a single-threaded BLAS; in OpenBLAS's pthreads builds (the
    numpy wheels') ``openblas_set_num_threads_local`` sets the count for the whole process, so
    it must be put back, or every later numpy GEMM (the content encoder's) runs on one core.
    """
    set_local = _numpy_openblas_local_threads()
    if set_local is None:
        yield
        return
    old = set_local(1)
    try:
        yield
    finally:
        set_local(old)


def _workers() -> ThreadPoolExecutor | None:
    """Two worker threads with single-threaded BLAS, remade in a forked child; None where the
    BLAS thread count cannot be set per thread (two threads each running a multithreaded BLAS
    would oversubscribe the cores)."""
    global _unet_pool
    threads = _WORKERS
    set_local = _numpy_openblas_local_threads()
    if threads < 2 or set_local is None:
        return None
    if _unet_pool is None or _unet_pool[0] != os.getpid():
        _unet_pool = (os.getpid(), ThreadPoolExecutor(threads, thread_name_prefix="mlx-rvc-rmvpe",
                                                      initializer=lambda: set_local(1)))
    return _unet_pool[1]


def _run(fn, items: list) -> None:
    """fn(item) for every item, the items shared in two contiguous halves among the workers."""
    pool = _workers() if len(items) > 1 else None
    if pool is None:
        for item in items:
            fn(item)
        return
    half = (len(items) + 1) // 2
    list(pool.map(lambda part: [fn(item) for item in part], (items[:half], items[half:])))


def _buf(name: str, n: int) -> np.ndarray:
    """A per-thread float32 scratch vector of at least n values, reused between calls."""
    arr = getattr(_scratch, name, None)
    if arr is None or arr.size < n:
        arr = np.empty(n, np.float32)
        setattr(_scratch, name, arr)
    return arr[:n]


def _padded(h: int, w: int, c: int) -> np.ndarray:
    """An (h+2, w+2, c) activation buffer whose one-pixel border is zero ('same' padding).

    Zeroed by calloc: fresh pages come zeroed from the kernel, and each is first touched (and
    faulted in) by the worker thread that writes it. Zeroing the border here instead touched
    every page on the calling thread (30 s: ~100 ms of page faults, serial).
    """
    return np.zeros((h + 2, w + 2, c), np.float32)


def _interior(buf: np.ndarray) -> np.ndarray:
    return buf[1:-1, 1:-1]


_ZEROS: dict[int, np.ndarray] = {}  # zero rows by length, for ReLU


class _RowBias:
    """A bias (C,) tiled along whole image rows, per (channel range, pixels per row): numpy's loops
    over a broadcast 16-value axis, or against a scalar 0, run 3-4x slower than over whole rows
    (measured 51 and 43 µs vs 19 and 12 µs for 86 K values)."""

    def __init__(self, bias: np.ndarray):
        self.bias = bias
        self.rows: dict[tuple[int, int, int], np.ndarray] = {}

    def add(self, x: np.ndarray, n0: int, n1: int, pixels: int, *, relu: bool) -> None:
        """x (rows·pixels, n1-n0) += bias[n0:n1], then ReLU, in place."""
        rows = x.reshape(-1, pixels * (n1 - n0))
        tiled = self.rows.get((n0, n1, pixels))
        if tiled is None:
            tiled = self.rows[(n0, n1, pixels)] = np.tile(self.bias[n0:n1], pixels)
        rows += tiled
        if relu:
            zeros = _ZEROS.get(rows.shape[1])
            if zeros is None:
                zeros = _ZEROS[rows.shape[1]] = np.zeros(rows.shape[1], np.float32)
            np.maximum(rows, zeros, out=rows)


def _tiles(h: int, w: int, row_bytes: int, n_out: int) -> list[tuple[int, int, int, int]]:
    """Work items (row0, row1, chan0, chan1): an even number of equal row tiles of about TILE_BYTES
    of column stack and at least MIN_TILE_PIXELS pixels, or where the image is too small for two,
    all rows and the output channels in two halves."""
    rows = max(1, TILE_BYTES // row_bytes, -(-MIN_TILE_PIXELS // w))
    if h < 2 * rows:
        if n_out >= 64:
            return [(0, h, 0, n_out // 2), (0, h, n_out // 2, n_out)]
        return [(0, h, 0, n_out)]
    n = -(-h // rows)
    n += n % 2  # the two workers take half each
    rows = -(-h // n)
    return [(r0, min(r0 + rows, h), 0, n_out) for r0 in range(0, h, rows)]


# Winograd F(2x2, 3x3) (Lavin & Gray 2016): a 2x2 output tile from a 4x4 input tile with 16
# products per channel pair instead of 36, exact in real arithmetic; its transforms only add,
# subtract and halve. Pays off where the GEMMs dominate (2.25x fewer flops): measured per conv for
# 30 s, 64 channels 16 -> 12.5 ms of CPU, 128: 15 -> 9, 256 and 512: 15 -> 8; at 32 channels
# and fewer the 4x larger transformed input costs as much memory traffic as it saves. The 32
# 512-channel convolutions of the released model would keep 0.53 GB of transformed weights for
# ~0.1 s per 30 s (on two cores): not worth a third of the pipeline's memory budget.
NARROW_MAX_WIDTH = 4  # direct convs on images this narrow go column by column (see _Conv3x3._narrow)
WINOGRAD_MIN_CHANNELS = 64  # output channels
WINOGRAD_MAX_CHANNELS = 256
_WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])  # weight transform


_WINOGRAD_GG = np.kron(_WINOGRAD_G, _WINOGRAD_G)  # (16, 9): G·g·Gᵀ on a flattened 3x3 tap grid


def _winograd_weights(weight: np.ndarray) -> np.ndarray:
    """(O, 3, 3, C) conv weight -> (16, C, O): G·g·Gᵀ per channel pair, in float64 then rounded.

    One (16, 9) x (9, C·O) product: measured 2x faster than the equivalent einsum (a model
    load prepares every wide convolution: 0.29 -> 0.16 s for the released model), same values.
    """
    o, _, _, c = weight.shape
    taps = weight.transpose(1, 2, 3, 0).reshape(9, c * o).astype(np.float64)
    return (_WINOGRAD_GG @ taps).astype(np.float32).reshape(16, c, o)


def _winograd_input(sources: list[np.ndarray], p0: int, p1: int, v: np.ndarray) -> None:
    """Bᵀ·d·B of the 4x4 input tiles of output row pairs p0..p1 into v (16, (p1-p0)·W/2, ΣC)."""
    n = p1 - p0
    off = 0
    for src in sources:
        w, c = src.shape[1] - 2, src.shape[2]
        d = [src[2 * p0 + i: 2 * p1 + i: 2] for i in range(4)]  # (n, W+2, C): tile row i
        t = _buf("wt", 4 * n * (w + 2) * c).reshape(4, n, w + 2, c)
        np.subtract(d[0], d[2], out=t[0])
        np.add(d[1], d[2], out=t[1])
        np.subtract(d[2], d[1], out=t[2])
        np.subtract(d[1], d[3], out=t[3])
        for k in range(4):
            e = [t[k][:, j: w + j: 2] for j in range(4)]  # (n, W/2, C): tile column j
            dest = [v[4 * k + l].reshape(n, w // 2, -1)[..., off: off + c] for l in range(4)]
            np.subtract(e[0], e[2], out=dest[0])
            np.add(e[1], e[2], out=dest[1])
            np.subtract(e[2], e[1], out=dest[2])
            np.subtract(e[1], e[3], out=dest[3])
        off += c


def _winograd_output(m: np.ndarray, p0: int, p1: int, w: int, bias: _RowBias, out_quads: np.ndarray,
                     n0: int, n1: int, *, relu: bool, residual: bool) -> None:
    """Aᵀ·M·A of products m (16, tiles, n) -> 2x2 output tiles, bias, ReLU, written (or added) to
    out_quads (H/2, 2, W/2, 2, O)[p0:p1, ..., n0:n1]."""
    n, tiles, nch = p1 - p0, m.shape[1], m.shape[2]
    s = _buf("ws", 8 * tiles * nch).reshape(2, 4, tiles, nch)  # after the row transform
    for l in range(4):
        np.add(m[l], m[4 + l], out=s[0, l])
        s[0, l] += m[8 + l]
        np.subtract(m[4 + l], m[8 + l], out=s[1, l])
        s[1, l] -= m[12 + l]
    y = _buf("wy", tiles * nch).reshape(tiles, nch)
    for a in range(2):
        for b in range(2):
            if b == 0:
                np.add(s[a, 0], s[a, 1], out=y)
                y += s[a, 2]
            else:
                np.subtract(s[a, 1], s[a, 2], out=y)
                y -= s[a, 3]
            bias.add(y, n0, n1, w // 2, relu=relu)
            dest = out_quads[p0:p1, a, :, b, n0:n1]
            if residual:
                dest += y.reshape(n, w // 2, nch)
            else:
                dest[...] = y.reshape(n, w // 2, nch)


class _Conv3x3:
    """A 3x3 'same' conv (BatchNorm folded) over the channel concatenation of its sources, with an
    optional 1x1 shortcut on the same input computed alongside.

    Per tile, the three column shifts of every source are stacked on channels once (dx, then
    source, then channel: the order of the reference's concatenated input channels within each
    dx), after which each row shift dy is a contiguous block of the flattened stack: three GEMMs.
    The shortcut reads the unshifted column (dx = 1) of the same stack.
    """

    def __init__(self, conv: Conv, shortcut: Conv | None = None):
        weight = np.asarray(conv.weight)  # (O, 3, 3, C_in)
        o, c = weight.shape[0], weight.shape[3]
        self.c_in, self.c_out = c, o
        self.w = [weight[:, dy].reshape(o, 3 * c).T for dy in range(3)]  # (3C, O) views: BLAS reads them transposed
        self.bias = _RowBias(np.asarray(conv.bias))
        self.shortcut = None
        if shortcut is not None:
            self.shortcut = (np.asarray(shortcut.weight)[:, 0, 0, :].T, _RowBias(np.asarray(shortcut.bias)))
        self.u = _winograd_weights(weight) if WINOGRAD_MIN_CHANNELS <= o <= WINOGRAD_MAX_CHANNELS else None

    def __call__(self, sources: list[np.ndarray], out: np.ndarray, *, residual: bool = False,
                 relu: bool = True, shortcut_out: np.ndarray | None = None) -> None:
        """sources: padded (H+2, W+2, C_s) summing to C_in channels; out: padded (H+2, W+2, O),
        its interior written (or, with ``residual``, added to); shortcut_out: padded, receives the
        1x1 shortcut."""
        h, w = sources[0].shape[0] - 2, sources[0].shape[1] - 2
        if self.u is not None and h % 2 == 0 and w % 2 == 0:
            self._winograd(sources, out, residual=residual, relu=relu, shortcut_out=shortcut_out)
            return
        if w <= NARROW_MAX_WIDTH and len(sources) == 1:
            self._narrow(sources[0], out, residual=residual, relu=relu, shortcut_out=shortcut_out)
            return
        c = self.c_in
        items = _tiles(h, w, w * 3 * c * 4, self.c_out)

        def tile(item):
            r0, r1, n0, n1 = item
            r, n = r1 - r0, n1 - n0
            cols = _buf("cols", (r + 2) * w * 3 * c).reshape(r + 2, w, 3, c)
            for dx in range(3):
                off = 0
                for src in sources:
                    cs = src.shape[2]
                    cols[:, :, dx, off: off + cs] = src[r0: r1 + 2, dx: dx + w]
                    off += cs
            flat = cols.reshape((r + 2) * w, 3 * c)
            acc = _buf("acc", r * w * n).reshape(r * w, n)
            tmp = _buf("tmp", r * w * n).reshape(r * w, n)
            np.matmul(flat[: r * w], self.w[0][:, n0:n1], out=acc)
            for dy in (1, 2):
                np.matmul(flat[dy * w: dy * w + r * w], self.w[dy][:, n0:n1], out=tmp)
                acc += tmp
            self.bias.add(acc, n0, n1, w, relu=relu)
            dest = out[r0 + 1: r1 + 1, 1: w + 1, n0:n1]
            if residual:
                dest += acc.reshape(r, w, n)
            else:
                dest[...] = acc.reshape(r, w, n)
            if shortcut_out is not None:
                ws, bs = self.shortcut
                centre = cols[1: r + 1, :, 1].reshape(r * w, c)  # rows r0..r1, unshifted: a strided BLAS operand
                np.matmul(centre, ws[:, n0:n1], out=acc)
                bs.add(acc, n0, n1, w, relu=False)
                shortcut_out[r0 + 1: r1 + 1, 1: w + 1, n0:n1] = acc.reshape(r, w, n)

        _run(tile, items)

    def _narrow(self, src: np.ndarray, out: np.ndarray, *, residual: bool, relu: bool,
                shortcut_out: np.ndarray | None) -> None:
        """The conv one output column at a time, without the taps that read the zero border.

        For each column and row shift dy the taps dx are a strided (H, k·C) view of the padded
        input (no column stack), so the first and last columns skip the third of their products
        that would multiply the border: 1/6 fewer flops at 4 columns (the released model's
        512-channel intermediate). Output channels in two halves, one per worker.
        """
        h, w, c, o = src.shape[0] - 2, src.shape[1] - 2, self.c_in, self.c_out

        def part(item):
            n0, n1 = item
            n = n1 - n0
            acc = _buf("nacc", w * h * n).reshape(w, h, n)
            tmp = _buf("ntmp", h * n).reshape(h, n)
            for x in range(w):
                lo, hi = int(x == 0), 3 - int(x == w - 1)  # the taps dx that read inside the image
                for dy in range(3):
                    taps = src[dy: dy + h, x + lo: x + hi].reshape(h, (hi - lo) * c)
                    weight = self.w[dy][lo * c: hi * c, n0:n1]
                    if dy == 0:
                        np.matmul(taps, weight, out=acc[x])
                    else:
                        np.matmul(taps, weight, out=tmp)
                        acc[x] += tmp
                if shortcut_out is not None:
                    ws, bs = self.shortcut
                    np.matmul(src[1: h + 1, x + 1], ws[:, n0:n1], out=tmp)
                    bs.add(tmp, n0, n1, h, relu=False)
                    shortcut_out[1: h + 1, x + 1, n0:n1] = tmp
            self.bias.add(acc, n0, n1, h, relu=relu)
            dest = out[1: h + 1, 1: w + 1, n0:n1]
            if residual:
                dest += acc.transpose(1, 0, 2)
            else:
                dest[...] = acc.transpose(1, 0, 2)

        _run(part, [(0, o // 2), (o // 2, o)] if o >= 64 else [(0, o)])

    def _shortcut_rows(self, sources: list[np.ndarray], r0: int, r1: int, n0: int, n1: int, dest: np.ndarray) -> None:
        """The 1x1 shortcut of rows r0..r1 into dest's interior: GEMMs over whole padded rows (one
        contiguous block per source), the border columns dropped afterwards."""
        ws, bs = self.shortcut
        w, r, n = sources[0].shape[1] - 2, r1 - r0, n1 - n0
        acc = _buf("sc", r * (w + 2) * n).reshape(r * (w + 2), n)
        off = 0
        for i, src in enumerate(sources):
            cs = src.shape[2]
            rows = src[r0 + 1: r1 + 1].reshape(r * (w + 2), cs)
            if i == 0:
                np.matmul(rows, ws[off: off + cs, n0:n1], out=acc)
            else:
                tmp = _buf("sc_tmp", acc.size).reshape(acc.shape)
                np.matmul(rows, ws[off: off + cs, n0:n1], out=tmp)
                acc += tmp
            off += cs
        bs.add(acc, n0, n1, w + 2, relu=False)
        dest[r0 + 1: r1 + 1, 1: w + 1, n0:n1] = acc.reshape(r, w + 2, n)[:, 1: w + 1]

    def _winograd(self, sources: list[np.ndarray], out: np.ndarray, *, residual: bool, relu: bool,
                  shortcut_out: np.ndarray | None) -> None:
        h2, w2 = (sources[0].shape[0] - 2) // 2, (sources[0].shape[1] - 2) // 2
        c, o = self.c_in, self.c_out
        quads = _interior(out).reshape(h2, 2, w2, 2, o)
        items = _tiles(h2, w2, 16 * w2 * c * 4, o)
        if all(n0 == 0 and n1 == o for _, _, n0, n1 in items):  # row tiles: each tile's passes in cache

            def tile(item):
                p0, p1 = item[:2]
                t = (p1 - p0) * w2
                v = _buf("wv", 16 * t * c).reshape(16, t, c)
                _winograd_input(sources, p0, p1, v)
                m = _buf("wm", 16 * t * o).reshape(16, t, o)
                np.matmul(v, self.u, out=m)
                _winograd_output(m, p0, p1, 2 * w2, self.bias, quads, 0, o, relu=relu, residual=residual)
                if shortcut_out is not None:
                    self._shortcut_rows(sources, 2 * p0, 2 * p1, 0, o, shortcut_out)

            _run(tile, items)
            return
        # small image: transform the input once (rows in two halves), then output channels in two halves
        v = _buf("wv_all", 16 * h2 * w2 * c).reshape(16, h2 * w2, c)
        half = (h2 + 1) // 2
        _run(lambda rows: _winograd_input(sources, rows[0], rows[1], v[:, rows[0] * w2: rows[1] * w2]),
             [(a, b) for a, b in ((0, half), (half, h2)) if b > a])  # one row pair: one half

        def part(item):
            n0, n1 = item[2:]
            m = _buf("wm", 16 * h2 * w2 * (n1 - n0)).reshape(16, h2 * w2, n1 - n0)
            np.matmul(v, self.u[:, :, n0:n1], out=m)
            _winograd_output(m, 0, h2, 2 * w2, self.bias, quads, n0, n1, relu=relu, residual=residual)
            if shortcut_out is not None:
                self._shortcut_rows(sources, 0, 2 * h2, n0, n1, shortcut_out)

        _run(part, items)


class _UpConv:
    """:class:`UpConv` (transposed 3x3 conv, stride 2, BN folded, ReLU) as four phase GEMMs.

    Per input tile the four neighbours x(i, j+1), x(i, j), x(i+1, j), x(i+1, j+1) are stacked on
    channels in that order, so that each output phase (a, b) reads a contiguous range of them:
    (0,0) x(i,j) alone, (0,1) the first two, (1,0) the middle two, (1,1) all four.
    """

    # phase -> (first slot, [(ky, kx) per slot]); slots as in the docstring
    PHASES = {(0, 0): (1, [(1, 1)]), (0, 1): (0, [(1, 0), (1, 2)]),
              (1, 0): (1, [(2, 1), (0, 1)]), (1, 1): (0, [(2, 0), (2, 2), (0, 2), (0, 0)])}

    def __init__(self, up: UpConv):
        weight = np.asarray(up.weight)  # (O, 3, 3, C_in)
        self.c_in, self.c_out = weight.shape[3], weight.shape[0]
        self.w = {phase: (first, np.ascontiguousarray(np.concatenate([weight[:, ky, kx, :].T for ky, kx in taps])))
                  for phase, (first, taps) in self.PHASES.items()}
        self.bias = _RowBias(np.asarray(up.bias))

    def __call__(self, x: np.ndarray, out: np.ndarray) -> None:
        """x: padded (h+2, w+2, C_in) -> the interior of out, padded (2h+2, 2w+2, O)."""
        h, w, c = x.shape[0] - 2, x.shape[1] - 2, self.c_in
        o = self.c_out
        phases = _interior(out).reshape(h, 2, w, 2, o)
        items = _tiles(h, w, w * 4 * c * 4, o)

        def tile(item):
            r0, r1, n0, n1 = item
            r, n = r1 - r0, n1 - n0
            cols = _buf("cols", r * w * 4 * c).reshape(r, w, 4, c)
            cols[:, :, 0] = x[r0 + 1: r1 + 1, 2: w + 2]
            cols[:, :, 1] = x[r0 + 1: r1 + 1, 1: w + 1]
            cols[:, :, 2] = x[r0 + 2: r1 + 2, 1: w + 1]
            cols[:, :, 3] = x[r0 + 2: r1 + 2, 2: w + 2]
            flat = cols.reshape(r * w, 4 * c)
            acc = _buf("acc", r * w * n).reshape(r * w, n)
            for (a, b), (first, wp) in self.w.items():
                k = wp.shape[0]
                np.matmul(flat[:, first * c: first * c + k], wp[:, n0:n1], out=acc)
                self.bias.add(acc, n0, n1, w, relu=True)
                phases[r0:r1, a, :, b, n0:n1] = acc.reshape(r, w, n)

        _run(tile, items)


def _avg_pool_2x2(x: np.ndarray, out: np.ndarray) -> None:
    """2x2 mean of the interior of padded x into the interior of padded out."""
    h, w, c = x.shape[0] - 2, x.shape[1] - 2, x.shape[2]
    quads = _interior(x).reshape(h // 2, 2, w // 2, 2, c)
    dest = _interior(out)
    rows = max(1, TILE_BYTES // (w * c * 4))

    def tile(r0):
        q = quads[r0: r0 + rows]
        d = dest[r0: r0 + rows]
        np.add(q[:, 0, :, 0], q[:, 0, :, 1], out=d)
        d += q[:, 1, :, 0]
        d += q[:, 1, :, 1]
        d *= 0.25

    _run(tile, list(range(0, h // 2, rows)))


class _ResBlock:
    def __init__(self, block: ConvBlockRes):
        self.shortcut = "shortcut" in block
        self.conv0 = _Conv3x3(block.conv[0], block.shortcut if self.shortcut else None)
        self.conv3 = _Conv3x3(block.conv[3])

    def __call__(self, sources: list[np.ndarray], out: np.ndarray, mid: np.ndarray) -> None:
        """relu(conv3(relu(conv0(x)))) + shortcut(x) (or + x, then out is x's buffer); mid: a
        padded buffer for the first conv's output."""
        self.conv0(sources, mid, shortcut_out=out if self.shortcut else None)
        self.conv3([mid], out, residual=True)


class NumpyUnet:
    """:meth:`E2E.image_features` in numpy for the CPU (see the section comment above)."""

    def __init__(self, model: "E2E"):
        unet = model.unet
        self.in_scale = float(np.asarray(unet.encoder.bn.scale)[0])
        self.in_shift = float(np.asarray(unet.encoder.bn.shift)[0])
        self.encoder = [[_ResBlock(b) for b in level.conv] for level in unet.encoder.layers]
        self.intermediate = [_ResBlock(b) for layer in unet.intermediate.layers for b in layer.conv]
        self.decoder = [(_UpConv(level.conv1[0]), [_ResBlock(b) for b in level.conv2]) for level in unet.decoder.layers]
        self.cnn = _Conv3x3(model.cnn)

    @staticmethod
    def _blocks(blocks: list[_ResBlock], sources: list[np.ndarray]) -> np.ndarray:
        """One level's residual blocks. Empties ``sources`` once the first conv has read them, so
        that inputs the caller no longer holds (a decoder level's up-convolution and skip) are
        freed before the level's other seven convolutions run."""
        h, w = sources[0].shape[0] - 2, sources[0].shape[1] - 2
        first = blocks[0]
        x = sources[0] if not first.shortcut else _padded(h, w, first.conv0.c_out)
        mid = _padded(h, w, first.conv0.c_out)
        first.conv0(sources, mid, shortcut_out=x if first.shortcut else None)
        sources.clear()
        first.conv3([mid], x, residual=True)
        for block in blocks[1:]:
            block([x], x, mid)  # in place: each tile of the second conv adds to the rows it read
        return x

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        """(T, 128) log-mel, T a multiple of 32 -> (T, 3·128) features, channel-major."""
        t, n_mels = mel.shape
        x = _padded(t, n_mels, 1)
        np.multiply(mel, self.in_scale, out=_interior(x)[..., 0])
        _interior(x)[..., 0] += self.in_shift
        skips = []
        for level in self.encoder:
            y = self._blocks(level, [x])
            skips.append(y)
            h, w, c = y.shape[0] - 2, y.shape[1] - 2, y.shape[2]
            x = _padded(h // 2, w // 2, c)
            _avg_pool_2x2(y, x)
        x = self._blocks(self.intermediate, [x])
        for up, blocks in self.decoder:  # each skip and level output dropped as soon as it is used
            skip = skips.pop()
            u = _padded(skip.shape[0] - 2, skip.shape[1] - 2, up.c_out)
            up(x, u)
            sources = [u, skip]
            del x, u, skip
            x = self._blocks(blocks, sources)
        feats = _padded(t, n_mels, self.cnn.c_out)
        self.cnn([x], feats, relu=False)
        return np.ascontiguousarray(_interior(feats).transpose(0, 2, 1)).reshape(t, -1)  # channel-major


# ----------------------------------------------------------------------------- entry points


def image_features(model: "E2E", mel: np.ndarray) -> np.ndarray:
    """:meth:`E2E.image_features` of (B, T, 128) log-mel (T a multiple of 32): (B, T, 3·128)."""
    if model._numpy_unet is None:  # prepared on first use, after the weights are loaded
        model._numpy_unet = NumpyUnet(model)
    return np.stack([model._numpy_unet(m) for m in mel])


def gru(params: "_GruParams", x: np.ndarray) -> np.ndarray:
    """The BiGRU of (B, T, n_in) in numpy: on the CPU each MLX op costs ~10 µs of dispatch, and a
    step is a dozen ops on 2x768 numbers (30 s: 0.6 s in MLX, ~0.15 s here)."""
    for layer in range(params.n_layers):
        weights = [np.stack([np.asarray(getattr(params, f"{name}_l{layer}{suffix}")) for suffix in ("", "_reverse")])
                   for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        x = np.stack([gru_layer_numpy(seq, *weights) for seq in x])
    return x


def salience(model: "E2E", mel: np.ndarray, block_frames: int) -> np.ndarray:
    """:meth:`E2E.salience` with numpy's BLAS single-threaded (the work is split over two threads)."""
    with _single_threaded_blas():
        return model._salience(mel, block_frames)


def f0(model: "E2E", mel: np.ndarray, threshold: float, block_frames: int) -> np.ndarray:
    """:meth:`E2E.f0` from the log-mel: inputs longer than one U-Net block (and at most one GRU
    layer) go through :func:`f0_streamed`, whose memory does not grow with the length beyond the
    log-mel and the f0 itself."""
    from ..models.rmvpe import FRAME_MULTIPLE, UNET_CONTEXT_FRAMES

    padded = -(-mel.shape[1] // FRAME_MULTIPLE) * FRAME_MULTIPLE
    with _single_threaded_blas():
        if model.cfg.n_gru <= 1 and padded > block_frames + 2 * UNET_CONTEXT_FRAMES:
            return f0_streamed(model, mel, threshold, block_frames)
        return salience_to_f0(model._salience(mel, block_frames), threshold=threshold)


def f0_streamed(model: "E2E", mel: np.ndarray, threshold: float, block_frames: int) -> np.ndarray:
    """:meth:`E2E.salience` and decoding in bounded memory, for long inputs on the CPU.

    The same blocks and context as :meth:`E2E.salience`, but the bidirectional GRU, which needs
    the whole sequence, runs in two sweeps over them: forwards, spooling each block's image
    features and forward states to disk (:class:`mlx_rvc.spool.Spool`), then backwards,
    carrying the reverse state from the last block, with the head and f0 decoding done per
    block. Every frame gets the numbers of one pass.
    """
    from ..models.rmvpe import FRAME_MULTIPLE, UNET_CONTEXT_FRAMES
    from ..spool import Spool

    if model._numpy_unet is None:
        model._numpy_unet = NumpyUnet(model)
    n = mel.shape[1]
    padded = -(-n // FRAME_MULTIPLE) * FRAME_MULTIPLE
    blocks = [(start, min(start + block_frames, padded)) for start in range(0, padded, block_frames)]
    gru = model.fc[0].gru if model.cfg.n_gru else None
    if gru is not None:
        w_ih, w_hh, b_ih, b_hh = ([np.asarray(getattr(gru, f"{name}_l0{suffix}")) for suffix in ("", "_reverse")]
                                  for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    f0 = np.zeros(n)
    with Spool(width=3 * N_MELS) as feats, Spool(width=max(model.cfg.gru_hidden, 1)) as forward:
        state = None
        for start, stop in blocks:
            lo, hi = max(start - UNET_CONTEXT_FRAMES, 0), min(stop + UNET_CONTEXT_FRAMES, padded)
            rows = np.zeros((hi - lo, N_MELS), np.float32)  # the zero padding of one pass past n
            rows[: max(min(hi, n) - lo, 0)] = mel[:, lo: min(hi, n)].T
            part = model._numpy_unet(rows)[start - lo: stop - lo]
            feats.append(part)
            if gru is not None:
                out = np.empty((stop - start, model.cfg.gru_hidden), np.float32)
                state = _gru_direction(part, w_ih[0], w_hh[0], b_ih[0], b_hh[0], out, state)
                forward.append(out)
        state = None
        for start, stop in reversed(blocks):
            part = feats.read(start, stop)
            if gru is not None:
                backward = np.empty((stop - start, model.cfg.gru_hidden), np.float32)
                state = _gru_direction(part[::-1], w_ih[1], w_hh[1], b_ih[1], b_hh[1], backward[::-1], state)
                part = np.concatenate([forward.read(start, stop), backward], axis=1)
            keep = min(stop, n) - start
            if keep > 0:
                salience = mx.sigmoid(model.fc[-1](mx.array(part[:keep])))
                f0[start: start + keep] = salience_to_f0(np.asarray(salience), threshold=threshold)
    return f0
