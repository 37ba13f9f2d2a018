"""FCN-16s (Long, Shelhamer & Darrell, CVPR 2015) on PASCAL VOC: FCN-32s' VGG16 net with its
score_fr upsampled x2 (learned, bilinear init) + score_pool4 (zero init), then x16.

Paper setting (train_aug, prepared once from the VOC + SBD archives, see README):

    python experiments/fcn16s_voc.py --workdir runs/fcn16s_voc \\
        --config.pretrained=vgg16_weights_tf_dim_ordering_tf_kernels.h5 \\
        --config.manual_dir=/data/voc_manual            # first run only: builds the dataset
    python experiments/fcn16s_voc.py --workdir runs/fcn16s_voc --mode=eval

Quick start: `python experiments/fcn16s_voc.py --demo`.

Published (VOC2011 seg11valid, pixel acc. / mean acc. / mean IoU / f.w. IoU): 90.0 / 75.7 / 62.4
/ 83.0. Evaluated here on seg11valid too (the config of `fcn32s_voc.py`); expected
(train_aug, ImageNet VGG16): about the same mean IoU.

Recipe, deviations and --demo changes: those of `fcn32s_voc.py`, whose config this file
imports; only the model differs. The skip scores are trained at once from VGG16 instead of
fine-tuning the coarser net (LR 1e-12 for FCN-16s, 1e-14 for FCN-8s in the reference).
"""

import dataclasses

import fcn32s_voc as fcn32s  # the base experiment, next to this file
import ml_collections

from jaxseg import experiment
from jaxseg.models import FCN16s


def build_model(config: ml_collections.ConfigDict) -> FCN16s:
    return fcn32s.fcn_model(FCN16s, config)


EXPERIMENT = dataclasses.replace(
    fcn32s.EXPERIMENT, file=__file__, model=build_model, train_model=build_model
)

if __name__ == "__main__":
    experiment.main(EXPERIMENT)
