"""The benchmark summary finds a benchmark's JSON among its log lines."""

from bench.__main__ import _load_rows


def test_rows_are_found_after_a_log_line_that_holds_braces():
    output = ("2026-11-23 06:35:48 INFO trainer: trained topic model: calibration {'knn_weight': 2.0}\n"
              '{\n  "echo": {"rps": 600.0, "p50_ms": 70.0, "p99_ms": 260.0},\n'
              '  "product": {"rps": 60.0, "p50_ms": 750.0, "p99_ms": 1500.0}\n}\n')
    assert [(row["label"], row["rps"]) for row in _load_rows(output)] == [("echo", 600.0), ("product", 60.0)]


def test_no_json_gives_no_rows():
    assert _load_rows("startup: median 1.2 s {not json}\n") == []
