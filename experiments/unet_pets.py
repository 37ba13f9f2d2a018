"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015), the common padded ("SAME") variant with
BatchNorm, on the Oxford-IIIT Pet trimaps: pet vs background, the trimap's border band ignored.
The paper's unpadded network with border weights and overlap-tile inference is
`unet_valid_pets.py`.

Full setting (TFDS `oxford_iiit_pet`, 3,680 train / 3,669 test; TFDS downloads it once):

    python experiments/unet_pets.py --workdir runs/unet_pets --config.download=True
    python experiments/unet_pets.py --workdir runs/unet_pets --mode=eval

Recipe: depth 4, 64 base channels (31M parameters), SAME convs + BatchNorm, dropout 0.5 at the
bottom; crop 256 with random scale 0.5-1.25 and flips, batch 16, Adam at 1e-3 with cosine
decay, 20k steps, from scratch. Scored on the test split.

Published: the paper has no pet result (its numbers are cell tracking IoU 92.03% on PhC-U373 and
77.56% on DIC-HeLa, and the EM segmentation challenge). Expected here: roughly 85-90% mean IoU
over the two classes; the trimap's uncertain border band is ignored, as the dataset intends.

Deviations from the paper: SAME padding (the output has the input's size, no tiling needed),
BatchNorm, Adam instead of SGD with momentum 0.99, no border weights and no elastic
deformations (both are in unet_valid_pets.py / not implemented, respectively).

--demo changes: the generated VOC-layout scenes relabelled to two classes (any object = "pet"),
crop 128, 16 base channels, batch 16, 200 steps, float32.
"""

import ml_collections

from jaxseg import experiment
from jaxseg.data.label_tables import PET_CLASS_NAMES
from jaxseg.models import UNet


def get_config() -> ml_collections.ConfigDict:
    config = experiment.base_config()
    config.dataset = "oxford_iiit_pet"
    config.num_classes = 2
    config.train_split = "train"
    config.eval_split = "test"
    config.crop_size = 256
    config.train_scales = (0.5, 0.75, 1.0, 1.25)
    config.normalization = "imagenet"
    config.batch_size = 16
    config.eval_batch_size = 8
    config.num_train_steps = 20_000
    config.eval_every = 2_000
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "cosine"
    config.model = ml_collections.ConfigDict(
        dict(depth=4, base_features=64, batch_norm=True, dropout_rate=0.5, dtype="bfloat16")
    )
    return config


def demo_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config = experiment.demo_defaults(config)  # the VOC-layout scenes, relabelled below
    config.crop_size = 128
    config.num_classes = 2
    config.batch_size = 16
    config.num_train_steps = 200
    config.model.base_features = 16
    return config


def build_model(config: ml_collections.ConfigDict) -> UNet:
    m = config.model
    return UNet(
        num_classes=config.num_classes,
        depth=m.depth,
        base_features=m.base_features,
        padding="SAME",
        batch_norm=m.batch_norm,
        conv=experiment.conv_layers(config).conv,
        dropout_rate=m.dropout_rate,
        dtype=experiment.compute_dtype(m.dtype),
    )


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
    batch_transform=None,
    dataset=dataset_info,
    normalize=experiment.normalize,
    initialize=experiment.init_from_pretrained,
    eval_settings=(),
)

if __name__ == "__main__":
    experiment.main(EXPERIMENT)
