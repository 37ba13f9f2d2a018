"""Experiment configs: the shared keys, `--demo` defaults, input normalisation, config checks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxseg import train
from jaxseg.backbones import BACKBONES
from jaxseg.data import normalization as transforms
from jaxseg.nn import layers as nn_layers


def base_config() -> ml_collections.ConfigDict:
    """The loop's keys (`jaxseg.train.default_config`) plus data, evaluation and demo keys.

    Experiments set the values and add a `model` section.
    """
    config = train.default_config()
    # Data: a TFDS name; `data_dir` "" is TFDS' default folder. A missing dataset is prepared
    # from `manual_dir` (or downloaded with `download`), otherwise the run stops and says how.
    config.dataset = "voc_segmentation/2012_aug"
    config.data_dir = ""
    config.manual_dir = ""
    config.download = False
    config.train_split = "train"
    config.eval_split = "validation"
    config.num_classes = 21
    config.normalization = "imagenet"  # imagenet | caffe_bgr | inception | none
    # config.crop_size: set by each experiment, an int (square) or an (h, w) tuple.
    config.train_scales = transforms.DEFAULT_SCALES  # random scale choices; (1.0,): none
    config.flip = True
    config.eval_batch_size = 8  # global, like batch_size
    config.eval_buckets = ()  # ((h, w), ...) eval padding sizes; (): the largest image's
    # Evaluation options (`--mode=eval`, and a final evaluation after training when set).
    config.align_corners = False  # bilinear resize convention (True: TF1 DeepLab checkpoints)
    config.eval_scales = (1.0,)  # test-time scales, e.g. (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    config.eval_flip = False  # also average left-right flipped predictions
    config.sliding_window = 0  # predict by windows of this size (0: whole image)
    config.crf = False  # refine with the dense CRF and score before and after it
    config.crf_params = ml_collections.ConfigDict(  # jaxseg.crf.dense_crf keyword arguments
        dict(
            w_bilateral=4.0,
            theta_alpha=67.0,
            theta_beta=3.0,
            w_gaussian=3.0,
            theta_gamma=1.0,
            num_iterations=10,
        )
    )
    config.num_eval_examples = 0  # evaluate only the first N of the split (0: all)
    # ImageNet backbone weights: a Keras .h5 or a torch .safetensors/.npz file, converted by
    # jaxseg.weights; `pretrained_model` names the architecture (vgg16, resnet101, ...).
    config.pretrained = ""
    config.pretrained_model = ""
    # A released model of jaxseg.zoo ("zoo:NAME", `python -m jaxseg.zoo list`): training starts
    # from its weights; `--mode=eval` on a folder without checkpoints evaluates the release.
    config.init_from = ""
    # How convolutions are computed (same values): "auto" ("cpu" when JAX runs on a CPU, else
    # "reference"), "reference" (XLA convs, every backend), "space_to_batch" (TF's atrous
    # form) or "cpu" (tap/region/phase forms, about twice as fast to train on CPUs).
    config.conv_layers = "auto"
    config.compilation_cache = True  # JAX's persistent cache (~/.cache/jaxseg/xla)
    config.demo = ml_collections.ConfigDict(
        dict(
            data_dir="",  # "": ~/.cache/jaxseg/demo_data
            num_train=300,
            num_val=100,
            image_size=(128, 160),
        )
    )
    config.model = ml_collections.ConfigDict()
    return config


def demo_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """What every `--demo` shares: the generated VOC-layout data, float32 compute
    (bf16 is slower than float32 on CPUs), no ImageNet weights (so unit-variance inputs), one
    evaluation at the end."""
    config.dataset = "voc_segmentation/2012"
    config.num_classes = 21
    config.train_split = "train"
    config.eval_split = "validation"
    config.eval_buckets = ()
    config.normalization = "imagenet"  # unit-variance inputs suit nets trained from scratch
    config.log_every = 10
    config.eval_every = 0
    config.checkpoint_every = 100
    config.num_eval_images = 4
    config.pretrained = ""
    config.init_from = ""  # --demo never downloads
    if "dtype" in config.model:
        config.model.dtype = "float32"
    return config


def compute_dtype(name: str) -> Any:
    """`config.model.dtype` ("float32" | "bfloat16") -> the jnp dtype for the model's compute."""
    dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    if name not in dtypes:
        raise train.ConfigError(f"config.model.dtype={name!r}; choose one of {sorted(dtypes)}")
    return dtypes[name]


def conv_layers(config: ml_collections.ConfigDict) -> nn_layers.ConvLayers:
    """The conv factories `config.conv_layers` names, for the models' `conv=` (and FCN's
    `conv_transpose=`) arguments; "auto" is "cpu" where JAX's default backend is a CPU and
    "reference" elsewhere (the forms compute the same values, so a run may move between
    machines)."""
    form = config.conv_layers
    if form == "auto":
        form = "cpu" if jax.default_backend() == "cpu" else "reference"
    try:
        return nn_layers.conv_layers(form)
    except ValueError as e:
        raise train.ConfigError(f"config.conv_layers: {e}, or 'auto'") from None


def normalize(config: ml_collections.ConfigDict, images: jax.Array) -> jax.Array:
    """RGB float `[B, H, W, 3]` in 0..255 -> the normalised input the model was trained on.

    The same `config.normalization` the data pipeline applies
    (`jaxseg.data.pipeline.transforms`), in jnp for prediction and export (an `Experiment`'s
    `normalize`).
    """
    norm = transforms.get_normalization(config.normalization)
    images = (jnp.asarray(images, jnp.float32) - jnp.asarray(norm.mean)) / jnp.asarray(norm.std)
    return images[..., ::-1] if norm.bgr else images


def denormalize(config: ml_collections.ConfigDict, images: np.ndarray) -> np.ndarray:
    """Inverse of `normalize`: normalised `[..., 3]` -> RGB float32 in 0..255."""
    norm = transforms.get_normalization(config.normalization)
    images = np.asarray(images, np.float32)
    if norm.bgr:
        images = images[..., ::-1]
    return images * np.asarray(norm.std, np.float32) + np.asarray(norm.mean, np.float32)


def crf_kwargs(config: ml_collections.ConfigDict) -> dict[str, float]:
    return dict(config.crf_params.to_dict())


def check_config(config: ml_collections.ConfigDict, model: nn.Module, num_devices: int) -> None:
    """Config problems the engine does not see, found before anything compiles.

    Raises:
      ConfigError: with the fix.
    """
    train.validate_config(config, num_devices=num_devices)
    min_size = getattr(model, "min_input_size", 1)
    crop = config.crop_size
    crop_hw = (crop, crop) if isinstance(crop, int) else tuple(crop)
    if min(crop_hw) < min_size:
        raise train.ConfigError(
            f"config.crop_size={crop} is too small for {type(model).__name__}: its strides "
            f"need inputs of at least {min_size}x{min_size}. Use --config.crop_size={min_size} "
            "or larger."
        )
    if config.eval_batch_size <= 0 or config.eval_batch_size % num_devices:
        raise train.ConfigError(
            f"config.eval_batch_size={config.eval_batch_size} must be a positive multiple of "
            f"the {num_devices} devices"
        )
    if not config.eval_scales or min(config.eval_scales) <= 0:
        raise train.ConfigError(f"config.eval_scales={config.eval_scales} must be > 0")
    if not isinstance(config.sliding_window, int) or config.sliding_window < 0:
        raise train.ConfigError(
            f"config.sliding_window={config.sliding_window!r} must be a window size >= 1, "
            "or 0 for whole-image prediction"
        )
    if config.normalization not in transforms.NORMALIZATIONS:
        raise train.ConfigError(
            f"config.normalization={config.normalization!r}; choose one of "
            f"{sorted(transforms.NORMALIZATIONS)}"
        )


def backbone_factory(model_config: ml_collections.ConfigDict) -> Callable[..., Any]:
    """The backbone class named by `model_config.backbone`, bound to its options.

    Options read when present: `base_width` and `stride_in_1x1` (ResNets), `width_multiplier`
    (MobileNetV2). The DeepLab models pass `output_stride`, `multi_grid`, `norm` and dtypes.
    """
    name = model_config.backbone
    if name not in BACKBONES:
        raise train.ConfigError(
            f"config.model.backbone={name!r}; choose one of {sorted(BACKBONES)}"
        )
    options: dict[str, Any] = {}
    if name.startswith("resnet"):
        for key in ("base_width", "stride_in_1x1"):
            if key in model_config:
                options[key] = model_config[key]
    if name == "mobilenetv2" and "width_multiplier" in model_config:
        options["width_multiplier"] = model_config.width_multiplier
    return functools.partial(BACKBONES[name], **options)


def eval_split(config: ml_collections.ConfigDict) -> str:
    """The TFDS split evaluated: `eval_split`, cut to its first `num_eval_examples` if set."""
    split = config.eval_split
    if config.num_eval_examples and "[" not in split:
        split = f"{split}[:{int(config.num_eval_examples)}]"
    return split
