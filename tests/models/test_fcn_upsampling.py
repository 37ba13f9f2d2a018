"""FCN's default (SAME) layout: the fixed x32 bilinear transposed conv, cropped at offset 16,
interpolates between stride-32 cell centres exactly like half-pixel bilinear resizing."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.models import FCN32s


def test_fcn32s_final_upsampling_is_half_pixel_bilinear(helpers):
    model = FCN32s(num_classes=3, fc_features=16, zero_init_scores=False)
    shape = (1, 64, 96, 3)
    variables = helpers.random_variables(model, shape)
    images = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)

    def run(images):
        return model.apply(
            variables, images, capture_intermediates=lambda mdl, _: mdl.name == "score_fr"
        )

    logits, state = jax.jit(run)(images)
    score = state["intermediates"]["score_fr"]["__call__"][0]
    assert score.shape == (1, 2, 3, 3)
    expected = jax.image.resize(score, (1, 64, 96, 3), "bilinear")
    # Inside the hull of the cell centres (15.5 ... 47.5 / 79.5) the two agree exactly; at the
    # borders the transposed conv fades to zero while resize clamps.
    np.testing.assert_allclose(logits[:, 16:48, 16:80], expected[:, 16:48, 16:80], atol=1e-5)
