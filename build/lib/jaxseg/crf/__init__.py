"""Dense CRF (Kraehenbuehl & Koltun 2011) with a permutohedral lattice in JAX.

`dense_crf` / `dense_crf_batch` post-process any model's logits; `CRFParams` and the presets
hold published settings; `lattice` and `exact` expose the filtering itself.
"""

from jaxseg.crf.exact import exact_dense_crf, exact_filter
from jaxseg.crf.lattice import Lattice, build_lattice, lattice_filter, normalization_factors
from jaxseg.crf.params import DEEPLAB_V1_LARGEFOV, DEEPLAB_V2_RESNET, CRFParams
from jaxseg.crf.postprocess import dense_crf, dense_crf_batch, pixel_features

__all__ = [
    "DEEPLAB_V1_LARGEFOV",
    "DEEPLAB_V2_RESNET",
    "CRFParams",
    "Lattice",
    "build_lattice",
    "dense_crf",
    "dense_crf_batch",
    "exact_dense_crf",
    "exact_filter",
    "lattice_filter",
    "normalization_factors",
    "pixel_features",
]
