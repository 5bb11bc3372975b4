"""Saving, loading and the cached default model.

The shipped model is not a binary in the repository: it is trained from
data/nlu/*.yml (test files excluded) at first start and cached on disk
together with a SHA-256 fingerprint of the training data, the settings and the
code's model format. A change to any of them triggers retraining; otherwise the
cached model is reused. The cache is a pickle written by this process and read
only from the configured cache directory, never from user input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
from pathlib import Path

from .embeddings import load_default_encoder
from .engine import DEFAULT_OOS_LABEL, LinearTopicModel
from .nlu_data import is_test_file, load_many
from .trainer import TrainSettings, train

log = logging.getLogger(__name__)

# Bump when ModelParams or the feature pipeline changes incompatibly.
MODEL_FORMAT_VERSION = 2
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "nlu"
CACHE_FILE_NAME = "topic_model.pkl"
_DATA_SUFFIXES = (".yml", ".yaml", ".csv")


def training_files(data_dir: str | Path = DEFAULT_DATA_DIR) -> list[Path]:
    """Training files of a data directory; held-out test files are never included."""
    data_dir = Path(data_dir)
    files = [p for p in sorted(data_dir.iterdir()) if p.suffix.lower() in _DATA_SUFFIXES and not is_test_file(p)]
    if not files:
        raise FileNotFoundError(f"no training files (*.yml, *.csv) in {data_dir}")
    return files


def fingerprint(files: list[Path], settings: TrainSettings, oos_label: str, encoder_name: str | None) -> str:
    digest = hashlib.sha256()
    meta = {"format": MODEL_FORMAT_VERSION, "settings": settings.as_dict(), "oos_label": oos_label,
            "encoder": encoder_name}
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for path in files:
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def save_model(model: LinearTopicModel, path: str | Path, fingerprint_value: str | None = None) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": MODEL_FORMAT_VERSION, "fingerprint": fingerprint_value, "params": model.params}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_payload(path: Path) -> dict:
    with path.open("rb") as handle:
        payload = pickle.load(handle)  # noqa: S301 - our own cache file, see module docstring
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT_VERSION:
        raise ValueError(f"{path}: model format is not {MODEL_FORMAT_VERSION}")
    return payload


def load_model(path: str | Path) -> LinearTopicModel:
    return LinearTopicModel(_read_payload(Path(path))["params"])


def load_or_train_default(
    cache_dir: str | Path,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    settings: TrainSettings = TrainSettings(),
    oos_label: str = DEFAULT_OOS_LABEL,
) -> LinearTopicModel:
    """The shipped model: reuse the cache when its fingerprint matches, else train and cache."""
    files = training_files(data_dir)
    encoder = load_default_encoder(table_dir=cache_dir)
    expected = fingerprint(files, settings, oos_label, encoder.name if encoder is not None else None)
    cache_path = Path(cache_dir) / CACHE_FILE_NAME
    if cache_path.is_file():
        try:
            payload = _read_payload(cache_path)
            if payload.get("fingerprint") == expected:
                return LinearTopicModel(payload["params"], encoder=encoder)
            log.info("topic model cache is stale (training data or settings changed); retraining")
        except Exception as exc:  # corrupt or old cache: retrain rather than fail the start-up
            log.warning("cannot read topic model cache %s (%s); retraining", cache_path, exc)
    model = train(load_many(files), oos_label=oos_label, settings=settings, encoder=encoder)
    save_model(model, cache_path, expected)
    log.info("topic model trained from %d files and cached at %s", len(files), cache_path)
    return model
