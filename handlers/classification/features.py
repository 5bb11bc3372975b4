"""Feature extraction: word n-grams, character n-grams and projected sentence vectors.

Batch transforms (training) use scikit-learn; a single request takes a hand-written
fast path that yields the same numbers without scikit-learn's per-call overhead
(validation, sparse-matrix construction), which would otherwise dominate latency.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer


@dataclass(frozen=True)
class FeatureSettings:
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    char_min_df: int = 2
    # Sentence vectors are reduced to this many principal components: keeps the
    # linear solver fast (dense columns are expensive for it) and loses little.
    embedding_dims: int = 128
    # Relative weight of the sentence-vector block against the two unit-norm n-gram blocks.
    embedding_weight: float = 2.0


class NgramBlock:
    """A fitted TF-IDF vectoriser plus a fast single-text transform."""

    def __init__(self, vectorizer: TfidfVectorizer) -> None:
        self.vectorizer = vectorizer
        self._analyzer = None

    @classmethod
    def fit(cls, docs: list[str], **kwargs) -> NgramBlock:
        vectorizer = TfidfVectorizer(sublinear_tf=True, lowercase=False, dtype=np.float32, **kwargs)
        vectorizer.fit(docs)
        return cls(vectorizer)

    @property
    def size(self) -> int:
        return len(self.vectorizer.vocabulary_)

    def transform(self, docs: list[str]) -> csr_matrix:
        return self.vectorizer.transform(docs)

    def transform_one(self, doc: str) -> tuple[np.ndarray, np.ndarray]:
        """(column indices, tf-idf values) of one document, L2-normalised like sklearn's."""
        if self._analyzer is None:
            self._analyzer = self.vectorizer.build_analyzer()
        vocabulary = self.vectorizer.vocabulary_
        counts = Counter(g for g in self._analyzer(doc) if g in vocabulary)
        if not counts:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        idx = np.fromiter((vocabulary[g] for g in counts), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        values = (1.0 + np.log(tf)) * self.vectorizer.idf_[idx]
        values /= np.sqrt(values @ values)
        return idx, values.astype(np.float32)

    def __getstate__(self):
        return {"vectorizer": self.vectorizer}

    def __setstate__(self, state):
        self.vectorizer = state["vectorizer"]
        self._analyzer = None


class EmbeddingProjection:
    """Centre and project sentence vectors onto their top principal components."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, weight: float) -> None:
        self.mean = mean.astype(np.float32)
        self.components = components.astype(np.float32)  # (dim, k)
        self.weight = float(weight)

    @classmethod
    def fit(cls, vectors: np.ndarray, dims: int, weight: float) -> EmbeddingProjection:
        mean = vectors.mean(axis=0)
        k = max(1, min(dims, vectors.shape[0] - 1, vectors.shape[1]))
        _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
        return cls(mean, vt[:k].T, weight)

    @property
    def size(self) -> int:
        return self.components.shape[1]

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        return ((vectors - self.mean) @ self.components) * self.weight


def build_matrix(word: csr_matrix, char: csr_matrix, projected: np.ndarray | None) -> csr_matrix:
    blocks = [word, char]
    if projected is not None:
        blocks.append(csr_matrix(projected.astype(np.float32)))
    return hstack(blocks, format="csr", dtype=np.float32)
