"""The single-text feature fast path must give exactly scikit-learn's TF-IDF rows."""

import pickle

import numpy as np
import pytest

from handlers.classification.features import NgramBlock

TRAIN = [
    "internet does not work", "my router is broken", "pay the bill", "pay pay the bill twice",
    "не работает интернет", "оплата счета", "internet ne rabotaet", "slow slow slow connection",
]
QUERIES = [
    "internet does not work at all", "pay the bill the bill", "роутер не работает", "", "zzz qqq",
    "slow connection slow", "a", "the the the the",
]


@pytest.fixture(params=["word", "char"])
def block(request):
    if request.param == "word":
        return NgramBlock.fit(TRAIN, ngram_range=(1, 2), tokenizer=str.split, token_pattern=None)
    return NgramBlock.fit(TRAIN, analyzer="char_wb", ngram_range=(2, 5), min_df=1)


def _dense(block, text):
    idx, values = block.transform_one(text)
    row = np.zeros(block.size, dtype=np.float32)
    row[idx] = values
    return row


@pytest.mark.parametrize("copy", [False, True])
def test_transform_one_equals_sklearn(block, copy):
    if copy:  # the per-word cache is not pickled; a loaded model rebuilds it
        block = pickle.loads(pickle.dumps(block))
    expected = block.transform(QUERIES).toarray()
    for _ in range(2):  # second round is served from the per-word cache
        got = np.stack([_dense(block, q) for q in QUERIES])
        assert np.allclose(got, expected, atol=1e-6)


def test_char_block_uses_per_word_cache():
    block = NgramBlock.fit(TRAIN, analyzer="char_wb", ngram_range=(2, 5), min_df=1)
    block.transform_one("internet works")
    assert set(block._word_columns) == {"internet", "works"}
