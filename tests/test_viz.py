"""Pictures for people (``hofam_tf.tasks.viz``) against their definitions, computed independently."""
import numpy as np
import pytest

from hofam_tf.tasks.viz import error_map, overlay, side_by_side


@pytest.mark.parametrize("alpha,colour", [(0.5, (255, 0, 64)), (0.3, (10, 200, 90)), (0.77, (0, 0, 0))])
def test_overlay_tints_foreground_by_its_formula(alpha, colour):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    fg = rng.random((37, 53)) > 0.6
    out = overlay(frame, fg, colour, alpha)
    # the definition, pixel by pixel: uint8((1 - alpha) x + alpha c) in float32 on the foreground
    expected = frame.copy()
    for y, x in zip(*np.nonzero(fg)):
        expected[y, x] = ((1 - alpha) * frame[y, x].astype(np.float32) + alpha * np.float32(colour)).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(frame[~fg], out[~fg])  # background untouched, input not modified
    assert out.dtype == np.uint8 and out is not frame


@pytest.mark.parametrize("bgr", [False, True])
@pytest.mark.parametrize("region", ["box", "corners", "none", "all"])
def test_overlay_inside_and_outside_the_foregrounds_box(region, bgr):
    """Only the bounding box of the foreground is tinted; the BGR output is the RGB one reversed."""
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    fg = np.zeros((48, 64), bool)
    if region == "box":
        fg[10:20, 30:41] = rng.random((10, 11)) > 0.3
    elif region == "corners":  # a box that spans the whole frame, mostly background inside
        fg[0, 0] = fg[-1, -1] = True
    elif region == "all":
        fg[:] = True
    out = overlay(frame, fg, bgr=bgr)
    tinted = ((1 - 0.5) * frame.astype(np.float32) + 0.5 * np.float32((255, 0, 64))).astype(np.uint8)
    expected = np.where(fg[..., None], tinted, frame)
    np.testing.assert_array_equal(out[..., ::-1] if bgr else out, expected)


def test_overlay_of_a_non_contiguous_frame():
    frame = np.random.default_rng(1).integers(0, 256, (20, 40, 3), dtype=np.uint8)[:, ::2]
    fg = np.zeros((20, 20), bool)
    fg[5:9, 3:7] = True
    out = overlay(frame, fg)
    assert np.array_equal(out[~fg], frame[~fg]) and not np.array_equal(out[fg], frame[fg])


def test_error_map_and_side_by_side_colours():
    labels = np.array([[255, 255, 0, 50, 85, 170]], np.uint8)
    pred = np.array([[True, False, True, False, True, False]])
    out = error_map(pred, labels)
    assert [tuple(c) for c in out[0]] == [(255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 0), (96, 96, 96),
                                          (96, 96, 96)]
    frame = np.full((1, 6, 3), 7, np.uint8)
    sbs = side_by_side(frame, pred)
    assert sbs.shape == (1, 18, 3) and sbs[0, 6, 0] == 255 and sbs[0, 7, 0] == 0 and sbs[0, 12, 0] == 7
