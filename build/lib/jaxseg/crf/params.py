"""Dense CRF hyperparameters, their published settings, and input validation."""

import dataclasses
import math
import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class CRFParams:
    """Kernel weights and widths of the dense CRF energy (Kraehenbuehl & Koltun 2011).

    pairwise(i, j) = w_bilateral exp(-|p_i-p_j|^2 / 2 theta_alpha^2 - |I_i-I_j|^2 / 2 theta_beta^2)
                   + w_gaussian exp(-|p_i-p_j|^2 / 2 theta_gamma^2)

    with positions p in pixels and colours I in [0, 255]. In pydensecrf terms:
    `addPairwiseGaussian(sxy=theta_gamma, compat=w_gaussian)` and
    `addPairwiseBilateral(sxy=theta_alpha, srgb=theta_beta, compat=w_bilateral)`.

    The defaults are the DeepLab v2 (ResNet-101) setting; see the module-level presets.
    Use `dense_crf(logits, image, **dataclasses.asdict(params))`.
    """

    w_bilateral: float = 4.0
    theta_alpha: float = 67.0
    theta_beta: float = 3.0
    w_gaussian: float = 3.0
    theta_gamma: float = 1.0
    num_iterations: int = 10

    def __post_init__(self):
        for name in ("theta_alpha", "theta_beta", "theta_gamma"):
            value = _python_number(name, getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        for name in ("w_bilateral", "w_gaussian"):
            value = _python_number(name, getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        n = self.num_iterations
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"num_iterations must be an integer >= 0, got {n!r}")


def _python_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{name} must be a Python number (CRF parameters are static), got {type(value)}"
        )
    return float(value)


# DeepLab v2 with ResNet-101 (Chen et al., TPAMI 2017): the REFERENCE.md setting.
DEEPLAB_V2_RESNET = CRFParams()
# DeepLab v1 LargeFOV (VGG-16, Chen et al., ICLR 2015), as released with its CRF script:
# bi_w=4, bi_xy_std=121, bi_rgb_std=5, pos_w=3, pos_xy_std=3.
DEEPLAB_V1_LARGEFOV = CRFParams(
    w_bilateral=4.0, theta_alpha=121.0, theta_beta=5.0, w_gaussian=3.0, theta_gamma=3.0
)


def check_inputs(logits, image, *, batched: bool) -> None:
    """Raises ValueError for malformed logits [(B,) H, W, C] / image [(B,) H, W, 3].

    Value checks (NaN logits, image range) need concrete arrays and are skipped under jit.
    """
    rank = 4 if batched else 3
    layout = "[B, H, W, C]" if batched else "[H, W, C]"
    if np.ndim(logits) != rank:
        raise ValueError(f"logits must be {layout}, got shape {np.shape(logits)}")
    if np.ndim(image) != rank or np.shape(image)[-1] != 3:
        raise ValueError(f"image must be {layout[:-2]}3], got shape {np.shape(image)}")
    if np.shape(logits)[:-1] != np.shape(image)[:-1]:
        raise ValueError(
            f"image and logits must have the same (batch,) height and width; got image "
            f"{np.shape(image)} and logits {np.shape(logits)} (resize the logits first)"
        )
    if np.shape(logits)[-1] < 1:
        raise ValueError("logits need at least one class")
    if not np.issubdtype(np.result_type(logits), np.floating):
        raise ValueError(f"logits must be floating point, got {np.result_type(logits)}")
    image_dtype = np.result_type(image)
    if image_dtype != np.uint8 and not np.issubdtype(image_dtype, np.floating):
        raise ValueError(f"image must be uint8 or float in [0, 255], got dtype {image_dtype}")

    if not isinstance(logits, jax.core.Tracer):
        bad = _any(logits, lambda xp, x: xp.isnan(x) | xp.isposinf(x))
        if bad:
            raise ValueError("logits contain NaN or +inf")
    if np.issubdtype(image_dtype, np.floating) and not isinstance(image, jax.core.Tracer):
        if _any(image, lambda xp, x: ~((x >= 0) & (x <= 255))):
            raise ValueError("image values must lie in [0, 255] (and not be NaN)")
        if np.size(image) and _any(image, lambda xp, x: x > 1.0) is False:
            warnings.warn(
                "image is float with values <= 1; the CRF expects [0, 255] colours",
                stacklevel=3,
            )


def _any(array, predicate) -> bool:
    """predicate(xp, array).any(), on the device for jax arrays (no copy to the host)."""
    if isinstance(array, jax.Array):
        return bool(jnp.any(predicate(jnp, array)))
    return bool(np.any(predicate(np, np.asarray(array))))
