"""Your own images: the folder reader, the CelebA reader on a fixture in its layout, shapes through
the VAE family's networks, and the one-line refusals."""
import json
import os
import time
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
from PIL import Image
from pyro.infer import Trace_ELBO

from conftest import refused_in_process, run_in_process
from guides.vae import GUIDES, make_guide
from ppl_models.data import DataError, images
from ppl_models.inference.evaluate import evaluate
from ppl_models.vae import VAE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PPL_MODELS_DATA", str(tmp_path / "cache"))


def write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def wide_image(h=20, w=40):
    """An RGB image wider than high: red left quarter, green middle half, blue right quarter."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 4, 0] = 255
    a[:, w // 4: 3 * w // 4, 1] = 255
    a[:, 3 * w // 4:, 2] = 255
    return a


def test_a_folder_is_cropped_resized_converted_and_cached(tmp_path, capsys):
    root = tmp_path / "pics"
    write(root / "a.png", wide_image())
    write(root / "sub" / "b.jpg", np.full((30, 30, 3), 200))
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    rgb = images.read_folder(root, 8, 3)
    assert rgb["x"].shape == (2, 3, 8, 8) and rgb["x"].dtype == torch.uint8
    assert [Path(f).name for f in rgb["files"]] == ["a.png", "b.jpg"]
    a = rgb["x"][0].float()
    # the centre square of the wide image is all green: the red and blue quarters are cropped away
    assert a[1].mean() > 250 and a[0].max() < 5 and a[2].max() < 5
    assert "2 of 4 files skipped (1 not PNG/JPEG, 1 unreadable)" in capsys.readouterr().err
    grey = images.read_folder(root, 16, 1)
    assert grey["x"].shape == (2, 1, 16, 16)
    assert abs(grey["x"][1].float().mean() - 200) < 2  # a uniform grey stays that grey
    cached = sorted((tmp_path / "cache" / "images").glob("*.pt"))
    assert len(cached) == 2  # one per (size, channels)
    images.read_folder(root, 8, 3)
    assert sorted((tmp_path / "cache" / "images").glob("*.pt")) == cached  # read from the cache
    time.sleep(0.01)
    write(root / "c.png", np.zeros((10, 10, 3)))  # the folder changed: read again
    again = images.read_folder(root, 8, 3)
    assert again["x"].shape[0] == 3 and len(list((tmp_path / "cache" / "images").glob("*.pt"))) == 3


def test_a_changed_file_invalidates_the_cache(tmp_path):
    root = tmp_path / "pics"
    path = write(root / "a.png", np.zeros((8, 8)))
    first = images.read_folder(root, 8, 1)["x"]
    write(path, np.full((8, 8), 255))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert images.read_folder(root, 8, 1)["x"].float().mean() > 250 and first.float().mean() < 1


def test_folder_splits_are_fixed_and_disjoint(tmp_path):
    root = tmp_path / "pics"
    for i in range(20):
        write(root / f"{i:02d}.png", np.full((8, 8), 10 * i))
    train, valid, test = images.load_folder(root, 8, 1)
    assert (len(train), len(valid), len(test)) == (16, 2, 2)
    assert train.x.shape == (16, 64) and 0 <= train.x.min() and train.x.max() <= 1
    values = [set((s.x[:, 0] * 255).round().long().tolist()) for s in (train, valid, test)]
    assert set.union(*values) == {10 * i for i in range(20)} and sum(map(len, values)) == 20
    again = images.load_folder(root, 8, 1)
    assert torch.equal(again[2].x, test.x)


def test_an_empty_folder_or_a_missing_one_is_a_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(DataError, match="no PNG or JPEG images there"):
        images.read_folder(tmp_path / "empty", 8, 1)
    with pytest.raises(DataError, match="no such folder"):
        images.read_folder(tmp_path / "nope", 8, 1)
    with pytest.raises(ValueError, match="folder:PATH or celeba:PATH"):
        images.parse_dataset("imagenet")


def celeba_fixture(root, n=6):
    """A tiny CelebA in the official layout: 178x218 JPEGs, the attribute and partition files."""
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    attr_names = [f"Attr_{k}" for k in range(39)] + ["Smiling"]
    lines = [str(n), " ".join(attr_names)]
    for i, name in enumerate(names):
        write(root / "img_align_celeba" / name, np.full((218, 178, 3), 40 * i))
        values = ["1" if (i + k) % 2 else "-1" for k in range(39)] + ["1" if i < 3 else "-1"]
        lines.append(f"{name}  " + " ".join(values))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    parts = ([0, 0, 0, 1, 2, 0] + [0, 1, 2] * n)[:n]
    (root / "list_eval_partition.txt").write_text("\n".join(f"{nm} {p}" for nm, p in zip(names, parts)) + "\n")
    return names, parts


def test_the_celeba_reader_takes_the_official_splits_and_attributes(tmp_path):
    root = tmp_path / "celeba"
    celeba_fixture(root)
    (train, valid, test), names = images.load_celeba(root, 16, 3)
    assert names[-1] == "Smiling" and len(names) == 40
    assert (len(train), len(valid), len(test)) == (4, 1, 1)
    assert train.x.shape == (4, 3 * 16 * 16) and train.y.shape == (4, 40)
    assert train.y[:, -1].tolist() == [1, 1, 1, 0]       # images 1, 2, 3 smile, image 6 does not
    assert abs(valid.x.mean() * 255 - 120) < 2 and abs(test.x.mean() * 255 - 160) < 2  # images 4 and 5
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match="list_eval_partition.txt is missing"):
        images.load_celeba(root, 16, 3)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 32, 32), (3, 64, 64)])
@pytest.mark.parametrize("decoder, guide", [("mlp", "diag"), ("conv", "conv"), ("mlp", "iaf")])
def test_shapes_through_the_networks_the_elbo_and_the_evaluator(shape, decoder, guide):
    x_dim = shape[0] * shape[1] * shape[2]
    model = VAE(z_dim=4, hidden=(16,), decoder=decoder, likelihood="gaussian", shape=shape)
    q = make_guide(guide, model)
    x = torch.rand(3, x_dim)
    assert model.decode(torch.zeros(2, 5, 4)).shape == (2, 5, x_dim)
    assert q.encode(x).shape == (3, 4)
    loss = Trace_ELBO().differentiable_loss(model.model, q.guide, x)
    loss.backward()
    assert torch.isfinite(loss)
    r = evaluate(model, q, x, num_samples=3, batch_size=2, khat=False)
    assert np.isfinite(r["log_px_mean"])
    with pytest.raises(ValueError, match=rf"\[batch, {x_dim}\]"):
        model.model(torch.rand(3, x_dim + 1))


def test_conv_networks_refuse_an_odd_size():
    with pytest.raises(ValueError, match="even height and width"):
        VAE(z_dim=4, decoder="conv", shape=(3, 31, 31))


def test_every_vae_guide_takes_rgb_images():
    model = VAE(z_dim=3, hidden=(8,), likelihood="gaussian", shape=(3, 8, 8))
    x = torch.rand(2, 192)
    for name in GUIDES:
        pyro.clear_param_store()
        assert np.isfinite(Trace_ELBO().loss(model.model, make_guide(name, model).guide, x)), name


def run_vae(*args):
    """``python examples/vae.py ARGS`` in this process (``conftest.run_in_process``)."""
    return run_in_process("vae", args)


def test_the_vae_trains_on_a_folder_of_rgb_images_and_on_a_celeba_layout(tmp_path):
    root = tmp_path / "pics"
    g = np.random.default_rng(0)
    for i in range(40):
        write(root / f"{i}.png", g.integers(0, 255, (12, 12, 3)))
    run_vae("--dataset", f"folder:{root}", "--image-size", 8, "--decoder", "conv", "--guide", "conv",
            "--smoke", "--batch-size", 16, "--out", tmp_path / "run", "--no-progress")
    assert {"samples.png", "reconstructions.png", "results.json"} <= {p.name for p in (tmp_path / "run").iterdir()}
    celeba_fixture(tmp_path / "celeba", n=6)
    run_vae("--dataset", f"celeba:{tmp_path / 'celeba'}", "--image-size", 8, "--smoke", "--batch-size", 2,
            "--out", tmp_path / "faces", "--no-progress", "--hidden", 16)
    assert (tmp_path / "faces" / "results.json").exists()


@pytest.mark.parametrize("setup, args, message", [
    ("empty", [], "no PNG or JPEG images there"),
    ("few", ["--batch-size", 100], "fewer than --batch-size 100"),
    ("five", [], "5 images are too few to hold out validation and test images"),
    ("few", ["--image-size", 9, "--decoder", "conv"], "--image-size 9: the conv networks take images of even"),
    ("few", ["--binarize", "dynamic"], "needs --channels 1"),
])
def test_bad_folders_and_sizes_are_one_line(tmp_path, setup, args, message):
    root = tmp_path / "pics"
    root.mkdir()
    if setup in ("few", "five"):
        for i in range(20 if setup == "few" else 5):
            write(root / f"{i}.png", np.zeros((8, 8, 3)))
    assert message in refused_in_process("vae", ["--dataset", f"folder:{root}", "--smoke", "--out", tmp_path / "run",
                                                 *args], code=None)


def test_run_folders_are_named_from_the_data():
    spec = __import__("importlib.util").util.spec_from_file_location("vae_example", ROOT / "examples" / "vae.py")
    vae = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(vae)
    names = {d: vae.run_template(vae.parse_args(["--dataset", d] + extra)).split("{")[0]
             for d, extra in [("mnist", []), ("fashion-mnist", []), ("folder:/tmp/pics", ["--image-size", "64"]),
                              ("celeba:/data/celeba", ["--channels", "1"])]}
    assert names == {"mnist": "", "fashion-mnist": "fashion-", "folder:/tmp/pics": "folder-pics-s64-c3-",
                     "celeba:/data/celeba": "celeba-celeba-s64-c1-"}


def test_a_folder_run_is_rebuilt_with_its_shape_and_data_and_the_guides_lab_measures_its_gaps(tmp_path):
    """The one rebuild function turns a run folder trained on an image folder back into its model (with
    the run's image shape), guide and data; the guides lab's inference gaps use it end to end."""
    from ppl_models.runs import experiment

    root = tmp_path / "pics"
    g = np.random.default_rng(1)
    for i in range(40):
        write(root / f"{i}.png", g.integers(0, 255, (12, 12, 3)))
    flags = ["--dataset", f"folder:{root}", "--image-size", 8, "--hidden", 16, "--batch-size", 16, "--no-progress"]
    run_vae(*flags, "--smoke", "--out", tmp_path / "run")
    run = experiment.rebuild(tmp_path / "run")
    assert run.name == "vae" and run.model.shape == (3, 8, 8) and run.args.dataset == f"folder:{root}"
    train, valid, test = run.load_data()
    assert train.x.shape[1] == valid.x.shape[1] == 3 * 8 * 8
    assert run.guide.encode(test.x[:3]).shape == (3, 50) and run.model.decode(torch.zeros(2, 50)).shape == (2, 192)
    run_in_process("guides_lab", ["--model", "vae", "--guides", "diag", "--smoke", "--out", tmp_path / "lab", *flags],
                   cwd=tmp_path)
    gaps = json.loads((tmp_path / "lab" / "diag" / "gaps.json").read_text())
    assert gaps["images"] == min(5, len(test.x)) and np.isfinite([gaps["approximation_gap"], gaps["amortisation_gap"]]).all()
