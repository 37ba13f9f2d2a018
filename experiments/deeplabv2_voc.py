"""DeepLab v2 (Chen et al., TPAMI 2017) on PASCAL VOC 2012: atrous ResNet-101 at output stride 8
with ASPP-L (four 3x3 class-score branches at rates 6, 12, 18, 24, summed), then a dense CRF.

Paper setting (train_aug, prepared once from the VOC + SBD archives, see README), then the
paper's table: mIoU without and with the CRF, and with multi-scale inputs:

    python experiments/deeplabv2_voc.py --workdir runs/dlv2_voc \\
        --config.pretrained=resnet101.safetensors --config.pretrained_model=resnet101 \\
        --config.manual_dir=/data/voc_manual            # first run only: builds the dataset
    python experiments/deeplabv2_voc.py --workdir runs/dlv2_voc --mode=eval --config.crf=True
    python experiments/deeplabv2_voc.py --workdir runs/dlv2_voc --mode=eval --config.crf=True \\
        --config.eval_scales='(0.5, 0.75, 1.0)'

The authors' released ResNet-101 model, evaluated without training (downloaded once into the
cache), with the CRF settings published with it:

    jaxseg-zoo evaluate deeplabv2_resnet101_voc12 --dataset voc_segmentation/2012 \\
        --data-dir ~/tensorflow_datasets --crf

Recipe (docs/recipes.md): crop 321, random scale 0.5-1.5 and flips, batch 10, SGD momentum 0.9,
poly LR (power 0.9) from 2.5e-4 with 10x for the ASPP-L head, 20k steps, weight decay 5e-4.
CRF (`config.crf_params`): w_bilateral 4, theta_alpha 67, theta_beta 3, w_gaussian 3,
theta_gamma 1, 10 mean-field iterations (the ResNet-101 DeepLab setting).

Published (VOC 2012 val mIoU, MSC + COCO + ASPP-L): 76.35 without / 77.69 with the CRF; test
79.7. Without COCO pre-training and multi-scale training expect several points less (the
paper's ablation credits each of MSC, COCO and augmentation with 1-3 points); the CRF adds 1-2.

Deviations: no COCO pre-training; no multi-scale *training* (the paper fuses 1, 0.75, 0.5 by
max inside the net); test-time scales here average probabilities (DeepLab v3's rule); BatchNorm
is trained (the paper froze it; with batch 10 `--config.model.bn_momentum` matters); the Caffe
ResNet-101 needs `--config.normalization=caffe_bgr --config.model.stride_in_1x1=True`; labels
are never downsampled (logits upsampled to label size). The CRF compiles once per image size.

--demo changes: generated data (300/100 scenes, 21 classes), crop 128, batch 16, ResNet-50 at a
quarter width (base width 16), 280 steps of poly LR from 0.05 (10x head), float32.

The CRF compiles once per image size, and the demo's images all differ in size: score it on a
few of them, e.g. `--demo --mode=eval --config.crf=True --config.num_eval_examples=8`.
"""

import functools

import ml_collections

from jaxseg import experiment
from jaxseg.models import DeepLabV2
from jaxseg.nn import BatchNorm


def get_config() -> ml_collections.ConfigDict:
    config = experiment.base_config()
    config.dataset = "voc_segmentation/2012_aug"
    config.num_classes = 21
    config.crop_size = 321
    config.train_scales = (0.5, 0.75, 1.0, 1.25, 1.5)
    config.normalization = "imagenet"  # torchvision ResNet weights
    config.pretrained_model = "resnet101"
    config.batch_size = 10
    config.eval_batch_size = 10
    config.num_train_steps = 20_000
    config.eval_every = 2_000
    config.checkpoint_every = 1_000
    config.optimizer.learning_rate = 2.5e-4
    config.optimizer.schedule = "poly"
    config.optimizer.power = 0.9
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 5e-4
    config.optimizer.lr_multipliers = (("aspp/.*", 10.0),)  # the classifier learns 10x faster
    config.model = ml_collections.ConfigDict(
        dict(
            backbone="resnet101",
            output_stride=8,
            bn_momentum=0.9997,
            dtype="bfloat16",
            base_width=64,
            stride_in_1x1=False,  # True for Caffe / Keras ResNet weights
            width_multiplier=1.0,  # MobileNetV2 only
        )
    )
    return config


def demo_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config = experiment.demo_defaults(config)
    config.crop_size = 128
    config.batch_size = 16
    config.eval_batch_size = 8
    config.train_scales = (0.75, 1.0, 1.25)
    config.num_train_steps = 280
    config.optimizer.learning_rate = 0.05
    config.model.update(backbone="resnet50", base_width=16, bn_momentum=0.9)
    return config


def build_model(config: ml_collections.ConfigDict) -> DeepLabV2:
    m = config.model
    return DeepLabV2(
        num_classes=config.num_classes,
        backbone=experiment.backbone_factory(m),
        output_stride=m.output_stride,
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
