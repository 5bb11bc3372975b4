"""Benchmark: duplicate search over 100,000 customers.

    python -m bench.duplicates [--rows 100000] [--duplicate-share 0.02]

Synthetic customers (Russian full names drawn from common surnames, first names and patronymics, so
namesakes are frequent as in life) with a share of planted duplicates: the same person again with a typo
in the name, the phone in another format or another e-mail. Measures `find_duplicate_pairs` (blocking keys +
rapidfuzz scoring) and reports how many planted duplicates were found as sure matches, and how many sure
matches were not planted (false positives). Target: under a minute.
"""

from __future__ import annotations

import argparse
import random
import time

from bench._selfservice import person_name, phone_of


def _typo(name: str, rng: random.Random) -> str:
    chars = list(name)
    i = rng.randrange(len(chars))
    while chars[i] == " ":
        i = rng.randrange(len(chars))
    op = rng.choice(("swap", "drop", "replace"))
    if op == "swap" and i + 1 < len(chars) and chars[i + 1] != " ":
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    elif op == "drop":
        del chars[i]
    else:
        chars[i] = rng.choice("аеиоуыэюя")
    return "".join(chars)


def make_records(rows: int, share: float, seed: int = 3):  # type: ignore[no-untyped-def]
    from handlers.duplicates import CustomerRecord

    rng = random.Random(seed)
    originals = int(rows * (1 - share))
    records = [CustomerRecord(id=i + 1, name=person_name(rng), phones=(phone_of(i),),
                              email=f"client{i}@mail.example" if rng.random() < 0.7 else None)
               for i in range(originals)]
    planted: set[tuple[int, int]] = set()
    for j in range(rows - originals):
        src = records[rng.randrange(originals)]
        variant = rng.choice(("typo_phone", "typo_email", "reorder_phone"))
        name = _typo(src.name, rng) if variant != "reorder_phone" else " ".join(reversed(src.name.split()))
        phones = src.phones if variant != "typo_email" else (phone_of(originals + j + 10_000_000),)
        email = src.email if variant == "typo_email" and src.email else None
        if variant == "typo_email" and not src.email:
            phones = src.phones
        new_id = originals + j + 1
        records.append(CustomerRecord(id=new_id, name=name, phones=phones, email=email))
        planted.add((src.id, new_id))
    rng.shuffle(records)
    return records, planted


def main(argv: list[str] | None = None) -> int:
    from handlers.duplicates import find_duplicate_pairs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--duplicate-share", type=float, default=0.02)
    args = parser.parse_args(argv)
    records, planted = make_records(args.rows, args.duplicate_share)
    started = time.perf_counter()
    pairs = find_duplicate_pairs(records)
    elapsed = time.perf_counter() - started
    sure = {(p.a, p.b) for p in pairs if p.sure}
    found = len(planted & sure)
    false_sure = len(sure - planted)
    verdict = "OK" if elapsed < 60 * args.rows / 100_000 else "SLOWER THAN TARGET"
    print(f"{args.rows:,} customers, {len(planted):,} planted duplicates: {len(pairs):,} candidate pairs "
          f"({len(sure):,} sure) in {elapsed:.1f}s ({verdict}); planted found as sure {found:,} "
          f"({found / max(1, len(planted)):.1%}), found at all {len(planted & {(p.a, p.b) for p in pairs}):,}; "
          f"sure but not planted {false_sure:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
