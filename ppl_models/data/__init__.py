"""Data: MNIST and Fashion-MNIST (``mnist``: fetching, verifying, splits, minibatches on the device),
image folders and CelebA (``images``), pen strokes (``strokes``), Morpho-MNIST measures (``morpho``).

``from ppl_models.data import load_mnist, Minibatches, ...`` reads the MNIST module's names from here.
"""
from ppl_models.data.mnist import (  # noqa: F401
    BINARIZE_MODES,
    N_TRAIN,
    N_VALID,
    TEST_DRAW_SEED,
    VALID_DRAW_SEED,
    Batches,
    DataError,
    Minibatches,
    Split,
    binarize,
    binarize_splits,
    cache_dir,
    ensure_fashion,
    ensure_mnist,
    fresh_binarization,
    labeled_indices,
    load_mnist,
    load_raw,
    md5,
    read_idx,
)
