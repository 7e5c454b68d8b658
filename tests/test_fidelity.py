"""Label fidelity: the metric, the stroke renderer it reads strokes with, and the digit classifier."""
import numpy as np
import pytest
import torch

from ppl_models.data import load_mnist
from ppl_models.data.strokes import image_to_rows, render
from ppl_models.judge import classifier as clf
from ppl_models.judge.fidelity import class_histogram, label_fidelity, strokes_to_images


class Oracle(torch.nn.Module):
    """A perfect 'classifier' for images that carry their class in their first pixel (class / 10)."""

    def predict(self, x):
        return (x[:, 0] * 10).round().long()


def tagged(digits):
    x = torch.zeros(len(digits), 784)
    x[:, 0] = digits.float() / 10
    return x


def test_fidelity_is_one_for_a_generator_that_obeys_and_zero_for_one_that_does_not():
    obeys = label_fidelity(tagged, Oracle(), per_class=7)
    assert obeys["overall"] == 1.0 and obeys["per_class"] == [1.0] * 10
    assert obeys["confusion"] == (7 * np.eye(10, dtype=int)).tolist()
    other = label_fidelity(lambda y: tagged((y + 3) % 10), Oracle(), per_class=7)
    assert other["overall"] == 0.0
    assert other["confusion"][2][5] == 7 and sum(map(sum, other["confusion"])) == 70
    half = label_fidelity(lambda y: tagged(torch.where(y % 2 == 0, y, (y + 1) % 10)), Oracle(), per_class=4)
    assert half["overall"] == 0.5 and half["per_class"] == [1.0, 0.0] * 5


def test_class_histogram_counts_every_sample():
    h = class_histogram(tagged(torch.tensor([3, 3, 3, 1])), Oracle())
    assert h["counts"] == [0, 1, 0, 3, 0, 0, 0, 0, 0, 0]
    assert h["classes_covered"] == 2 and h["largest_share"] == 0.75 and h["n"] == 4


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory):
    """The --smoke classifier, trained into a temporary cache."""
    path = tmp_path_factory.mktemp("clf") / "cnn.pt"
    original = clf.path_of
    clf.path_of = lambda smoke=False: path
    try:
        net, info = clf.train_classifier(smoke=True, log=lambda *a: None)
        again, info_again = clf.load_classifier(smoke=True, log=lambda *a: None)  # read from the cache
    finally:
        clf.path_of = original
    assert path.exists() and info_again == info
    x = torch.rand(5, 784)
    assert torch.equal(net.predict(x), again.predict(x))
    return net, info


def test_the_smoke_classifier_trains_and_is_cached(small_classifier):
    net, info = small_classifier
    assert info["smoke"] and info["test_images"] == 1000
    assert info["test_error"] < 0.3  # 6,000 images, two epochs: far better than chance (0.9)


def test_fidelity_with_the_classifier_on_real_test_images(small_classifier):
    net, info = small_classifier
    _, _, test = load_mnist("mnist", "cpu", "grey")
    by_class = [test.x[test.y == c][:20] for c in range(10)]

    def real(y, shift=0):  # real test images of the requested class (plus shift)
        counts = torch.bincount(y, minlength=10)
        out = torch.zeros(len(y), 784)
        for c in range(10):
            out[y == c] = by_class[(c + shift) % 10][:int(counts[c])]
        return out

    assert label_fidelity(real, net, per_class=20)["overall"] > 0.7
    assert label_fidelity(lambda y: real(y, shift=5), net, per_class=20)["overall"] < 0.1


def test_a_corrupt_classifier_cache_is_trained_again(tmp_path, monkeypatch):
    path = tmp_path / "cnn.pt"
    path.write_bytes(b"not a checkpoint")
    monkeypatch.setattr(clf, "path_of", lambda smoke=False: path)
    lines = []
    net, info = clf.load_classifier(smoke=True, log=lines.append)
    assert any("unreadable" in line for line in lines) and info["smoke"]
    assert torch.load(path, weights_only=True)["info"] == info


def test_render_a_horizontal_stroke_then_a_pen_up_jump_then_a_dot():
    rows = np.array([[5, 10, 0, 0],    # pen to (5, 10)
                     [15, 0, 1, 0],    # draw to (20, 10), end of stroke
                     [0, 10, 1, 0],    # pen up to (20, 20): a dot, a stroke of one point
                     [-10, 0, 0, 1],   # pen up to (10, 20), the last point: end of digit
                     [0, -20, 0, 0]])  # after the end of the digit: ignored
    im = render(rows)
    assert im.shape == (28, 28)
    assert (im[10, 5:21] == 1).all()                      # the line, on its row
    assert (im[9, 5:21] == 0.75).all() and (im[11, 5:21] == 0.75).all()  # 1 px away: 1 + 0.75 - 1
    assert im[10, 23] == 0 and im[10, 2] == 0             # nothing beyond the ends' reach
    assert im[15, 20] == 0                                # the pen-up move leaves no ink
    assert im[20, 20] == 1 and im[20, 10] == 1            # the two dots
    assert im[20, 15] == 0                                # and nothing between them
    assert im[0:5].sum() == 0                             # the ignored row after end of digit
    absolute = np.array([[5, 10, 0, 0], [20, 10, 1, 1.0]])
    assert np.array_equal(render(absolute, absolute_coords=True), render(np.array([[5, 10, 0, 0], [15, 0, 1, 1]])))


def test_rendered_strokes_of_a_test_digit_overlap_its_ink():
    _, _, test = load_mnist("mnist", "cpu", "grey")
    image = test.x[0].reshape(28, 28).numpy()
    drawn = render(image_to_rows(image))
    ink, pen = image > 0.5, drawn > 0.5
    assert (ink & pen).sum() / pen.sum() > 0.75 and (ink & pen).sum() / ink.sum() > 0.75
    images = strokes_to_images(torch.from_numpy(image_to_rows(image)).float()[None])
    assert images.shape == (1, 784) and torch.allclose(images[0], torch.from_numpy(drawn).float().reshape(784))
