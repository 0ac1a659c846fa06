import numpy as np
import pytest

from metaadv_tf.art_bridge import valid_examples


def test_valid_examples_replaces_non_finite_images_by_the_clean_ones_and_counts_them():
    x = np.full((3, 2, 2, 1), 0.5, np.float32)
    x_adv = x + np.float32(0.1)
    x_adv[1, 0, 0, 0] = np.nan  # as ART 1.20's L2 Square returns for some images
    checked, invalid = valid_examples(x, x_adv, norm=2, eps=0.2)
    assert invalid == 1
    np.testing.assert_array_equal(checked[1], x[1])  # counts as not fooled
    np.testing.assert_array_equal(checked[[0, 2]], x_adv[[0, 2]])


@pytest.mark.parametrize("norm, eps, outside", [(np.inf, 0.1, 0.2), (2, 0.3, 0.2), (1, 0.7, 0.2)])
def test_valid_examples_raises_for_a_finite_image_outside_the_ball(norm, eps, outside):
    x = np.full((2, 2, 2, 1), 0.5, np.float32)
    with pytest.raises(RuntimeError, match=f"ball of radius {eps}"):
        valid_examples(x, x + np.float32(outside), norm=norm, eps=eps)


def test_valid_examples_raises_outside_the_image_range():
    x = np.full((1, 2, 2, 1), 0.95, np.float32)
    with pytest.raises(RuntimeError, match=r"\[0, 1\]"):
        valid_examples(x, x + np.float32(0.1), norm=np.inf, eps=0.1)
