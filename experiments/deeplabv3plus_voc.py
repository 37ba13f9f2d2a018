"""DeepLab v3+ (Chen et al., ECCV 2018) on PASCAL VOC 2012: encoder-decoder with atrous separable
convolution. Xception-65 at output stride 16, ASPP (6, 12, 18) + image pooling, a stride-4
decoder.

Quick start (no download; generated VOC-layout data, CPU-sized):

    python experiments/deeplabv3plus_voc.py --demo

It prints a per-class table and, measured on 2 quiet CPU cores (AMD EPYC, 2026-12-08), ends with
pixel accuracy 98.89, mean pixel accuracy 96.95, mean IoU 92.07, frequency-weighted IoU 97.86
after 2.9 minutes on a first run (data generation and compilation included; 2.4 minutes once
the data and the compilation cache exist); the run folder
runs/deeplabv3plus_voc_demo holds checkpoints/, tensorboard/, predictions/ and overlays/.

Paper setting (train_aug 10,582 images, prepared once from the VOC + SBD archives, see README),
Xception-65 initialised from the authors' ImageNet checkpoint (`config.init_from =
"zoo:xception_65"`, downloaded once into the cache when training starts), built with the
official graph's switches those weights need (backbone BN epsilon 1e-3, align_corners):

    python experiments/deeplabv3plus_voc.py --workdir runs/dlv3p_voc \\
        --config.manual_dir=/data/voc_manual            # first run only: builds the dataset
    python experiments/deeplabv3plus_voc.py --workdir runs/dlv3p_voc --mode=eval \\
        --config.model.output_stride=8 --config.eval_flip=True \\
        --config.eval_scales='(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)'

The ResNet-101 variant with torchvision's ImageNet weights:

    python experiments/deeplabv3plus_voc.py --workdir runs/dlv3p_voc_r101 --config.init_from= \\
        --config.model.backbone=resnet101 --config.normalization=imagenet \\
        --config.model.backbone_epsilon=1e-5 --config.align_corners=False \\
        --config.optimizer.weight_decay=1e-4 --config.pretrained_model=resnet101 \\
        --config.pretrained=resnet101.safetensors

The released models themselves (no training): `jaxseg-zoo evaluate
xception65_coco_voc_trainaug --dataset voc_segmentation/2012 --data-dir DIR` prints the
published numbers beside the measured ones.

Recipe (docs/recipes.md): crop 513, random scale 0.5-2.0 and flips, batch 16, SGD momentum 0.9,
poly LR (power 0.9) from 0.007, 30k steps, weight decay 4e-5 (Xception; use 1e-4 with
`--config.model.backbone=resnet101`), BatchNorm decay 0.9997, epsilon 1e-5; bf16 compute.

Published (VOC 2012 val mIoU): Xception-65 82.20 (OS16) / 83.58 (OS8 + multi-scale + flip),
both with COCO + JFT pre-training; ResNet-101 decoder OS16 78.85 (ImageNet init).
Expected here with ImageNet weights: ResNet-101 about 77-79 at OS16; without COCO/JFT,
Xception-65 from `zoo:xception_65` is not expected to reach the paper's 82 (not measured
here). From scratch (`--config.init_from=` with no `--config.pretrained`) expect far lower
numbers: the recipe assumes a pre-trained backbone.

Deviations: no COCO/JFT pre-training; labels are never downsampled (logits are upsampled to
label size). `--demo` resizes with half-pixel centres (`align_corners=False`).

--demo changes: generated data (300 train / 100 val scenes, 96-128 x 120-160 pixels, 21
VOC classes), crop 128, batch 16, a ResNet-50 at a quarter of its width (base width 16) with 64
ASPP/decoder channels, 280 steps of poly LR from 0.05, float32 compute (bf16 is slower on CPU),
one evaluation at the end.
"""

import functools

import ml_collections

from jaxseg import experiment
from jaxseg.models import DeepLabV3Plus
from jaxseg.nn import BatchNorm


def get_config() -> ml_collections.ConfigDict:
    config = experiment.base_config()
    config.dataset = "voc_segmentation/2012_aug"
    config.num_classes = 21
    config.crop_size = 513
    config.normalization = "inception"  # TF-slim Xception's [-1, 1] inputs
    config.batch_size = 16
    config.num_train_steps = 30_000
    config.eval_every = 2_000
    config.checkpoint_every = 1_000
    config.optimizer.learning_rate = 0.007
    config.optimizer.schedule = "poly"
    config.optimizer.power = 0.9
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 4e-5
    # The paper's initialisation: the authors' ImageNet Xception-65 (TF-slim), downloaded once
    # into the cache when training starts. Its weights mean what they meant with the official
    # graph's switches, set here: BN epsilon 1e-3 in the backbone, align_corners resizes.
    config.init_from = "zoo:xception_65"
    config.align_corners = True
    config.model = ml_collections.ConfigDict(
        dict(
            backbone="xception65",  # or resnet101 / resnet50 / mobilenetv2
            output_stride=16,  # 8 for evaluation (same parameters)
            separable=True,  # depthwise-separable ASPP/decoder convs (the Xception model)
            multi_grid=(),  # (): none, as Xception; (1, 2, 4) for the ResNet-101 variant
            aspp_features=256,
            decoder_features=256,
            low_level_features=48,
            dropout_rate=0.1,
            bn_momentum=0.9997,
            backbone_epsilon=1e-3,  # TF-slim Xception's (1e-5 in ASPP and decoder)
            dtype="bfloat16",
            base_width=64,  # ResNets only
            stride_in_1x1=False,  # ResNets: True for Caffe/Keras-layout weights
            width_multiplier=1.0,  # MobileNetV2 only
        )
    )
    return config


def demo_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config = experiment.demo_defaults(config)  # generated VOC-layout data, float32
    config.crop_size = 128
    config.batch_size = 16
    config.num_train_steps = 280
    config.optimizer.learning_rate = 0.05
    config.optimizer.weight_decay = 1e-4
    config.align_corners = False  # demo_defaults leaves init_from empty: no download
    config.model.update(
        backbone="resnet50",
        backbone_epsilon=1e-5,
        base_width=16,
        aspp_features=64,
        decoder_features=64,
        low_level_features=24,
        bn_momentum=0.9,  # statistics of a net trained from scratch must settle in 280 steps
        separable=False,  # the paper's ResNet variant: plain convs, multi-grid (1, 2, 4)
        multi_grid=(1, 2, 4),
    )
    return config


def build_model(config: ml_collections.ConfigDict) -> DeepLabV3Plus:
    m = config.model
    return DeepLabV3Plus(
        num_classes=config.num_classes,
        backbone=experiment.backbone_factory(m),
        output_stride=m.output_stride,
        separable=m.separable,
        multi_grid=tuple(m.multi_grid) or None,
        aspp_features=m.aspp_features,
        decoder_features=m.decoder_features,
        low_level_features=m.low_level_features,
        dropout_rate=m.dropout_rate,
        align_corners=config.align_corners,
        conv=experiment.conv_layers(config).conv,
        norm=functools.partial(BatchNorm, momentum=m.bn_momentum, epsilon=1e-5),
        backbone_norm=functools.partial(
            BatchNorm, momentum=m.bn_momentum, epsilon=m.get("backbone_epsilon", 1e-5)
        ),
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
