"""Morpho-MNIST measures on synthetic strokes of known width and angle, and attribute vectors end to end."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_in_process
from skimage.draw import polygon

from ppl_models.data.morpho import measure, skeleton_length, slant, thickness

ROOT = Path(__file__).resolve().parents[1]


def supersampled(draw, factor=10):
    big = np.zeros((28 * factor, 28 * factor))
    draw(big, factor)
    return big.reshape(28, factor, 28, factor).mean((1, 3))


def ring(width, radius=8.0):
    """A closed stroke of known width (no ends, so area / length is exactly the width)."""
    def draw(big, f):
        yy, xx = (np.mgrid[0:28 * f, 0:28 * f] + 0.5) / f
        d = np.hypot(yy - 14, xx - 14)
        big[(d > radius - width / 2) & (d < radius + width / 2)] = 1
    return supersampled(draw)


def bar(width, angle, top=5, bottom=23):
    """A straight stroke from row ``top`` to ``bottom`` leaning by ``angle`` (radians, positive: right)."""
    def draw(big, f):
        ys = np.array([top, bottom], float)
        xs = 14 - (ys - 14) * np.tan(angle)
        dx = width / 2 / np.cos(angle)
        rr, cc = polygon(np.array([top, top, bottom, bottom]) * f,
                         np.array([xs[0] - dx, xs[0] + dx, xs[1] + dx, xs[1] - dx]) * f, big.shape)
        big[rr, cc] = 1
    return supersampled(draw)


@pytest.mark.parametrize("width", [1.5, 2, 3, 4])
def test_thickness_of_rings_of_known_width(width):
    assert thickness(ring(width)) == pytest.approx(width, rel=0.1)


def test_thickness_grows_with_the_stroke_and_is_nan_for_an_empty_image():
    values = [thickness(bar(w, 0.3)) for w in (1.5, 2, 3, 4)]
    assert values == sorted(values) and np.isnan(thickness(np.zeros((28, 28))))


@pytest.mark.parametrize("angle", [-0.4, -0.2, 0.0, 0.25, 0.5])
@pytest.mark.parametrize("width", [2, 3])
def test_slant_of_bars_of_known_angle(angle, width):
    assert slant(bar(width, angle)) == pytest.approx(angle, abs=0.02)


def test_skeleton_length_counts_diagonals_as_root_two():
    line = np.eye(6, dtype=bool)
    assert skeleton_length(line) == pytest.approx(5 * np.sqrt(2))
    assert skeleton_length(np.ones((1, 7), dtype=bool)) == pytest.approx(6)


def test_measure_takes_flat_batches():
    values = measure(np.stack([ring(2).ravel(), ring(4).ravel()]), "thickness")
    assert values.shape == (2,) and values[0] < values[1]


def run(script, *args):
    """``python examples/<script>.py ARGS`` in this process (its command-line path); what it printed.
    (The refusal below runs ``attributes.py`` as a process of its own.)"""
    return run_in_process(script, args)


def test_attribute_vectors_on_mnist_end_to_end(tmp_path):
    run("vae", "--smoke", "--out", tmp_path / "vae", "--no-progress")
    out = run("attributes", tmp_path / "vae", "--smoke")
    report = json.loads((tmp_path / "vae" / "attributes" / "attributes.json").read_text())
    assert set(report["attributes"]) == {"thickness", "slant"} and "Spearman rho" in out
    for name in ("thickness", "slant"):
        r = report["attributes"][name]
        assert -1 <= r["spearman_rho_mean"] <= 1 and 0 <= r["class_unchanged"] <= 1 and r["images"] > 0
        assert (tmp_path / "vae" / "attributes" / f"{name}.png").exists()


def test_attribute_vectors_from_a_celeba_attribute_file(tmp_path):
    from test_images import celeba_fixture
    celeba_fixture(tmp_path / "celeba", n=12)
    run("vae", "--dataset", f"celeba:{tmp_path / 'celeba'}", "--image-size", 8, "--smoke", "--batch-size", 2,
        "--hidden", 16, "--out", tmp_path / "faces", "--no-progress")
    out = run("attributes", tmp_path / "faces", "--smoke", "--attributes", "Attr_1")
    assert "Attr_1: vector from" in out and (tmp_path / "faces" / "attributes" / "Attr_1.png").exists()
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "attributes.py"), str(tmp_path / "faces"),
                           "--attributes", "Frowning"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and "unknown ['Frowning']" in proc.stderr and "Traceback" not in proc.stderr
