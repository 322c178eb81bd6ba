from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hofam_tf.data.composite import binarize_gt, compose, read_composite, split_composite
from hofam_tf.errors import HOFAMInputError


def demo_files(shared_data):
    files = sorted((shared_data / "hofam_demo").glob("*.png"))
    assert len(files) == 29
    return files


def test_every_demo_composite_splits_and_recomposes(shared_data):
    for path in demo_files(shared_data):
        raw = np.asarray(Image.open(path).convert("RGB"))
        frame, hop, labels = read_composite(path)
        assert frame.shape == (256, 256, 3) and hop.shape == (256, 256, 3) and labels.shape == (256, 256)
        np.testing.assert_array_equal(frame, raw[:, :256])
        np.testing.assert_array_equal(hop, raw[:, 256:512])
        np.testing.assert_array_equal(labels, raw[:, 512:, 0])
        again = compose(frame, hop, labels)
        np.testing.assert_array_equal(again[:, :512], raw[:, :512])
        if (raw[:, 512:, 0] == raw[:, 512:, 1]).all() and (raw[:, 512:, 0] == raw[:, 512:, 2]).all():
            np.testing.assert_array_equal(again, raw)  # compose(split(x)) is the identity


def test_demo_gotchas(shared_data):
    # clip 260-268 GT is anti-aliased: thresholding at 200 makes it binary
    _, _, labels = read_composite(shared_data / "hofam_demo" / "test_000260.png")
    assert len(np.unique(labels)) > 2
    assert set(np.unique(binarize_gt(labels))) <= {0, 255}
    # HOP: B holds multiples of 3; channel means ordered R > G > B (R = longest interval)
    means = []
    for path in demo_files(shared_data):
        _, hop, _ = read_composite(path)
        assert (hop[..., 2] % 3 == 0).all(), path
        means.append(hop.reshape(-1, 3).mean(0))
    r, g, b = np.mean(means, 0)
    assert r > g > b


def test_wrong_size_composite_names_the_file(tmp_path):
    bad = tmp_path / "small.png"
    Image.fromarray(np.zeros((256, 512, 3), np.uint8)).save(bad)
    with pytest.raises(HOFAMInputError, match="small.png.*256x768"):
        read_composite(bad)
    with pytest.raises(HOFAMInputError, match="x.png"):
        split_composite(np.zeros((10, 10, 3), np.uint8), Path("x.png"))


def test_truncated_composite_names_the_file(tmp_path, shared_data):
    data = (shared_data / "hofam_demo" / "test_000155.png").read_bytes()
    bad = tmp_path / "cut.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(HOFAMInputError, match="cut.png"):
        read_composite(bad)
