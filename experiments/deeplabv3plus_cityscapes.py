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

This file imports deeplabv3plus_voc.py and changes only the data and schedule.

--demo changes: there is no generated Cityscapes, so it runs deeplabv3plus_voc's demo: the
generated VOC-layout scenes (21 classes) and its CPU-sized network (ResNet-50 at base
width 16, 64 ASPP/decoder channels), crop 128, batch 16, 280 steps of poly LR from 0.05.
"""

import dataclasses

import deeplabv3plus_voc as v3plus  # the base experiment, next to this file
import ml_collections

from jaxseg import experiment


def get_config() -> ml_collections.ConfigDict:
    """The VOC setting (`deeplabv3plus_voc.py`) with DeepLab's Cityscapes data and schedule."""
    config = v3plus.get_config()
    config.dataset = "cityscapes/semantic_segmentation"
    config.num_classes = 19
    config.crop_size = 769
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 90_000
    config.eval_every = 5_000
    return config


# The model, loss, data handling and `--demo` settings are those of deeplabv3plus_voc.py.
EXPERIMENT = dataclasses.replace(v3plus.EXPERIMENT, file=__file__, get_config=get_config)

if __name__ == "__main__":
    experiment.main(EXPERIMENT)
