"""FCN-8s (Long, Shelhamer & Darrell, CVPR 2015) on PASCAL VOC: FCN-16s' fusion upsampled x2 +
score_pool3 (zero init), then x8.

Paper setting (train_aug, prepared once from the VOC + SBD archives, see README):

    python experiments/fcn8s_voc.py --workdir runs/fcn8s_voc \\
        --config.pretrained=vgg16_weights_tf_dim_ordering_tf_kernels.h5 \\
        --config.manual_dir=/data/voc_manual            # first run only: builds the dataset
    python experiments/fcn8s_voc.py --workdir runs/fcn8s_voc --mode=eval

Quick start: `python experiments/fcn8s_voc.py --demo`.

Published (VOC2011 seg11valid, pixel acc. / mean acc. / mean IoU / f.w. IoU): 90.3 / 75.9 / 62.7
/ 83.2. Evaluated here on seg11valid too (the config of `fcn32s_voc.py`); expected
(train_aug, ImageNet VGG16): about the same mean IoU.

The authors' released FCN-8s, evaluated without training (downloaded once into the cache):

    jaxseg-zoo evaluate fcn8s_heavy_pascal --dataset voc_segmentation/2012 --split seg11valid \\
        --data-dir ~/tensorflow_datasets

It prints the published 65.5 beside the mIoU measured on seg11valid, the split the release was
published on (VOC2011 val minus SBD train, which the release was trained on). `--split
validation` would score it on VOC 2012 val, part of which is in SBD train: not a held-out
number.

Recipe, deviations and --demo changes: those of `fcn32s_voc.py`, whose config this file
imports; only the model differs. The skip scores are trained at once from VGG16 instead of
fine-tuning the coarser net (LR 1e-12 for FCN-16s, 1e-14 for FCN-8s in the reference).
"""

import dataclasses

import fcn32s_voc as fcn32s  # the base experiment, next to this file
import ml_collections

from jaxseg import experiment
from jaxseg.models import FCN8s


def build_model(config: ml_collections.ConfigDict) -> FCN8s:
    return fcn32s.fcn_model(FCN8s, config)


EXPERIMENT = dataclasses.replace(
    fcn32s.EXPERIMENT, file=__file__, model=build_model, train_model=build_model
)

if __name__ == "__main__":
    experiment.main(EXPERIMENT)
