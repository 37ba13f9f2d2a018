"""Patch classification, the pre-FCN baseline, on PASCAL VOC 2012: a small CNN with fully
connected layers labels the centre pixel of a 65x65 window; a segmentation is that classifier
run at every pixel.

Run densely, the classifier repeats almost all of its work between neighbouring windows. For
evaluation it is therefore made fully convolutional (`PatchClassifier.to_fully_convolutional`:
its dense layers become convolutions, FCN Section 3.1), which scores every window on a grid with
the net's pooling stride s in one pass; s x s shifted passes, interlaced ("shift-and-stitch",
FCN Section 3.2), give every pixel the score of the window centred on it, exactly what the
patch classifier would say (`PatchSegmenter`).

Full setting (train_aug, prepared once from the VOC + SBD archives, see README):

    python experiments/patch_classifier_voc.py --workdir runs/patch_voc \\
        --config.manual_dir=/data/voc_manual            # first run only: builds the dataset
    python experiments/patch_classifier_voc.py --workdir runs/patch_voc --mode=eval

Recipe (a baseline, not a paper's): 65x65 windows (zero = mean padding beyond the image), three
3x3 conv + 2x2 pool levels (32, 64, 128), a 512-unit hidden layer with dropout 0.5; each step
samples 16 random windows from each of 16 augmented 321x321 crops (batch of 256 windows); SGD
momentum 0.9, poly LR from 0.01, weight decay 5e-4, 50k steps, from scratch.

Published: none; the FCN paper's point is that this approach is slow (here the first hidden
layer alone costs 2.4 MMAC per pixel, 0.44 TMAC for a 500x375 image). Expected: far below
FCN-32s (window context only, no pre-training).

--demo changes: generated data (300/100 scenes, 21 classes), 33x33 windows, two conv levels
(16, 32) and 128 hidden units (stride 4: 16 shifted passes), 16 windows from each of 8 crops
of 128 per step, 300 steps of poly LR from 0.05, float32.
"""

import math
from typing import ClassVar

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxseg import experiment
from jaxseg.models import PatchClassifier


def get_config() -> ml_collections.ConfigDict:
    config = experiment.base_config()
    config.dataset = "voc_segmentation/2012_aug"
    config.num_classes = 21
    config.crop_size = 321
    config.normalization = "imagenet"
    config.images_per_step = 16  # crops read per step ...
    config.patches_per_image = 16  # ... windows sampled from each ...
    config.batch_size = 256  # ... = windows per step (what the train step sees)
    config.eval_batch_size = 8
    config.num_train_steps = 50_000
    config.eval_every = 5_000
    config.optimizer.learning_rate = 0.01
    config.optimizer.schedule = "poly"
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 5e-4
    config.model = ml_collections.ConfigDict(
        dict(patch_size=65, conv_features=(32, 64, 128), hidden_features=(512,), dropout_rate=0.5)
    )
    return config


def demo_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config = experiment.demo_defaults(config)
    config.crop_size = 128
    config.images_per_step = 8
    config.patches_per_image = 16
    config.batch_size = 128
    config.num_train_steps = 300
    config.optimizer.learning_rate = 0.05
    config.model.update(patch_size=33, conv_features=(16, 32), hidden_features=(128,))
    return config


class PatchSegmenter(nn.Module):
    """A `PatchClassifier` (submodule `classifier`) used for segmentation.

    `dense=False`: `__call__(patches [B, P, P, 3])` -> `[B, 1, 1, C]`, the centre pixels'
    scores (what training sees). `dense=True`: `__call__(images [B, H, W, 3])` ->
    `[B, H, W, C]`, pixel (y, x) scored from the window centred on it, by shift-and-stitch
    over the fully convolutional classifier. Both modes have the same parameters.
    """

    classifier: PatchClassifier
    dense: bool = True
    min_input_size: ClassVar[int] = 1  # any image: windows reaching past it see zero (mean) padding

    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        size = self.classifier.patch_size
        if not self.dense:
            return self.classifier(images, train)[:, None, None, :]
        # Create (at init) and read the classifier's parameters; the dummy call itself is
        # dead code that XLA removes.
        self.classifier(jnp.zeros((1, size, size, 3), images.dtype))
        fcn, fcn_params = self.classifier.to_fully_convolutional(
            self.classifier.variables["params"]
        )
        stride = self.classifier.patch_stride
        batch, height, width, _ = images.shape
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        # The window centred on pixel y starts at y - size // 2: pad by that much on top, and
        # below so that every shifted view has room for `rows` windows.
        padded = jnp.pad(
            images,
            (
                (0, 0),
                (size // 2, size - 1 + stride * rows - height - size // 2),
                (size // 2, size - 1 + stride * cols - width - size // 2),
                (0, 0),
            ),
        )
        view_h, view_w = size + stride * (rows - 1), size + stride * (cols - 1)
        views = [
            padded[:, dy : dy + view_h, dx : dx + view_w]
            for dy in range(stride)
            for dx in range(stride)
        ]
        views = einops.rearrange(jnp.stack(views), "k b h w c -> (k b) h w c")
        scores = fcn.apply({"params": fcn_params}, views)  # [(s s B), rows, cols, C]
        # View (dy, dx) scored pixels (stride * i + dy, stride * j + dx): interlace them.
        dense = einops.rearrange(
            scores, "(dy dx b) r k c -> b (r dy) (k dx) c", dy=stride, dx=stride, b=batch
        )
        return dense[:, :height, :width]


def _classifier(config: ml_collections.ConfigDict) -> PatchClassifier:
    m = config.model
    return PatchClassifier(
        num_classes=config.num_classes,
        patch_size=m.patch_size,
        conv_features=tuple(m.conv_features),
        hidden_features=tuple(m.hidden_features),
        dropout_rate=m.dropout_rate,
        conv=experiment.conv_layers(config).conv,
    )


def build_model(config: ml_collections.ConfigDict) -> PatchSegmenter:
    return PatchSegmenter(classifier=_classifier(config), dense=True)


def build_train_model(config: ml_collections.ConfigDict) -> PatchSegmenter:
    return PatchSegmenter(classifier=_classifier(config), dense=False)


def sample_patches(config: ml_collections.ConfigDict, batch: dict, step: int) -> dict:
    """Crops `[b, H, W, 3]` -> `patches_per_image` random windows of each, labelled by their
    centre pixel: `image [b * n, P, P, 3]`, `label [b * n, 1, 1]` (seeded by the step)."""
    size, count = config.model.patch_size, config.patches_per_image
    images, labels = np.asarray(batch["image"]), np.asarray(batch["label"])
    b, height, width, _ = images.shape
    rng = np.random.default_rng([config.seed, step, jax.process_index()])
    ys = rng.integers(0, height, size=(b, count))
    xs = rng.integers(0, width, size=(b, count))
    half = size // 2
    padded = np.pad(images, ((0, 0), (half, size - 1 - half), (half, size - 1 - half), (0, 0)))
    patches = np.stack(
        [
            padded[i, y : y + size, x : x + size]
            for i in range(b)
            for y, x in zip(ys[i], xs[i], strict=True)
        ]
    )
    centre = labels[np.arange(b)[:, None], ys, xs].reshape(-1, 1, 1)
    return {
        "image": patches.astype(np.float32),
        "label": centre.astype(np.int32),
        "mask": np.ones(len(patches), bool),
    }


EXPERIMENT = experiment.Experiment(
    file=__file__,
    get_config=get_config,
    demo_config=demo_config,
    model=build_model,
    train_model=build_train_model,
    loss=experiment.cross_entropy,
    batch_transform=sample_patches,
    dataset=experiment.dataset_info,
    normalize=experiment.normalize,
    initialize=experiment.init_from_pretrained,
    eval_settings=(),
)

if __name__ == "__main__":
    experiment.main(EXPERIMENT)
