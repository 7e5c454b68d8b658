"""Pen strokes derived from images: known shapes, the frame, resampling, the cached real set."""
import numpy as np
import pytest

from ppl_models.data import strokes


def draw_line(img, r0, c0, r1, c1, width=2):
    n = max(abs(r1 - r0), abs(c1 - c0)) * 4 + 1
    for t in np.linspace(0, 1, n):
        r, c = r0 + t * (r1 - r0), c0 + t * (c1 - c0)
        img[int(round(r)):int(round(r)) + width, int(round(c)):int(round(c)) + width] = 1.0
    return img


def one():
    return draw_line(np.zeros((28, 28)), 4, 14, 23, 14)


def zero():
    img = np.zeros((28, 28))
    rr, cc = np.mgrid[:28, :28]
    d = np.sqrt((rr - 14) ** 2 / 81 + (cc - 14) ** 2 / 36)
    img[(d > 0.8) & (d < 1.2)] = 1.0
    return img


def connected(stroke):
    return all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) == 1 for a, b in zip(stroke, stroke[1:]))


def test_a_one_is_a_single_connected_stroke_from_its_top_end():
    s = strokes.trace(strokes.skeleton(one()))
    assert len(s) == 1 and connected(s[0]) and len(s[0]) >= 15
    assert s[0][0][0] < s[0][-1][0]  # starts at the top end


def test_a_zero_is_one_stroke_that_closes_on_itself():
    s = strokes.trace(strokes.skeleton(zero()))
    assert len(s) == 1 and connected(s[0])
    assert s[0][0] == s[0][-1] and len(s[0]) > 20


@pytest.mark.parametrize("image", [one(), zero(), draw_line(draw_line(np.zeros((28, 28)), 5, 5, 5, 22), 5, 14, 24, 14)])
def test_rows_stay_in_the_frame_and_flag_stroke_and_digit_ends(image):
    rows = strokes.image_to_rows(image)
    xy = strokes.absolute(rows)
    assert rows.shape[1] == 4 and xy.min() >= 0 and xy.max() <= 27
    assert rows[-1, 2] == 1 and rows[-1, 3] == 1 and rows[:-1, 3].sum() == 0
    # within a stroke the pen moves one pixel at a time
    for i in range(1, len(rows)):
        if rows[i - 1, 2] == 0:
            assert np.abs(rows[i, :2]).max() == 1
    # every skeleton pixel is drawn
    skel = strokes.skeleton(image)
    assert {(y, x) for x, y in xy} == {tuple(p) for p in np.argwhere(skel)}


def test_a_t_shape_needs_two_strokes_and_the_pen_travel_is_short():
    img = draw_line(draw_line(np.zeros((28, 28)), 5, 5, 5, 22), 5, 14, 24, 14)
    s = strokes.trace(strokes.skeleton(img))
    assert 2 <= len(s) <= 3 and all(connected(k) for k in s)
    jumps = [np.hypot(a[-1][0] - b[0][0], a[-1][1] - b[0][1]) for a, b in zip(s, s[1:])]
    assert max(jumps) < 12


def test_resampling_keeps_the_end_points_and_length():
    rows = strokes.image_to_rows(zero())
    xy = strokes.absolute(rows)
    for length in (20, 60, 200):
        r = strokes.resample(rows, length)
        assert r.shape == (length, 4)
        assert np.allclose(r[0, :2], xy[0]) and np.allclose(r[-1, :2], xy[-1])
        assert r[-1, 3] == 1 and r[:-1, 3].sum() == 0
        assert r[:, :2].min() >= 0 and r[:, :2].max() <= 27
    with pytest.raises(ValueError, match="empty"):
        strokes.resample(np.zeros((0, 4)), 60)


def test_resampling_never_draws_across_a_pen_up_jump():
    # two strokes: x = 2..10 on row y = 3, then x = 2..10 on row y = 20 (a long pen-up jump between)
    xy = np.array([(x, 3) for x in range(2, 11)] + [(x, 20) for x in range(2, 11)], dtype=float)
    rows = np.zeros((len(xy), 4))
    rows[:, :2] = np.diff(xy, axis=0, prepend=[[0, 0]])
    rows[8, 2] = rows[-1, 2] = rows[-1, 3] = 1
    for length in (7, 12, 60):
        r = strokes.resample(rows, length)
        assert set(r[:, 1]) <= {3.0, 20.0}                  # no point on the jump between the rows
        assert r[:, 2].sum() == 2 and r[-1, 2] == 1           # one end of stroke per stroke
        k = int(np.flatnonzero(r[:, 2])[0])
        assert r[k, 1] == 3 and (r[k + 1:, 1] == 20).all()    # the first stroke ends where it should


def test_the_real_stroke_set(tmp_path):
    """Derived from the real MNIST files (cached after the first call)."""
    train, test = strokes.load_strokes(progress=False)
    assert len(train) == 60000 and len(test) == 10000
    st = strokes.stats(np.concatenate([train.lengths, test.lengths]))
    assert 8 <= st["min"] and 25 <= st["median"] <= 50 and st["max"] <= 150
    for i in range(0, 60000, 6007):
        xy = strokes.absolute(train.seq(i))
        assert xy.min() >= 0 and xy.max() <= 27
    padded, lengths = test.subset(slice(0, 5)).padded()
    assert padded.shape[0] == 5 and (lengths == test.lengths[:5]).all()
    assert test.subset(slice(0, 3)).resampled(60).shape == (3, 60, 4)
