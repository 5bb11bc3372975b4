"""handlers.classification.tfidf must compute exactly what scikit-learn's TfidfVectorizer computes.

Compared: the terms each analyzer yields (in order), the vocabulary, the idf and the transformed rows,
bit for bit, on the shipped training data and on tricky strings.
"""

from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from handlers.classification.model_store import DEFAULT_DATA_DIR
from handlers.classification.nlu_data import load_many
from handlers.classification.normalize import prepare
from handlers.classification.tfidf import CHAR_WB, PATTERN, WORDS, Analyzer, Tfidf

TRICKY = [
    "", " ", "a", "ab", "  a  ", "a  b", "a\tb\nc", "word  with   double    spaces", "ёлка Ёлка ЁЛКА",
    "İstanbul ǅemal ß ΣΑΣ", "emoji 👍🏽 here", "x" * 7, "repeat repeat repeat repeat", "日本語 テキスト",
    "\u00a0nbsp\u2003em space", "a b c d e f", "éé e\u0301", "Straße STRASSE", "  trailing ",
]

# (our analyzer, the scikit-learn arguments giving the same terms)
CASES = {
    "words 1-2": (Analyzer(WORDS, (1, 2)),
                  {"ngram_range": (1, 2), "tokenizer": str.split, "token_pattern": None, "lowercase": False}),
    "words 2-3": (Analyzer(WORDS, (2, 3)),
                  {"ngram_range": (2, 3), "tokenizer": str.split, "token_pattern": None, "lowercase": False}),
    "words 1-1 lowercase": (Analyzer(WORDS, (1, 1), lowercase=True),
                            {"ngram_range": (1, 1), "tokenizer": str.split, "token_pattern": None}),
    "pattern 1-2 lowercase": (Analyzer(PATTERN, (1, 2), lowercase=True, token_pattern=r"(?u)\b\w+\b"),
                              {"ngram_range": (1, 2), "token_pattern": r"(?u)\b\w+\b"}),
    "pattern default": (Analyzer(PATTERN, (1, 1), lowercase=True), {}),
    "char_wb 2-5": (Analyzer(CHAR_WB, (2, 5)), {"analyzer": "char_wb", "ngram_range": (2, 5), "lowercase": False}),
    "char_wb 1-3 lowercase": (Analyzer(CHAR_WB, (1, 3), lowercase=True), {"analyzer": "char_wb", "ngram_range": (1, 3)}),
    "char_wb 3-3": (Analyzer(CHAR_WB, (3, 3)), {"analyzer": "char_wb", "ngram_range": (3, 3), "lowercase": False}),
}


@pytest.fixture(scope="module")
def shipped_texts() -> dict[str, list[str]]:
    """The shipped training and test data: raw, and as the classifier's two views (lemmas, surface)."""
    texts = [e.text for e in load_many(sorted(Path(DEFAULT_DATA_DIR).glob("*.yml")))]
    prepared = [prepare(t) for t in texts]
    return {"raw": texts, "lemmas": [p[0] for p in prepared], "surface": [p[1] for p in prepared]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_analyzer_terms_equal_scikit_learn(case, shipped_texts):
    ours, kwargs = CASES[case]
    analyze, reference = ours.build(), TfidfVectorizer(**kwargs).build_analyzer()
    for text in TRICKY + shipped_texts["raw"] + shipped_texts["surface"][:300]:
        assert analyze(text) == reference(text), text


def _assert_fitted_equal(ours: Tfidf, reference: TfidfVectorizer, docs: list[str]) -> None:
    assert ours.vocabulary == reference.vocabulary_
    assert ours.idf.dtype == reference.idf_.dtype
    assert np.array_equal(ours.idf, reference.idf_)
    expected = reference.transform(docs).tocsr()
    expected.sort_indices()
    rows = ours.transform(docs)
    assert np.array_equal(rows.indptr, expected.indptr)
    assert np.array_equal(rows.indices, expected.indices)
    assert rows.values.dtype == expected.data.dtype
    assert np.array_equal(rows.values, expected.data)  # bit for bit, not approximately


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_and_transform_equal_scikit_learn_on_tricky_strings(case, dtype):
    ours, kwargs = CASES[case]
    docs = TRICKY + ["a b", "b c a", "ab ab ab"]
    fitted = Tfidf.fit(docs, ours, dtype=dtype)
    reference = TfidfVectorizer(sublinear_tf=True, dtype=dtype, **kwargs).fit(docs)
    _assert_fitted_equal(fitted, reference, docs + ["unseen words only", "", "a a a b"])


@pytest.mark.parametrize(("view", "analyzer", "kwargs", "min_df"), [
    ("lemmas", Analyzer(WORDS, (1, 2)), {"tokenizer": str.split, "token_pattern": None, "ngram_range": (1, 2)}, 1),
    ("surface", Analyzer(CHAR_WB, (2, 5)), {"analyzer": "char_wb", "ngram_range": (2, 5)}, 2),
    ("surface", Analyzer(CHAR_WB, (2, 5)), {"analyzer": "char_wb", "ngram_range": (2, 5)}, 5),
])
def test_classifier_blocks_equal_scikit_learn_on_shipped_data(shipped_texts, view, analyzer, kwargs, min_df):
    """The classifier's settings (float32, case kept) on the shipped data, train and test files."""
    docs = shipped_texts[view]
    fitted = Tfidf.fit(docs, analyzer, min_df=min_df, dtype=np.float32)
    reference = TfidfVectorizer(sublinear_tf=True, lowercase=False, dtype=np.float32, min_df=min_df,
                                **kwargs).fit(docs)
    _assert_fitted_equal(fitted, reference, docs)


def test_knowledge_settings_equal_scikit_learn_on_shipped_data(shipped_texts):
    """The knowledge index's settings (float64, lowercase) on raw texts."""
    docs = shipped_texts["raw"]
    for analyzer, kwargs in ((Analyzer(CHAR_WB, (2, 5), lowercase=True), {"analyzer": "char_wb", "ngram_range": (2, 5)}),
                             (Analyzer(PATTERN, (1, 2), lowercase=True, token_pattern=r"(?u)\b\w+\b"),
                              {"ngram_range": (1, 2), "token_pattern": r"(?u)\b\w+\b"})):
        _assert_fitted_equal(Tfidf.fit(docs, analyzer), TfidfVectorizer(sublinear_tf=True, **kwargs).fit(docs), docs)


def test_empty_vocabulary_is_refused_like_scikit_learn():
    for docs, min_df in (([""], 1), (["   ", ""], 1), (["ab", "cd"], 2)):
        with pytest.raises(ValueError):
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=min_df).fit(docs)
        with pytest.raises(ValueError):
            Tfidf.fit(docs, Analyzer(CHAR_WB, (2, 5)), min_df=min_df)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Analyzer("chars", (1, 2))
    with pytest.raises(ValueError):
        Analyzer(WORDS, (2, 1))
    with pytest.raises(ValueError):
        Tfidf.fit(["a b"], Analyzer(WORDS, (1, 1)), min_df=0)
