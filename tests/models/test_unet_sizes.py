"""U-Net VALID size arithmetic against the paper's numbers and its own inverse."""

import pytest

from jaxseg.models import UNet, unet_valid_input_size, unet_valid_output_size


def test_paper_tile_sizes():
    assert unet_valid_output_size(572) == 388
    assert unet_valid_input_size(388) == 572
    assert UNet().min_input_size == 188  # the smallest input with a 4-pixel output
    assert unet_valid_output_size(188) == 4


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_input_size_is_the_smallest_tile_covering_the_output(depth):
    for wanted in range(1, 200, 7):
        size = unet_valid_input_size(wanted, depth)
        got = unet_valid_output_size(size, depth)
        assert got >= wanted
        # Tileable: the border is the same on both sides and every pooled map is even.
        assert (size - got) % 2 == 0
        level = size
        for _ in range(depth):
            level -= 4
            assert level % 2 == 0
            level //= 2
        # The next smaller tileable input (bottom map one pixel smaller) is too small.
        assert unet_valid_output_size(size - 2**depth, depth) < wanted


def test_too_small_input_has_no_output():
    assert unet_valid_output_size(100) <= 0
