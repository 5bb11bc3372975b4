"""CSV reading shared by the importers: header checks, line numbers, value parsing, the report.

Files are UTF-8 (a BOM from Excel is accepted) with a header row; `;`-separated files from Russian Excel
are recognised too. Every bad row is reported with its line number and reason and skipped; the rest goes in.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from handlers.dto import InvalidRequest

Progress = Callable[[int, int], None]  # (rows done, rows in file)
MAX_FIELD = 10_000
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


class RowError(ValueError):
    """A row that cannot be imported; the message is the reason shown to the operator."""


@dataclass
class ImportReport:
    kind: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[tuple[int, str]] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.errors)

    def error(self, line: int, reason: str) -> None:
        self.errors.append((line, reason))

    def warn(self, line: int, reason: str) -> None:
        self.warnings.append((line, reason))

    def summary(self) -> str:
        return (f"{self.kind}: {self.rows} rows read, {self.created} created, {self.updated} updated, "
                f"{self.unchanged} unchanged, {self.skipped} skipped, {len(self.warnings)} warnings")


def count_rows(path: Path) -> int:
    """Data rows in the file (lines minus the header), cheaply, for the progress bar."""
    with path.open("rb") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    return max(0, lines - 1)


def read_rows(path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for every data row; InvalidRequest when the file itself is unusable."""
    try:
        fh = path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InvalidRequest(f"{path}: cannot open: {exc.strerror or exc}") from None
    with fh:
        try:
            sample = fh.read(64 * 1024)
        except UnicodeDecodeError:
            raise InvalidRequest(f"{path}: not UTF-8 text; save the file as CSV UTF-8") from None
        fh.seek(0)
        first_line = sample.splitlines()[0] if sample else ""
        delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise InvalidRequest(f"{path}: the file is empty; expected a header row") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"{path}: cannot read the header: {exc}") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise InvalidRequest(f"{path}: missing column(s) {', '.join(missing)}; the header must contain "
                                 f"{', '.join(required)} (optional: {', '.join(optional)})")
        known = set(required) | set(optional)
        columns = [(i, name) for i, name in enumerate(header) if name in known]
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                # The decoder cannot resynchronise reliably: stop here, what came before is imported.
                raise InvalidRequest(f"{path}: not UTF-8 text after line {reader.line_num}; "
                                     "save the file as CSV UTF-8") from None
            except csv.Error as exc:
                yield reader.line_num, {"__error__": f"broken CSV: {exc}"}
                continue
            if not any(v.strip() for v in values):
                continue  # blank line
            if len(values) > len(header):
                yield reader.line_num, {"__error__": f"{len(values)} fields, the header has {len(header)}"}
                continue
            row = {name: (values[i].strip() if i < len(values) else "") for i, name in columns}
            if any(len(v) > MAX_FIELD for v in row.values()):
                yield reader.line_num, {"__error__": "a field is too long"}
                continue
            yield reader.line_num, row


def need(row: dict[str, str], name: str, max_len: int = 300) -> str:
    value = row.get(name, "")
    if not value:
        raise RowError(f"{name} is empty")
    if len(value) > max_len:
        raise RowError(f"{name} is longer than {max_len} characters")
    return value


def parse_decimal(value: str, name: str) -> Decimal:
    text = value.replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise RowError(f"{name} {value!r} is not a number") from None
    if not number.is_finite() or abs(number) >= Decimal("1e12"):
        raise RowError(f"{name} {value!r} is out of range")
    return number.quantize(Decimal("0.01"))


def parse_date(value: str, name: str) -> date:
    if len(value) == 10 and value[4] == "-":
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    for fmt in ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise RowError(f"{name} {value!r} is not a date (YYYY-MM-DD or DD.MM.YYYY)")


def parse_email(value: str) -> str:
    email = value.strip().lower()
    if not _EMAIL.match(email) or len(email) > 254:
        raise RowError(f"email {value!r} is not an e-mail address")
    return email


def parse_bool(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "y", "да", "on", "+"):
        return True
    if text in ("0", "false", "no", "n", "нет", "off", "-"):
        return False
    raise RowError(f"{name} {value!r} is not true/false")
