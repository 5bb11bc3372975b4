"""The n-gram blocks must give exactly scikit-learn's TF-IDF rows, batch and single-text, and pickle as plain data."""

import pickle
import pickletools

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from handlers.classification.features import NgramBlock

TRAIN = [
    "internet does not work", "my router is broken", "pay the bill", "pay pay the bill twice",
    "не работает интернет", "оплата счета", "internet ne rabotaet", "slow slow slow connection",
]
QUERIES = [
    "internet does not work at all", "pay the bill the bill", "роутер не работает", "", "zzz qqq",
    "slow connection slow", "a", "the the the the",
]


def _sklearn(kind):
    """The vectoriser the classifier used before its blocks became plain data."""
    if kind == "word":
        vectorizer = TfidfVectorizer(sublinear_tf=True, lowercase=False, dtype=np.float32, ngram_range=(1, 2),
                                     tokenizer=str.split, token_pattern=None)
    else:
        vectorizer = TfidfVectorizer(sublinear_tf=True, lowercase=False, dtype=np.float32, analyzer="char_wb",
                                     ngram_range=(2, 5), min_df=1)
    return vectorizer.fit(TRAIN)


@pytest.fixture(params=["word", "char"])
def kind(request):
    return request.param


def _block(kind):
    if kind == "word":
        return NgramBlock.fit_words(TRAIN, (1, 2))
    return NgramBlock.fit_chars(TRAIN, (2, 5), min_df=1)


def _dense(block, text):
    idx, values = block.transform_one(text)
    row = np.zeros(block.size, dtype=np.float32)
    row[idx] = values
    return row


def test_batch_transform_equals_sklearn(kind):
    block, reference = _block(kind), _sklearn(kind)
    assert block.tfidf.vocabulary == reference.vocabulary_
    expected = reference.transform(TRAIN + QUERIES)
    got = block.transform(TRAIN + QUERIES)
    assert got.dtype == np.float32
    assert np.array_equal(got.toarray(), expected.toarray())


@pytest.mark.parametrize("copy", [False, True])
def test_transform_one_equals_sklearn(kind, copy):
    block = _block(kind)
    if copy:  # the per-word cache is not pickled; a loaded model rebuilds it
        block = pickle.loads(pickle.dumps(block))
    expected = _sklearn(kind).transform(QUERIES).toarray()
    for _ in range(2):  # second round is served from the per-word cache
        got = np.stack([_dense(block, q) for q in QUERIES])
        assert np.allclose(got, expected, atol=1e-6)


def test_pickle_holds_no_sklearn_or_scipy_object(kind):
    """Module names in a pickle are strings (GLOBAL arguments or the strings STACK_GLOBAL takes)."""
    strings = [arg for _, arg, _ in pickletools.genops(pickle.dumps(_block(kind))) if isinstance(arg, str)]
    assert "handlers.classification.tfidf" in strings
    assert not [s for s in strings if s.startswith(("sklearn", "scipy"))]


def test_char_block_uses_per_word_cache():
    block = NgramBlock.fit_chars(TRAIN, (2, 5), min_df=1)
    block.transform_one("internet works")
    assert set(block._word_columns) == {"internet", "works"}


def test_old_pickles_are_refused_with_a_clear_error():
    block = _block("word")
    with pytest.raises(ValueError, match="older version"):
        block.__setstate__({"vectorizer": object()})
