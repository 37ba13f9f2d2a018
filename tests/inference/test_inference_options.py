"""The inference API refuses option values that would give silently wrong answers."""

import numpy as np
import pytest

from jaxseg import inference


def _ones(x):
    """A "network" whose logits are 1 everywhere: averaged windows give 1 where covered, 0
    where no window reached."""
    return np.ones((*x.shape[:3], 2), np.float32)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda img: inference.multiscale_flip_logits(_ones, img, (0.0,)), "scales must be"),
        (lambda img: inference.multiscale_flip_logits(_ones, img, (1.0, -1)), "scales must be"),
        (lambda img: inference.multiscale_flip_logits(_ones, img, ()), "scales must be"),
        (lambda img: inference.sliding_window_logits(_ones, img, 16, 20), "stride must be"),
        (lambda img: inference.sliding_window_logits(_ones, img, 16, (8, 17)), "stride must be"),
        (lambda img: inference.sliding_window_logits(_ones, img, 16, batch_size=0), "batch_size"),
        (lambda img: inference.whole_image_logits(_ones, img[None], bucket=-5), "bucket must be"),
        (
            lambda img: inference.whole_image_logits(_ones, img[None], bucket=(32, 0)),
            "bucket must be",
        ),
        (
            lambda img: inference.multiscale_flip_logits(
                _ones, img, (1.0,), sliding_window=(16, 32)
            ),
            "stride must be between 1 and the window size (16, 16)",
        ),
    ],
)
def test_bad_values_raise_naming_the_option(call, message):
    image = np.zeros((40, 50, 3), np.float32)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(image)


@pytest.mark.parametrize("stride", [1, 7, 16, (16, 5)])
def test_accepted_strides_cover_every_pixel(stride):
    logits = inference.sliding_window_logits(_ones, np.zeros((37, 53, 3)), 16, stride)
    np.testing.assert_allclose(logits, np.ones((37, 53, 2), np.float32), rtol=1e-6)  # not 0
