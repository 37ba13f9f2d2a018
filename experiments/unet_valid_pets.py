"""U-Net as published (Ronneberger, Fischer & Brox, MICCAI 2015) on the Oxford-IIIT Pet trimaps:
unpadded ("VALID") 3x3 convs, a 572x572 tile in gives the 388x388 centre out, training loss
weighted by the border map w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / 2 sigma^2) (w0 10, sigma 5),
whole images predicted by overlap-tile with mirrored borders. The padded variant is
`unet_pets.py`.

Full setting (TFDS `oxford_iiit_pet`, 3,680 train / 3,669 test; TFDS downloads it once):

    python experiments/unet_valid_pets.py --workdir runs/unet_valid_pets --config.download=True
    python experiments/unet_valid_pets.py --workdir runs/unet_valid_pets --mode=eval

Recipe: depth 4, 64 base channels, no BatchNorm, dropout 0.5 at the bottom; training tiles
572x572 (`crop_size`; its 388x388 centre is scored against the centre of the labels) with
random scale 0.5-1.25 and flips; border weights from each tile's labels (instances = connected
components of the pet class; class-balanced w_c); batch 4, Adam at 1e-4, 20k steps. Inference:
the image is mirrored by 92 pixels at every border, cut into 572x572 tiles whose 388x388
outputs tile the image exactly (`OverlapTileUNet`), so every pixel is predicted with its full
context, as in the paper's Fig. 2.

Published: the paper has no pet result (cell tracking IoU 92.03% PhC-U373, 77.56% DIC-HeLa).
Expected here: close to unet_pets.py; pets rarely touch, so the border term matters less than
for the paper's cells.

Deviations: the paper trains with SGD, momentum 0.99 and a batch of one tile and does not give
its learning rate: Adam here. Flax's default (LeCun) initialisation instead of the paper's He
initialisation; no elastic deformations.

--demo changes: the generated VOC-layout scenes relabelled to two classes (objects touch and
overlap, so the border term is visible), depth 3 and 16 base channels, tiles of 188 -> 100
pixels (44-pixel mirrored margin), batch 8, Adam at 1e-3 for 200 steps, float32.
"""

import math

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxseg import experiment, losses, train
from jaxseg.data.label_tables import PET_CLASS_NAMES
from jaxseg.models import UNet, unet_valid_input_size, unet_valid_output_size


def get_config() -> ml_collections.ConfigDict:
    config = experiment.base_config()
    config.dataset = "oxford_iiit_pet"
    config.num_classes = 2
    config.eval_split = "test"
    config.crop_size = 572  # one training tile; its output is the 388x388 centre
    config.train_scales = (0.5, 0.75, 1.0, 1.25)
    config.normalization = "imagenet"
    config.batch_size = 4
    config.eval_batch_size = 4
    config.num_train_steps = 20_000
    config.eval_every = 2_000
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-4
    config.optimizer.schedule = "constant"
    config.border_w0 = 10.0
    config.border_sigma = 5.0
    config.model = ml_collections.ConfigDict(
        dict(depth=4, base_features=64, tile_output=388, dropout_rate=0.5, dtype="bfloat16")
    )
    return config


def demo_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config = experiment.demo_defaults(config)  # the VOC-layout scenes, relabelled below
    config.num_classes = 2
    config.crop_size = 188
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 200
    config.optimizer.learning_rate = 1e-3
    config.model.update(depth=3, base_features=16, tile_output=100)
    return config


class OverlapTileUNet(nn.Module):
    """An unpadded U-Net trained on tiles and applied to whole images by overlap-tile.

    `__call__(images [B, H, W, 3], train=True)`: one tile per image, logits of its centre
    `[B, h, w, C]` with `h = unet_valid_output_size(H)` (the train step crops the labels).
    `train=False`: logits `[B, H, W, C]` for any H, W: the image is mirror-padded by the
    network's margin, cut into overlapping tiles whose outputs (`tile_output` pixels, rounded
    up to a size the pools divide evenly) abut exactly, and the outputs are reassembled.
    """

    unet: UNet
    tile_output: int

    @property
    def min_input_size(self) -> int:
        return self.unet.min_input_size

    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        if train:
            return self.unet(images, train=True)
        depth = self.unet.depth
        tile_in = unet_valid_input_size(self.tile_output, depth)
        tile_out = unet_valid_output_size(tile_in, depth)
        margin = (tile_in - tile_out) // 2
        batch, height, width, _ = images.shape
        rows, cols = math.ceil(height / tile_out), math.ceil(width / tile_out)
        padded = jnp.pad(
            images,
            (
                (0, 0),
                (margin, margin + rows * tile_out - height),
                (margin, margin + cols * tile_out - width),
                (0, 0),
            ),
            mode="reflect",  # mirrored context, as the paper's Fig. 2
        )
        tiles = [
            padded[:, r * tile_out : r * tile_out + tile_in, c * tile_out : c * tile_out + tile_in]
            for r in range(rows)
            for c in range(cols)
        ]
        tiles = einops.rearrange(jnp.stack(tiles), "t b h w c -> (b t) h w c")
        logits = self.unet(tiles, train=False)
        logits = einops.rearrange(
            logits, "(b r k) h w c -> b (r h) (k w) c", b=batch, r=rows, k=cols
        )
        return logits[:, :height, :width]


def build_model(config: ml_collections.ConfigDict) -> OverlapTileUNet:
    m = config.model
    crop = config.crop_size
    if unet_valid_input_size(unet_valid_output_size(crop, m.depth), m.depth) != crop:
        fits = unet_valid_input_size(max(unet_valid_output_size(crop, m.depth), 1), m.depth)
        raise train.ConfigError(
            f"config.crop_size={crop} is not a U-Net tile size at depth {m.depth} (its maps "
            f"would not pool evenly, so the output would not be centred): use {fits}"
        )
    unet = UNet(
        num_classes=config.num_classes,
        depth=m.depth,
        base_features=m.base_features,
        padding="VALID",
        conv=experiment.conv_layers(config).conv,
        dropout_rate=m.dropout_rate,
        dtype=experiment.compute_dtype(m.dtype),
    )
    return OverlapTileUNet(unet=unet, tile_output=m.tile_output)


def add_border_weights(config: ml_collections.ConfigDict, batch: dict, step: int) -> dict:
    """The paper's per-pixel loss weights, from each training tile's labels (host side)."""
    del step
    weights = losses.unet_weight_map(
        np.asarray(batch["label"]), w0=config.border_w0, sigma=config.border_sigma
    )
    return {**batch, "pixel_weights": weights.astype(np.float32)}


def dataset_info(config: ml_collections.ConfigDict):
    """The pets; for the demo, the VOC-layout scenes with every object class mapped to "pet"."""
    return experiment.foreground_dataset_info(config, PET_CLASS_NAMES)


EXPERIMENT = experiment.Experiment(
    file=__file__,
    get_config=get_config,
    demo_config=demo_config,
    model=build_model,
    train_model=build_model,
    loss=experiment.cross_entropy,
    batch_transform=add_border_weights,
    dataset=dataset_info,
    normalize=experiment.normalize,
    initialize=experiment.init_from_pretrained,
    eval_settings=(),
)

if __name__ == "__main__":
    experiment.main(EXPERIMENT)
