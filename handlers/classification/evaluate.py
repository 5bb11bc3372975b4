"""Evaluation: accuracy, per-topic precision/recall, confusions, rejection and latency.

Definitions (as in the CLINC150 paper, Larson et al. 2019):
- accuracy: over all test rows; an out-of-scope row is right when rejected.
- in_scope_accuracy: over in-scope rows; a rejected in-scope row counts as wrong.
- oos_recall: share of out-of-scope rows that were rejected.
- macro_f1: mean F1 over the in-scope topics plus the out-of-scope label.
- p50_ms/p99_ms: latency of classify() called one text at a time.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .engine import TopicClassifier
from .nlu_data import Example


@dataclass
class EvaluationReport:
    accuracy: float
    in_scope_accuracy: float
    macro_f1: float
    oos_recall: float | None
    p50_ms: float
    p99_ms: float
    n_test: int
    # CPU time of the calling thread per request: what the request costs on one core
    # even when other processes compete for the CPU (wall-clock p50/p99 include waiting).
    cpu_p50_ms: float = 0.0
    cpu_p99_ms: float = 0.0
    per_topic: dict[str, dict[str, float]] = field(default_factory=dict)
    confusions: list[tuple[str, str, int]] = field(default_factory=list)

    def metrics(self) -> dict:
        return {
            "accuracy": round(self.accuracy, 4),
            "in_scope_accuracy": round(self.in_scope_accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "oos_recall": None if self.oos_recall is None else round(self.oos_recall, 4),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
        }


def evaluate(model: TopicClassifier, test: list[Example], oos_label: str | None = None,
             warmup: int = 20) -> EvaluationReport:
    """Without an oos_label the data set has no "not ours" answer: the best-ranked
    topic is scored even when the model would reject (pure topic accuracy)."""
    apply_rejection = oos_label is not None
    oos = oos_label or model.oos_label
    for example in test[:warmup]:  # first calls fill caches and page in weights
        model.classify(example.text)
    predicted: list[str] = []
    latencies: list[float] = []
    cpu_times: list[float] = []
    for example in test:
        started, cpu_started = time.perf_counter(), time.thread_time()
        result = model.classify(example.text)
        latencies.append((time.perf_counter() - started) * 1000.0)
        cpu_times.append((time.thread_time() - cpu_started) * 1000.0)
        if apply_rejection:
            predicted.append(oos if result.rejected else result.topic)
        else:
            predicted.append(result.ranking[0].topic if result.ranking else oos)
    gold = [oos if e.label == oos or e.label == model.oos_label else e.label for e in test]
    gold_arr, pred_arr = np.array(gold, dtype=object), np.array(predicted, dtype=object)
    in_scope = gold_arr != oos
    per_topic = _per_topic(gold, predicted)
    f1s = [v["f1"] for v in per_topic.values()]
    pairs = Counter((g, p) for g, p in zip(gold, predicted, strict=True) if g != p)
    return EvaluationReport(
        accuracy=float((gold_arr == pred_arr).mean()) if len(test) else 0.0,
        in_scope_accuracy=float((gold_arr == pred_arr)[in_scope].mean()) if in_scope.any() else 0.0,
        macro_f1=float(np.mean(f1s)) if f1s else 0.0,
        oos_recall=float((pred_arr[~in_scope] == oos).mean()) if (~in_scope).any() else None,
        p50_ms=float(np.percentile(latencies, 50)) if latencies else 0.0,
        p99_ms=float(np.percentile(latencies, 99)) if latencies else 0.0,
        n_test=len(test),
        cpu_p50_ms=float(np.percentile(cpu_times, 50)) if cpu_times else 0.0,
        cpu_p99_ms=float(np.percentile(cpu_times, 99)) if cpu_times else 0.0,
        per_topic=per_topic,
        confusions=[(g, p, n) for (g, p), n in pairs.most_common(10)],
    )


def _per_topic(gold: list[str], predicted: list[str]) -> dict[str, dict[str, float]]:
    result = {}
    for topic in sorted(set(gold) | set(predicted)):
        tp = sum(1 for g, p in zip(gold, predicted, strict=True) if g == topic and p == topic)
        n_pred = sum(1 for p in predicted if p == topic)
        n_gold = sum(1 for g in gold if g == topic)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[topic] = {"precision": precision, "recall": recall, "f1": f1, "support": n_gold}
    return result


def format_report(report: EvaluationReport, max_topics: int = 60) -> str:
    lines = [f"{'topic':32s} {'precision':>9s} {'recall':>7s} {'f1':>6s} {'support':>8s}"]
    topics = sorted(report.per_topic.items(), key=lambda kv: kv[1]["f1"])
    if len(topics) > max_topics:
        lines.append(f"(the {max_topics} topics with the lowest F1 of {len(topics)})")
        topics = topics[:max_topics]
    for topic, m in sorted(topics):
        lines.append(f"{topic[:32]:32s} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} {m['support']:8d}")
    if report.confusions:
        lines.append("")
        lines.append("most confused (expected -> predicted: count):")
        lines.extend(f"  {g} -> {p}: {n}" for g, p, n in report.confusions)
    m = report.metrics()
    lines.append("")
    lines.append(f"accuracy {m['accuracy']:.4f}  in-scope accuracy {m['in_scope_accuracy']:.4f}  "
                 f"macro F1 {m['macro_f1']:.4f}  oos recall {m['oos_recall']}  "
                 f"latency p50 {m['p50_ms']:.3f} ms p99 {m['p99_ms']:.3f} ms "
                 f"(CPU time p50 {report.cpu_p50_ms:.3f} ms p99 {report.cpu_p99_ms:.3f} ms)  (n={report.n_test})")
    return "\n".join(lines)
