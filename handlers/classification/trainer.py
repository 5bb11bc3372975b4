"""Training: fit features and the linear model, then calibrate on held-out data.

Everything that is not a model weight (the nearest-neighbour weight, the softmax
temperature, the rejection threshold) is chosen automatically on a stratified
held-out part of the *training* data, by a model trained on the rest; the final
model is then refitted on all the training data. Nothing here is tuned for a
particular data set, and a test set is never looked at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .embeddings import SentenceEncoder, load_default_encoder
from .engine import (
    DEFAULT_OOS_LABEL,
    LinearTopicModel,
    ModelParams,
    embedding_input,
    knn_class_scores,
    softmax,
)
from .features import EmbeddingProjection, FeatureSettings, NgramBlock, build_matrix
from .nlu_data import Example
from .normalize import prepare
from .threads import single_blas_thread

if TYPE_CHECKING:
    from sklearn.svm import LinearSVC

log = logging.getLogger(__name__)

_USE_DEFAULT_ENCODER = object()


@dataclass(frozen=True)
class TrainSettings:
    features: FeatureSettings = FeatureSettings()
    svm_c: float = 1.0
    holdout_fraction: float = 0.2
    knn_k: int = 3
    knn_weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    # Cost of sending a request to the wrong department, relative to the gain of
    # routing it right (rejecting costs 0: a person or a clarifying question takes over).
    # 1.0 means "route only when the calibrated probability of being right is above ~1/2".
    misroute_cost: float = 1.0
    # Out-of-scope training rows are a class of their own (chit-chat is learnable)
    # as well as negatives for the rejection threshold.
    oos_as_class: bool = True
    seed: int = 13

    def as_dict(self) -> dict:
        return asdict(self)


def train(
    examples: Iterable[Example],
    oos_label: str | None = DEFAULT_OOS_LABEL,
    settings: TrainSettings = TrainSettings(),
    encoder: SentenceEncoder | None | object = _USE_DEFAULT_ENCODER,
) -> LinearTopicModel:
    """Train a model from (text, label) examples. Rows labelled ``oos_label`` mean "not ours"."""
    started = time.perf_counter()
    examples = [e for e in examples if e.text and e.text.strip()]
    oos_label = oos_label or DEFAULT_OOS_LABEL
    labels = np.array([e.label for e in examples], dtype=object)
    in_scope_labels = sorted({str(label) for label in labels if label != oos_label})
    if len(in_scope_labels) < 2:
        raise ValueError("training needs at least two in-scope labels")
    if encoder is _USE_DEFAULT_ENCODER:
        encoder = load_default_encoder()
    import sklearn.svm  # noqa: F401 - once, before two threads fit at the same time (see _fit_svm)

    timings: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = round(now - mark, 3)
        mark = now

    with single_blas_thread():
        texts = [e.text for e in examples]
        prepared = [prepare(t) for t in texts]
        lap("normalize")
        fs = settings.features
        word = NgramBlock.fit_words([p[0] for p in prepared], fs.word_ngrams)
        char = NgramBlock.fit_chars([p[1] for p in prepared], fs.char_ngrams,
                                    min_df=min(fs.char_min_df, max(1, len(texts) // 50)))
        vectors = None
        projection = None
        if encoder is not None:
            vectors = encoder.encode([embedding_input(t) for t in texts])
            projection = EmbeddingProjection.fit(vectors, fs.embedding_dims, fs.embedding_weight)
        lap("embed")
        projected = projection.transform(vectors) if projection is not None else None
        x = build_matrix(word.transform([p[0] for p in prepared]), char.transform([p[1] for p in prepared]),
                         projected)
        knn_all = _unit_rows(projected) if projected is not None else None
        lap("features")

        class_names = in_scope_labels + ([oos_label] if settings.oos_as_class and (labels == oos_label).any()
                                          else [])
        is_oos = labels == oos_label
        trainable = ~is_oos | (oos_label in class_names)

        fit_rows, held_rows = _holdout_split(labels, settings.holdout_fraction, settings.seed)
        # The final fit and the calibration fit are independent; liblinear releases the
        # GIL, so on a multi-core machine the final fit runs in a thread meanwhile.
        with ThreadPoolExecutor(max_workers=1) as pool:
            final_fit = pool.submit(_fit_svm, x, labels, trainable, np.arange(len(labels)), class_names,
                                    settings.svm_c)
            calibration = _calibrate(x, labels, oos_label, trainable, fit_rows, held_rows, knn_all, class_names,
                                     settings)
            lap("calibrate")
            svm = final_fit.result()
        lap("fit")
        members = _class_members(labels, np.flatnonzero(trainable), class_names) if knn_all is not None else None

    params = ModelParams(
        labels=np.array(class_names, dtype=object),
        oos_label=oos_label,
        word=word,
        char=char,
        projection=projection,
        coef=np.ascontiguousarray(svm.coef_.T, dtype=np.float32),
        intercept=svm.intercept_.astype(np.float32),
        knn_vectors=knn_all.astype(np.float32) if knn_all is not None else None,
        knn_members=members,
        knn_weight=calibration["knn_weight"],
        knn_k=settings.knn_k,
        temperature=calibration["temperature"],
        threshold=calibration["threshold"],
        encoder_name=getattr(encoder, "name", None) if encoder is not None else None,
        info={"n_train": len(examples), "train_seconds": time.perf_counter() - started,
              "settings": settings.as_dict(), "calibration": calibration,
              "timings": timings},
    )
    log.info("trained topic model: %d examples, %d classes, %.1fs, calibration %s",
             len(examples), len(class_names), params.info["train_seconds"], calibration)
    return LinearTopicModel(params, encoder=encoder)


def _unit_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.maximum(norms, 1e-9)


def _fit_svm(x, labels, trainable, rows, class_names, c) -> LinearSVC:
    # Imported here, not at the top: the web process imports this module (through model_store) but must
    # never load scikit-learn (~100 MB, issue 9); training runs in a child process or a CLI command.
    from sklearn.svm import LinearSVC

    rows = rows[trainable[rows]]
    y = labels[rows].astype(str)
    present = sorted(set(y))
    svm = LinearSVC(C=c, dual=True, max_iter=2000, random_state=0).fit(x[rows], y)
    if present != sorted(class_names) or len(present) == 2:
        return _expand_svm(svm, class_names, x.shape[1])
    order = [list(svm.classes_).index(name) for name in class_names]
    svm.coef_ = svm.coef_[order]
    svm.intercept_ = svm.intercept_[order]
    svm.classes_ = np.array(class_names, dtype=object)
    return svm


def _expand_svm(svm: LinearSVC, class_names: list[str], n_features: int) -> LinearSVC:
    """Give every class a column even if the fit saw fewer (tiny data, binary problems)."""
    coef = np.zeros((len(class_names), n_features), dtype=np.float64)
    intercept = np.full(len(class_names), -1.0)
    seen = list(svm.classes_)
    if len(seen) == 2 and svm.coef_.shape[0] == 1:  # sklearn's binary case: one row for the second class
        rows = {seen[1]: (svm.coef_[0], svm.intercept_[0]), seen[0]: (-svm.coef_[0], -svm.intercept_[0])}
    else:
        rows = {name: (svm.coef_[i], svm.intercept_[i]) for i, name in enumerate(seen)}
    for i, name in enumerate(class_names):
        if name in rows:
            coef[i], intercept[i] = rows[name]
    svm.coef_, svm.intercept_, svm.classes_ = coef, intercept, np.array(class_names, dtype=object)
    return svm


def _class_members(labels: np.ndarray, rows: np.ndarray, class_names: list[str]) -> np.ndarray:
    """(n_classes, max_count) row indices of each class's examples among `rows`; -1 pads."""
    per_class = [np.flatnonzero(labels == name) for name in class_names]
    allowed = np.zeros(len(labels), dtype=bool)
    allowed[rows] = True
    per_class = [r[allowed[r]] for r in per_class]
    width = max(1, max(len(r) for r in per_class))
    members = np.full((len(class_names), width), -1, dtype=np.int64)
    for i, r in enumerate(per_class):
        members[i, :len(r)] = r
    return members


def _holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split; a class with fewer than 3 examples stays entirely in the fit part."""
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for name in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == name)
        rng.shuffle(rows)
        n_held = int(round(len(rows) * fraction)) if len(rows) >= 3 else 0
        n_held = min(n_held, len(rows) - 2) if len(rows) >= 3 else 0
        held.extend(rows[:n_held])
        fit.extend(rows[n_held:])
    return np.array(sorted(fit), dtype=np.int64), np.array(sorted(held), dtype=np.int64)


def _calibrate(x, labels, oos_label, trainable, fit_rows, held_rows, knn_all, class_names, settings) -> dict:
    """Pick the kNN weight, the softmax temperature and the rejection threshold on held-out rows."""
    is_oos = labels == oos_label
    defaults = {"knn_weight": 0.0, "temperature": 0.2, "threshold": 0.5, "held_out": int(len(held_rows))}
    held_in = held_rows[~is_oos[held_rows]]
    if len(held_in) < 10:
        return defaults  # too little data to learn anything reliable; keep conservative defaults
    svm = _fit_svm(x, labels, trainable, fit_rows, class_names, settings.svm_c)
    scores = np.asarray(svm.decision_function(x[held_rows]), dtype=np.float64)
    if scores.ndim == 1:
        scores = np.stack([-scores, scores], axis=1)
    in_cols = np.array([i for i, name in enumerate(class_names) if name != oos_label])
    col = {name: i for i, name in enumerate(class_names)}
    held_labels = labels[held_rows]
    held_oos = is_oos[held_rows]
    target = np.array([col.get(name, -1) for name in held_labels])

    knn = None
    if knn_all is not None:
        members = _class_members(labels, fit_rows[trainable[fit_rows]], class_names)
        knn = np.concatenate([knn_class_scores(knn_all[held_rows[i:i + 512]] @ knn_all.T, members, settings.knn_k)
                              for i in range(0, len(held_rows), 512)])
    oos_col = col.get(oos_label)
    in_target = target[~held_oos]
    # Bayes decision with calibrated probabilities: routing gains 1 when right and
    # loses `cost` when wrong, so route only when P(right) >= cost / (1 + cost).
    # The held-out data calibrates the probabilities (temperature) instead of
    # picking a threshold directly: a threshold searched on a few hundred held-out
    # rows is noisy, and held-out rows are easier than real traffic.
    threshold = settings.misroute_cost / (1.0 + settings.misroute_cost)

    def evaluate_weight(weight: float) -> dict:
        combined = scores + weight * knn if weight else scores
        temperature = _fit_temperature(combined[~held_oos], in_target)
        probs = softmax(combined, temperature)
        top_in = probs[:, in_cols].max(axis=1)
        top_in_col = in_cols[probs[:, in_cols].argmax(axis=1)]
        says_oos = probs.argmax(axis=1) == oos_col if oos_col is not None else np.zeros(len(held_rows), bool)
        correct = (~held_oos) & (top_in_col == target) & ~says_oos
        utility = _routing_utility(top_in >= threshold, correct, ~says_oos, settings.misroute_cost)
        accepted = (top_in >= threshold) & ~says_oos
        return {
            "knn_weight": weight, "temperature": temperature, "threshold": threshold, "utility": utility,
            "accuracy": float((combined[~held_oos].argmax(axis=1) == in_target).mean()),
            "accepted_correct": float((accepted & correct)[~held_oos].mean()),
            "oos_recall": float((~accepted[held_oos]).mean()) if held_oos.any() else None,
        }

    # The kNN weight is chosen by the utility the router would actually get after
    # rejection, not by raw accuracy: similarity to known examples mostly helps to
    # tell "not ours" from "ours", which accuracy alone does not see.
    candidates = [evaluate_weight(w) for w in (settings.knn_weights if knn is not None else (0.0,))]
    best = max(candidates, key=lambda c: c["utility"] + 1e-9 * -c["knn_weight"])
    best_weight, temperature = best["knn_weight"], best["temperature"]
    return {
        "knn_weight": best_weight,
        "temperature": temperature,
        "threshold": threshold,
        "held_out": int(len(held_rows)),
        "held_out_accuracy": best["accuracy"],
        "held_out_in_scope_accuracy_after_rejection": best["accepted_correct"],
        "held_out_oos_recall": best["oos_recall"],
        "candidates": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.items()} for c in candidates],
    }


def _fit_temperature(scores: np.ndarray, target: np.ndarray) -> float:
    """Softmax temperature minimising held-out negative log-likelihood (a 1-D grid search)."""
    rows = np.arange(len(target))
    best_t, best_nll = 1.0, np.inf
    for t in np.geomspace(0.01, 5.0, 60):
        nll = -np.log(softmax(scores, t)[rows, target] + 1e-12).mean()
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def _routing_utility(accept: np.ndarray, correct: np.ndarray, eligible: np.ndarray, cost: float) -> float:
    """Mean gain per held-out row: +1 right route, -cost wrong route (oos rows are always wrong), 0 rejected."""
    routed = accept & eligible
    gain = np.where(correct, 1.0, -cost)
    return float((gain * routed).sum() / max(len(accept), 1))
