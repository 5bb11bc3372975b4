"""Training data loading: Rasa NLU YAML (``version: "3.1"``) or CSV with header ``text,label``.

Errors in a file raise DataFormatError with one readable line naming the file
and the problem, so the CLI can print it instead of a traceback.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Example:
    text: str
    label: str


class DataFormatError(ValueError):
    pass


# Rasa entity annotations: "[Москва](city)", "[Москва]{"entity": "city"}" -> "Москва"
_ENTITY_RE = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")
_TEST_FILE_RE = re.compile(r"(^|[_.-])test([_.-]|$)", re.IGNORECASE)


def strip_entities(text: str) -> str:
    return _ENTITY_RE.sub(r"\1", text)


def is_test_file(path: str | Path) -> bool:
    """Held-out files are named test_*.yml / *_test.yml and must never be trained on."""
    return bool(_TEST_FILE_RE.search(Path(path).stem))


def load_examples(path: str | Path) -> list[Example]:
    """Load one file; the format is chosen by extension (.yml/.yaml or .csv)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in (".yml", ".yaml"):
        examples = load_rasa_yaml(path)
    elif suffix in (".csv", ".tsv", ".txt"):
        examples = load_csv(path)
    else:
        raise DataFormatError(f"{path}: unknown format {suffix or '(no extension)'}; use .yml or .csv")
    if not examples:
        raise DataFormatError(f"{path}: no examples found")
    return examples


def load_many(paths: list[str | Path]) -> list[Example]:
    examples: list[Example] = []
    for path in paths:
        examples.extend(load_examples(path))
    return examples


def load_csv(path: str | Path) -> list[Example]:
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if "text" not in fields or "label" not in fields:
                raise DataFormatError(f"{path}: CSV needs a header with columns text,label (found {fields})")
            reader.fieldnames = fields
            examples = []
            for line_no, row in enumerate(reader, start=2):
                text, label = row.get("text"), row.get("label")
                if text is None or label is None or None in row:
                    raise DataFormatError(f"{path}:{line_no}: expected 2 columns text,label")
                text, label = text.strip(), label.strip()
                if not label:
                    raise DataFormatError(f"{path}:{line_no}: empty label")
                if text:
                    examples.append(Example(text, label))
            return examples
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DataFormatError(f"{path}: malformed CSV ({exc})") from None


def load_rasa_yaml(path: str | Path) -> list[Example]:
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DataFormatError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("nlu"), list):
        raise DataFormatError(f"{path}: expected a Rasa NLU file with a top-level 'nlu:' list")
    examples: list[Example] = []
    for position, item in enumerate(document["nlu"], start=1):
        if not isinstance(item, dict):
            raise DataFormatError(f"{path}: nlu item #{position} is not a mapping")
        if "intent" not in item:
            continue  # synonyms, regexes and lookup tables carry no training sentences
        label = str(item["intent"]).strip()
        if not label:
            raise DataFormatError(f"{path}: nlu item #{position} has an empty intent name")
        for text in _intent_examples(item.get("examples"), path, label):
            examples.append(Example(text, label))
    return examples


def _intent_examples(raw, path: Path, label: str) -> list[str]:
    if raw is None:
        raise DataFormatError(f"{path}: intent {label!r} has no examples")
    texts: list[str] = []
    if isinstance(raw, str):
        for line in raw.splitlines():
            line = line.strip()
            if not line:
                continue
            if not line.startswith("-"):
                raise DataFormatError(f"{path}: intent {label!r}: example line must start with '- ': {line[:60]!r}")
            texts.append(line[1:].strip())
    elif isinstance(raw, list):  # the long form: "- text: ..." entries
        for entry in raw:
            text = entry.get("text") if isinstance(entry, dict) else entry
            if not isinstance(text, str):
                raise DataFormatError(f"{path}: intent {label!r}: bad example entry {entry!r}")
            texts.append(text.strip())
    else:
        raise DataFormatError(f"{path}: intent {label!r}: 'examples' must be a block of '- ' lines")
    return [strip_entities(t) for t in texts if t]
