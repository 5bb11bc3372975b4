"""Saving, loading and the cached default model.

The shipped model is not a binary in the repository: it is trained from
data/nlu/*.yml (test files excluded) at first start and cached on disk
together with a SHA-256 fingerprint of the training data, the settings and the
code's model format. A change to any of them triggers retraining; otherwise the
cached model is reused. The cache is a pickle written by this process (or the
training child process it starts) and read only from the configured cache
directory, never from user input.

Training needs scikit-learn and SciPy; loading and predicting need neither. A web process must stay small
(issue 9: importing them costs ~100 MB that would never be given back), so by default the training runs
in a child process (`python -m handlers.classification.model_store`) that writes the cache, and the
calling process then loads the cache. CLI tools and tests may train in their own process
(`in_process=True`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .embeddings import SentenceEncoder, load_default_encoder
from .engine import DEFAULT_OOS_LABEL, LinearTopicModel
from .nlu_data import is_test_file, load_many
from .trainer import TrainSettings  # trainer imports scikit-learn only when it trains

# This module's name also when it runs as the training child (`python -m`, where __name__ is "__main__").
_MODULE = __spec__.name if __spec__ is not None else __name__
log = logging.getLogger(_MODULE)

# Bump when ModelParams or the feature pipeline changes incompatibly.
# 3: n-gram blocks are plain data (analyzer settings, vocabulary, idf), no scikit-learn objects.
# 4: the sentence encoder's per-piece rows are rounded to float16 (piece_table.py): vectors moved by ~1e-3.
MODEL_FORMAT_VERSION = 4
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = _PROJECT_ROOT / "data" / "nlu"
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


class TrainingFailed(RuntimeError):
    """Training in the child process failed; the message names the child's error (e.g. bad training data)."""

    def __init__(self, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type


def load_or_train_default(
    cache_dir: str | Path,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    settings: TrainSettings = TrainSettings(),
    oos_label: str = DEFAULT_OOS_LABEL,
    *,
    in_process: bool = False,
) -> LinearTopicModel:
    """The shipped model: reuse the cache when its fingerprint matches, else train, cache and load it.

    Training runs in a child process unless `in_process` is true (see the module docstring); a failure
    there raises TrainingFailed here."""
    files = training_files(data_dir)
    encoder = load_default_encoder(table_dir=cache_dir)
    expected = fingerprint(files, settings, oos_label, encoder.name if encoder is not None else None)
    cache_path = Path(cache_dir) / CACHE_FILE_NAME
    cached = _load_cached(cache_path, expected, encoder)
    if cached is not None:
        return cached
    if in_process:
        return _train_and_cache(files, cache_path, expected, settings, oos_label, encoder)
    _train_in_child(cache_dir, data_dir, settings, oos_label)
    payload = _read_payload(cache_path)
    if payload.get("fingerprint") != expected:  # the training data changed while the child trained
        log.warning("topic model cache %s was trained from other data than this process sees", cache_path)
    return LinearTopicModel(payload["params"], encoder=encoder)


def _load_cached(cache_path: Path, expected: str, encoder: SentenceEncoder | None) -> LinearTopicModel | None:
    if not cache_path.is_file():
        return None
    try:
        payload = _read_payload(cache_path)
        if payload.get("fingerprint") == expected:
            return LinearTopicModel(payload["params"], encoder=encoder)
        log.info("topic model cache is stale (training data or settings changed); retraining")
    except Exception as exc:  # corrupt or old cache: retrain rather than fail the start-up
        log.warning("cannot read topic model cache %s (%s); retraining", cache_path, exc)
    return None


def _train_and_cache(files: list[Path], cache_path: Path, expected: str, settings: TrainSettings,
                     oos_label: str, encoder: SentenceEncoder | None) -> LinearTopicModel:
    from .trainer import train  # loads scikit-learn for good: only in CLI tools and the training child

    model = train(load_many(files), oos_label=oos_label, settings=settings, encoder=encoder)
    save_model(model, cache_path, expected)
    log.info("topic model trained from %d files and cached at %s", len(files), cache_path)
    return model


# -- training in a child process ------------------------------------------------------------------
# The parent sends the arguments as a pickle on the child's stdin (its own objects, to its own child);
# the child logs to the inherited stderr and answers with one JSON line on stdout.


def _train_in_child(cache_dir: str | Path, data_dir: str | Path, settings: TrainSettings, oos_label: str) -> None:
    request = {"cache_dir": str(Path(cache_dir).resolve()), "data_dir": str(Path(data_dir).resolve()),
               "settings": settings, "oos_label": oos_label, "parent": os.getpid()}
    env = dict(os.environ)
    # The child must import this package even when the parent was started from another folder.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    log.info("training the topic model in a child process (first start, or the training data changed)")
    done = subprocess.run([sys.executable, "-m", _MODULE],  # noqa: S603
                          input=pickle.dumps(request), stdout=subprocess.PIPE, env=env, check=False)
    answer = _last_json_line(done.stdout)
    if done.returncode == 0 and answer.get("ok"):
        return
    if "error" in answer:
        raise TrainingFailed(f"training the topic model failed: {answer['error']}: {answer.get('message')}",
                             answer["error"])
    how = f"was killed by signal {-done.returncode}" if done.returncode < 0 else f"exited with {done.returncode}"
    raise TrainingFailed(f"training the topic model failed: the training process {how} (see its log above)")


def _last_json_line(output: bytes) -> dict:
    for line in reversed(output.decode("utf-8", "replace").splitlines()):
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        if isinstance(answer, dict):
            return answer
    return {}


def _exit_when_orphaned(parent: int) -> None:
    """Training takes a while; nobody waits for it any more once the process that started it is gone."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child_main() -> int:
    answer_to = sys.stdout
    sys.stdout = sys.stderr  # stray prints from libraries must not garble the answer line
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s (training): %(message)s")
    try:
        request = pickle.load(sys.stdin.buffer)  # noqa: S301 - written by our parent, see _train_in_child
        _exit_when_orphaned(request["parent"])
        load_or_train_default(request["cache_dir"], request["data_dir"], request["settings"],
                              request["oos_label"], in_process=True)
    except Exception as exc:
        log.exception("training the topic model failed")
        answer = {"error": type(exc).__name__, "message": str(exc)}
    else:
        answer = {"ok": True}
    answer_to.write(json.dumps(answer) + "\n")
    answer_to.flush()
    return 0 if answer.get("ok") else 1


if __name__ == "__main__":
    sys.exit(_child_main())
