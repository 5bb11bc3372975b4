"""All benchmarks in one command, with one summary table.

    python -m bench [--quick] [--only NAME ...] [--database-url URL] [--redis-url URL] [--out DIR]

Runs every benchmark module as its own process on PostgreSQL + Redis (the service's production setup;
each benchmark makes a private database and Redis prefix and removes them), one after the other so they do
not compete for the machine, and prints a Markdown table: throughput, p50/p99 latency and errors, each load
next to its bare baseline measured in the same run (bare aiohttp TwiML handler, bare aiogram echo bot, bare
action handler) and as a ratio to it, the peak memory of the process that served the load, and whether the
issue's target is met. Full outputs go to `--out` (default bench/results/). `--quick` shrinks the sizes
for a smoke run; the README's figures come from a full run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
    or "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"


@dataclass
class Step:
    name: str
    args: list[str]
    target: str
    quick_args: list[str] | None = None
    json_output: bool = False


@dataclass
class Outcome:
    step: Step
    code: int
    seconds: float
    peak_rss_mb: float
    output: str
    rows: list[dict[str, Any]] = field(default_factory=list)


def steps(db: str, redis: str) -> list[Step]:
    pg = ["--database-url", db]
    both = [*pg, "--redis-url", redis]
    return [
        Step("startup", ["-m", "bench.startup", "--runs", "3"], "/health within 5 s of a fresh start",
             ["-m", "bench.startup", "--runs", "1"]),
        Step("classification", ["-m", "bench.classification"],
             "CLINC150 in-scope acc >= 0.94 with oos recall >= 0.60, p99 <= 2 ms, train <= 60 s; shipped >= 0.92",
             ["-m", "bench.classification", "--skip-clinc"]),
        Step("tickets", ["-m", "bench.tickets", "--seconds", "10", *both], ">= 1,000 tickets/s on PostgreSQL",
             ["-m", "bench.tickets", "--seconds", "3", "--customers", "5000", *both]),
        # The outbox lives in SQLite here (the benchmark measures pacing against the Bot API, not the
        # database); the dispatchers share Redis for the global send schedule, as separate processes would.
        Step("dispatcher", ["-m", "bench.dispatcher", "--messages", "600", "--dispatchers", "2", "--redis-url", redis],
             "29-30 messages/s, no 429", ["-m", "bench.dispatcher", "--messages", "120", "--redis-url", redis]),
        Step("bot", ["-m", "bench.bot", "--users", "5000", "--concurrency", "50", *both, "--json"],
             ">= 50% of bare aiogram echo throughput, p99 < 100 ms at 50 connections",
             ["-m", "bench.bot", "--users", "500", "--concurrency", "50", *both, "--json"], json_output=True),
        Step("ivr", ["-m", "bench.ivr", "--seconds", "10", "--concurrency", "100", *both, "--json"],
             ">= 2,000 first steps/s, p99 < 20 ms at 100 concurrent calls",
             ["-m", "bench.ivr", "--seconds", "3", "--concurrency", "100", *both, "--json"], json_output=True),
        Step("rasa", ["-m", "bench.rasa", "--seconds", "10", *both, "--json"], "no target set by the issue",
             ["-m", "bench.rasa", "--seconds", "3", *both, "--json"], json_output=True),
        Step("memory", ["-m", "bench.memory", "--seconds", "30", *both], "web process under mixed load < 300 MB",
             ["-m", "bench.memory", "--seconds", "5", *both]),
        Step("imports", ["-m", "bench.imports", "--rows", "1000000", *pg], "1,000,000 customers in < 5 min",
             ["-m", "bench.imports", "--rows", "20000", *pg]),
        Step("lookup", ["-m", "bench.lookup", "--rows", "1000000", *pg], "look-up by phone p99 < 2 ms",
             ["-m", "bench.lookup", "--rows", "20000", *pg]),
        Step("duplicates", ["-m", "bench.duplicates", "--rows", "100000"], "100,000 customers in < 1 min",
             ["-m", "bench.duplicates", "--rows", "10000"]),
    ]


def run_step(step: Step, quick: bool, out_dir: Path) -> Outcome:
    args = step.quick_args if quick and step.quick_args else step.args
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    # Reap the process ourselves: wait4 reports this very process's peak memory (the benchmarks serve the
    # load from their own process; load generators are their children and are not counted).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    outcome = Outcome(step, proc.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024, output)
    (out_dir / f"{step.name}.txt").write_text(output, encoding="utf-8")
    if step.json_output:
        outcome.rows = _load_rows(output)
    return outcome


def _load_rows(output: str) -> list[dict[str, Any]]:
    """Every measured load in a benchmark's JSON: dicts that carry `rps` and `p99_ms`."""
    data = _json_document(output)
    rows: list[dict[str, Any]] = []

    def walk(node: Any, label: str) -> None:
        if isinstance(node, dict):
            if "rps" in node and "p99_ms" in node:
                rows.append({"label": label, **node})
                return
            for key, value in node.items():
                walk(value, str(key))

    walk(data, "")
    return rows


def _json_document(output: str) -> Any:
    """The JSON object a benchmark printed, found among log lines (which may hold braces of their own, e.g. a
    logged dict): the first line that starts one and parses."""
    decoder = json.JSONDecoder()
    position = 0
    for line in output.splitlines(keepends=True):
        if line.startswith("{"):
            try:
                return decoder.raw_decode(output, position)[0]
            except ValueError:
                pass
        position += len(line)
    return {}


def _is_baseline(label: str) -> bool:
    return bool(re.search(r"bare|echo|baseline|fixed", label, re.I))


_VERDICT = re.compile(r"\b(OK|NOT MET|BELOW TARGET|ABOVE TARGET|PASS|FAIL)\b")
_FIGURE = re.compile(r"(per_second|/s\b|p99|in-scope accuracy|\bratio\b)")


def _headline(outcome: Outcome) -> str:
    """The benchmark's own verdict and key figures: plain-text lines only (JSON fragments and progress
    bars are left out; loads measured next to a baseline are in the table above)."""
    lines = [line.strip() for line in outcome.output.splitlines()]
    lines = [line for line in lines if line and not line.startswith(('"', "{", "}", "[", "]"))
             and "[#" not in line and "[-" not in line]
    keep = [line for line in lines if _VERDICT.search(line) or _FIGURE.search(line)]
    if keep:
        return " · ".join(keep[-3:])[:400]
    return "figures in the table above" if outcome.rows else (lines[-1][:400] if lines else "")


def render(outcomes: list[Outcome], quick: bool) -> str:
    lines = [
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; load average before: "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; {'quick sizes' if quick else 'full sizes'}.",
        "",
        "| load | throughput (/s) | p50 ms | p99 ms | errors | vs baseline (throughput, p99) |",
        "|---|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        baseline = next((r for r in outcome.rows if _is_baseline(r["label"])), None)
        for row in outcome.rows:
            ratio = ""
            if baseline is not None and row is not baseline and baseline.get("rps"):
                ratio = f"{row['rps'] / baseline['rps']:.2f}x, {row['p99_ms'] / max(baseline['p99_ms'], 1e-9):.1f}x"
            errors = row.get("errors", row.get("sent", 0) - row.get("ok", row.get("sent", 0)))
            lines.append(f"| {outcome.step.name}: {row['label']} | {row['rps']:,.0f} | {row['p50_ms']:.1f} | "
                         f"{row['p99_ms']:.1f} | {errors} | {ratio or ('baseline' if row is baseline else '')} |")
    lines += ["", "| benchmark | target | result | peak RSS of its process | took | exit |", "|---|---|---|---|---|---|"]
    for outcome in outcomes:
        lines.append(f"| {outcome.step.name} | {outcome.step.target} | {_headline(outcome)} | "
                     f"{outcome.peak_rss_mb:.0f} MB | {outcome.seconds:.0f} s | {outcome.code} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--only", nargs="*", help="run only these benchmarks")
    parser.add_argument("--database-url", default=DEFAULT_DB, help="PostgreSQL server (private databases are made)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in steps(args.database_url, args.redis_url) if not args.only or s.name in args.only]
    outcomes = []
    for step in chosen:
        print(f"== {step.name}: {step.target}", flush=True)
        outcome = run_step(step, args.quick, args.out)
        outcomes.append(outcome)
        print("\n".join(outcome.output.rstrip().splitlines()[-6:]), flush=True)
        print(f"   ({outcome.seconds:.0f} s, exit {outcome.code})\n", flush=True)
    table = render(outcomes, args.quick)
    (args.out / "summary.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    return 0 if all(o.code == 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
