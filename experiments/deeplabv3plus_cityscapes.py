"""DeepLab v3+ (Chen et al., ECCV 2018) on Cityscapes: Xception-65 at output stride 16, ASPP
(6, 12, 18) + image pooling, stride-4 decoder, 19 classes, whole 1024x2048 images at test time.

Full setting (TFDS `cityscapes/semantic_segmentation`, 2,975 train / 500 val; register at
cityscapes-dataset.com and put leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip in
MANUAL_DIR; prepared once):

    python experiments/deeplabv3plus_cityscapes.py --workdir runs/dlv3p_cityscapes \\
        --config.manual_dir=/data/cityscapes_manual     # first run only: builds the dataset
    python experiments/deeplabv3plus_cityscapes.py --workdir runs/dlv3p_cityscapes --mode=eval \\
        --config.model.output_stride=8 --config.eval_flip=True \\
        --config.eval_scales='(0.75, 1.0, 1.25, 1.5, 1.75)'

Recipe (DeepLab's Cityscapes setting): crop 769x769, random scale 0.5-2.0 and flips, batch 8,
SGD momentum 0.9, poly LR (power 0.9) from 0.007, 90k steps, weight decay 4e-5 (Xception),
BatchNorm decay 0.9997; bf16 compute; whole-image evaluation at 1024x2048
(`--config.sliding_window=769` evaluates by overlapping 769x769 windows instead).

Published (Cityscapes val mIoU): Xception-65 with decoder, OS16, ImageNet pre-training: 79.14;
test 82.1 with coarse annotations and JFT pre-training. Expected with an ImageNet backbone
(`--config.model.backbone=resnet101 --config.pretrained=...`, weight decay 1e-4): mid to high
70s.

Deviations: no converter for TF-slim Xception-65 weights (use ResNet-101 for ImageNet
initialisation); half-pixel bilinear resizing; labels never downsampled.

--demo changes: there is no generated Cityscapes, so it trains on the generated VOC-layout
scenes (21 classes), with the deeplabv3plus_voc demo's CPU-sized network (ResNet-50 at base
width 16, 64 ASPP/decoder channels), crop 128, batch 16, 280 steps of poly LR from 0.05.
"""

import functools

import ml_collections

from jaxseg import experiment
from jaxseg.models import DeepLabV3Plus
from jaxseg.nn import BatchNorm


def get_config() -> ml_collections.ConfigDict:
    config = experiment.base_config()
    config.dataset = "cityscapes/semantic_segmentation"
    config.num_classes = 19
    config.crop_size = 769
    config.normalization = "inception"  # TF-slim Xception's [-1, 1] inputs
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 90_000
    config.eval_every = 5_000
    config.checkpoint_every = 1_000
    config.optimizer.learning_rate = 0.007
    config.optimizer.schedule = "poly"
    config.optimizer.power = 0.9
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 4e-5
    config.model = ml_collections.ConfigDict(
        dict(
            backbone="xception65",
            output_stride=16,
            aspp_features=256,
            decoder_features=256,
            low_level_features=48,
            dropout_rate=0.1,
            bn_momentum=0.9997,
            dtype="bfloat16",
            base_width=64,
            stride_in_1x1=False,
            width_multiplier=1.0,
        )
    )
    return config


def demo_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config = experiment.demo_defaults(config)  # VOC-layout scenes, 21 classes
    config.crop_size = 128
    config.batch_size = 16
    config.eval_batch_size = 8
    config.num_train_steps = 280
    config.optimizer.learning_rate = 0.05
    config.optimizer.weight_decay = 1e-4
    config.model.update(
        backbone="resnet50",
        base_width=16,
        aspp_features=64,
        decoder_features=64,
        low_level_features=24,
        bn_momentum=0.9,
    )
    return config


def build_model(config: ml_collections.ConfigDict) -> DeepLabV3Plus:
    m = config.model
    return DeepLabV3Plus(
        num_classes=config.num_classes,
        backbone=experiment.backbone_factory(m),
        output_stride=m.output_stride,
        aspp_features=m.aspp_features,
        decoder_features=m.decoder_features,
        low_level_features=m.low_level_features,
        dropout_rate=m.dropout_rate,
        align_corners=config.align_corners,
        norm=functools.partial(BatchNorm, momentum=m.bn_momentum, epsilon=1e-5),
        dtype=experiment.compute_dtype(m.dtype),
    )


EXPERIMENT = experiment.Experiment(
    file=__file__,
    get_config=get_config,
    demo_config=demo_config,
    model=build_model,
    train_model=build_model,
    loss=experiment.cross_entropy,
    batch_transform=None,
    dataset=experiment.dataset_info,
    normalize=experiment.normalize,
    initialize=experiment.init_from_pretrained,
    eval_settings=("model.output_stride",),
)

if __name__ == "__main__":
    experiment.main(EXPERIMENT)
