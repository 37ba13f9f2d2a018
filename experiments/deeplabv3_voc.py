"""DeepLab v3 (Chen et al., arXiv 2017) on PASCAL VOC 2012: atrous ResNet-101 with multi-grid
(1, 2, 4) in block4 and ASPP (1x1, rates 6/12/18, image pooling), no decoder.

Paper setting (train_aug, prepared once from the VOC + SBD archives, see README):

    python experiments/deeplabv3_voc.py --workdir runs/dlv3_voc \\
        --config.pretrained=resnet101.safetensors --config.pretrained_model=resnet101 \\
        --config.manual_dir=/data/voc_manual            # first run only: builds the dataset
    python experiments/deeplabv3_voc.py --workdir runs/dlv3_voc --mode=eval \\
        --config.model.output_stride=8 --config.eval_flip=True \\
        --config.eval_scales='(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)'

The authors' released DeepLab v3 model on VOC is a MobileNetV2 one (no ResNet-101 v3 model
was released); evaluated without training by its published protocols (downloaded once):

    jaxseg-zoo evaluate mobilenetv2_coco_voc_trainaug --dataset voc_segmentation/2012 \\
        --data-dir ~/tensorflow_datasets

Recipe (docs/recipes.md): train at output stride 16 (evaluate at 8: same parameters, rates
doubled), crop 513, random scale 0.5-2.0 and flips, batch 16, SGD momentum 0.9, poly LR (power
0.9) from 0.007, 30k steps, weight decay 1e-4, BatchNorm decay 0.9997; bf16 compute.

Published (VOC 2012 val mIoU, ImageNet init): 77.21 (OS16) / 79.77 (OS8 + multi-scale + flip).
Expected with torchvision ResNet-101 weights: within a point or two of those. The paper also
fine-tunes on `trainval` at OS8 with frozen BN and bootstraps hard pixels for its test numbers;
that second stage is not part of this file.

Deviations: half-pixel bilinear resizing (`--config.align_corners=True` for TF1's); labels
are never downsampled (logits upsampled to label size).

--demo changes: generated data (300/100 scenes, 21 classes), crop 128, batch 16, ResNet-50 at
a quarter width (base width 16), 64 ASPP channels, 280 steps of poly LR from 0.05, float32.
"""

import functools

import ml_collections

from jaxseg import experiment
from jaxseg.models import DeepLabV3
from jaxseg.nn import BatchNorm


def get_config() -> ml_collections.ConfigDict:
    config = experiment.base_config()
    config.dataset = "voc_segmentation/2012_aug"
    config.num_classes = 21
    config.crop_size = 513
    config.normalization = "imagenet"  # torchvision ResNet weights
    config.pretrained_model = "resnet101"
    config.batch_size = 16
    config.num_train_steps = 30_000
    config.eval_every = 2_000
    config.checkpoint_every = 1_000
    config.optimizer.learning_rate = 0.007
    config.optimizer.schedule = "poly"
    config.optimizer.power = 0.9
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 1e-4
    config.model = ml_collections.ConfigDict(
        dict(
            backbone="resnet101",
            output_stride=16,
            multi_grid=(1, 2, 4),  # the paper's; () for none (MobileNetV2)
            aspp_features=256,
            dropout_rate=0.1,
            bn_momentum=0.9997,
            dtype="bfloat16",
            base_width=64,
            stride_in_1x1=False,  # True for Keras ResNet weights
            width_multiplier=1.0,  # MobileNetV2 only
        )
    )
    return config


def demo_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config = experiment.demo_defaults(config)
    config.crop_size = 128
    config.batch_size = 16
    config.num_train_steps = 280
    config.optimizer.learning_rate = 0.05
    config.model.update(backbone="resnet50", base_width=16, aspp_features=64, bn_momentum=0.9)
    return config


def build_model(config: ml_collections.ConfigDict) -> DeepLabV3:
    m = config.model
    return DeepLabV3(
        num_classes=config.num_classes,
        backbone=experiment.backbone_factory(m),
        output_stride=m.output_stride,
        multi_grid=tuple(m.multi_grid) or None,
        aspp_features=m.aspp_features,
        dropout_rate=m.dropout_rate,
        align_corners=config.align_corners,
        conv=experiment.conv_layers(config).conv,
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
