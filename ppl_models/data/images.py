"""Your own images: every PNG/JPEG under a folder, or CelebA in its official layout, as tensors.

    --dataset folder:PATH   every *.png / *.jpg / *.jpeg under PATH (sub-folders too)
    --dataset celeba:PATH   PATH/img_align_celeba/*.jpg, PATH/list_attr_celeba.txt,
                            PATH/list_eval_partition.txt (the official aligned images, the 40 binary
                            attributes and the official train / valid / test partition)

Each image is decoded once with Pillow, converted to grey (``channels=1``) or RGB (``channels=3``),
centre-cropped to a square and resized to ``size`` x ``size``; the result is cached as a uint8 tensor
file in ``<cache>/images/`` keyed by the folder's contents (every file's path, size and modification
time) and the size and channels, so a changed folder is read again and an unchanged one never is.
Files that are not PNG/JPEG, or that Pillow cannot read, are skipped and counted in one warning.

A folder is split with a fixed seed (``SPLIT_SEED``, whatever the run's ``--seed``, so that every run
is scored on the same test images) into 80% training, 10% validation, 10% test images. Images are
held as ``Split`` s of ``[N, C * H * W]`` floats in [0, 1] (channel-major, as ``x.reshape(N, C, H, W)``
reads them); ``y`` is ``[N]`` zeros for a folder and the ``[N, 40]`` attributes (0/1) for CelebA.
"""
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import torch

from ppl_models.data import DataError, Split, cache_dir
from ppl_models.inference.train import atomic_save

EXTENSIONS = (".png", ".jpg", ".jpeg")
CACHE_VERSION = 1
SPLIT_SEED = 0
FRACTIONS = (0.8, 0.1, 0.1)
CELEBA_IMAGES = "img_align_celeba"
CELEBA_ATTRIBUTES, CELEBA_PARTITION = "list_attr_celeba.txt", "list_eval_partition.txt"


def parse_dataset(spec):
    """``"mnist"`` -> ``("mnist", None)``; ``"folder:PATH"`` -> ``("folder", Path)``; the same for celeba."""
    kind, _, path = spec.partition(":")
    if kind in ("mnist", "fashion-mnist") and not path:
        return kind, None
    if kind in ("folder", "celeba") and path:
        return kind, Path(path).expanduser()
    raise ValueError(f"unknown dataset {spec!r}; choose mnist, fashion-mnist, folder:PATH or celeba:PATH")


def decode(path, size, channels):
    """One image file -> ``[channels, size, size]`` uint8: grey or RGB, centre square, resized."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def _key(files, size, channels, extra=()):
    h = hashlib.sha1(f"{CACHE_VERSION} {size} {channels}".encode())
    for f in [*files, *extra]:
        st = os.stat(f)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _decode_all(files, size, channels):
    """``{"x": [N, C, size, size] uint8, "files": the decoded ones, "skipped": how many were not}``."""
    images, kept, skipped = [], [], 0
    for f in files:
        try:
            images.append(decode(f, size, channels))
            kept.append(f)
        except Exception:  # not an image after all, truncated, an unknown mode...
            skipped += 1
    x = torch.from_numpy(np.stack(images)) if images else torch.zeros(0, channels, size, size, dtype=torch.uint8)
    return {"x": x, "files": kept, "skipped": skipped}


def _cached(key, build, log):
    path = cache_dir() / "images" / f"{key}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=False)
        except Exception as err:  # a corrupt cache is rebuilt, never used
            log(f"image cache {path} unreadable ({err}); decoding again")
    record = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(record, path)
    return record


def warn(message):
    print(f"warning: {message}", file=sys.stderr)


def read_folder(root, size, channels, log=print):
    """``{"x": [N, C, size, size] uint8, "files": [...], "skipped": k}`` for the images under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"folder:{root}: no such folder")
    every = sorted(p for p in root.rglob("*") if p.is_file())
    files = [p for p in every if p.suffix.lower() in EXTENSIONS]
    others = len(every) - len(files)
    if not files:
        raise DataError(f"folder:{root}: no PNG or JPEG images there ({len(every)} other files)")
    record = _cached(_key(files, size, channels), lambda: _decode_all(files, size, channels), log)
    skipped = record["skipped"] + others
    if skipped:
        warn(f"folder:{root}: {skipped} of {len(every)} files skipped ({others} not PNG/JPEG, "
             f"{record['skipped']} unreadable)")
    if len(record["x"]) == 0:
        raise DataError(f"folder:{root}: none of its {len(files)} PNG/JPEG files could be read")
    return record


def split_indices(n, seed=SPLIT_SEED, fractions=FRACTIONS):
    """A seeded permutation of ``n`` cut into train / valid / test index tensors."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_valid, n_test = int(round(n * fractions[1])), int(round(n * fractions[2]))
    n_train = n - n_valid - n_test
    return perm[:n_train], perm[n_train:n_train + n_valid], perm[n_train + n_valid:]


def _to_split(x, y, idx, device):
    return Split((x[idx].reshape(len(idx), x[0].numel()).float() / 255.0), y[idx]).to(device)


def load_folder(root, size, channels, device="cpu", log=print):
    """``train, valid, test`` :class:`Split` s of the images under ``root`` (``y``: zeros)."""
    record = read_folder(root, size, channels, log)
    x = record["x"]
    y = torch.zeros(len(x), dtype=torch.long)
    parts = split_indices(len(x))
    if min(map(len, parts)) == 0:
        raise DataError(f"folder:{root}: {len(x)} images are too few to hold out validation and test images "
                        "(10% each); at least 10 are needed")
    return tuple(_to_split(x, y, idx, device) for idx in parts)


def read_celeba_lists(root):
    """``(names [N], attributes [N, 40] bool, attribute names [40], partition [N] in 0/1/2)`` from the
    official files, in the attribute file's order."""
    root = Path(root)
    for part in (CELEBA_IMAGES, CELEBA_ATTRIBUTES, CELEBA_PARTITION):
        if not (root / part).exists():
            raise DataError(f"celeba:{root}: {part} is missing (the layout: {CELEBA_IMAGES}/, "
                            f"{CELEBA_ATTRIBUTES}, {CELEBA_PARTITION})")
    lines = (root / CELEBA_ATTRIBUTES).read_text().split("\n")
    try:
        count, attr_names = int(lines[0].strip()), lines[1].split()
        rows = [ln.split() for ln in lines[2:] if ln.strip()]
        names = [r[0] for r in rows]
        attributes = np.array([[v == "1" for v in r[1:]] for r in rows], dtype=bool)
    except (ValueError, IndexError):
        raise DataError(f"celeba:{root}: {CELEBA_ATTRIBUTES} is not in the official format") from None
    if len(rows) != count or attributes.shape[1:] != (len(attr_names),) or len(attr_names) != 40:
        raise DataError(f"celeba:{root}: {CELEBA_ATTRIBUTES} announces {count} images of 40 attributes, "
                        f"holds {len(rows)} rows of {attributes.shape[1] if rows else 0} and "
                        f"{len(attr_names)} names")
    partition = {}
    for ln in (root / CELEBA_PARTITION).read_text().split("\n"):
        if ln.strip():
            name, part = ln.split()
            partition[name] = int(part)
    missing = [n for n in names if n not in partition]
    if missing:
        raise DataError(f"celeba:{root}: {len(missing)} images have no partition in {CELEBA_PARTITION}, "
                        f"e.g. {missing[0]}")
    return names, attributes, attr_names, np.array([partition[n] for n in names])


def load_celeba(root, size, channels, device="cpu", log=print):
    """``(train, valid, test), attribute_names``: the official splits, ``y`` the ``[N, 40]`` attributes
    as 0/1 floats. Images listed but absent or unreadable are skipped and counted in one warning."""
    root = Path(root)
    names, attributes, attr_names, partition = read_celeba_lists(root)
    files = [root / CELEBA_IMAGES / n for n in names]
    present = [f for f in files if f.exists()]
    key = _key(present, size, channels, extra=[root / CELEBA_ATTRIBUTES, root / CELEBA_PARTITION])
    record = _cached(key, lambda: _decode_all(present, size, channels), log)
    lost = len(files) - len(record["files"])
    if lost:
        warn(f"celeba:{root}: {lost} of {len(files)} listed images skipped (absent or unreadable)")
    if len(record["files"]) == 0:
        raise DataError(f"celeba:{root}: none of the {len(files)} listed images could be read")
    row = {str(f): i for i, f in enumerate(files)}
    keep = torch.tensor([row[str(f)] for f in record["files"]])
    y = torch.from_numpy(attributes[keep.numpy()].astype(np.float32))
    part = torch.from_numpy(partition[keep.numpy()])
    x = record["x"]
    splits = tuple(_to_split(x, y, (part == p).nonzero().squeeze(1), device) for p in (0, 1, 2))
    return splits, attr_names
