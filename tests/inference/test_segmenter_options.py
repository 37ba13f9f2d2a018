"""Segmenter refuses, at construction, option values that would give silently wrong masks."""

import flax.linen as nn
import pytest

from jaxseg.segmenter import Segmenter


@pytest.mark.parametrize(
    "options, message",
    [
        ({"scales": (0.0,)}, "scales must be"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"bucket": -5}, "bucket must be"),
        ({"bucket": (64, 0)}, "bucket must be"),
        ({"sliding_window": (64, 100)}, "stride must be between 1 and the window size"),
        ({"sliding_window": ((32, 64), (16, 65))}, "stride must be between 1"),
    ],
)
def test_bad_options_raise_at_construction(options, message):
    with pytest.raises(ValueError, match=message):
        Segmenter(nn.Conv(2, (1, 1)), {}, normalize=lambda x: x, class_names=["a", "b"], **options)
