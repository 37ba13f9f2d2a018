"""FCN-32s (Long, Shelhamer & Darrell, CVPR 2015) on PASCAL VOC: VGG16 made fully convolutional
(fc6 = 7x7 conv 4096, fc7 = 1x1 conv 4096, score_fr = 1x1 to classes), score_fr upsampled x32
(fixed bilinear).

Paper setting (train_aug, prepared once from the VOC + SBD archives, see README):

    python experiments/fcn32s_voc.py --workdir runs/fcn32s_voc \\
        --config.pretrained=vgg16_weights_tf_dim_ordering_tf_kernels.h5 \\
        --config.manual_dir=/data/voc_manual            # first run only: builds the dataset
    python experiments/fcn32s_voc.py --workdir runs/fcn32s_voc --mode=eval

Recipe (docs/recipes.md, the reference Caffe solvers): batch 1, whole images (crop 512 pads every
VOC image, padding is ignored), no augmentation, SGD momentum 0.99, weight decay 5e-4, fixed
learning rate, 100k steps, Caffe VGG16 inputs (BGR, mean subtracted; Keras' VGG16 file holds
those weights, fc1/fc2 included). The reference sums the loss over pixels with LR 1e-10; this
code averages it over valid pixels, whose gradient is 1/N of the sum's, so the same steps take
LR 1e-10 x N with N ~ 500 x 375 = 1.9e5 pixels per image: 2e-5.

Evaluated on seg11valid, the paper's split: the 736 images of VOC2011 val not in SBD train
(`voc_segmentation` builds it from the VOC 2012 archive; `--config.eval_split=validation` scores
VOC 2012 val instead). Published (seg11valid, pixel acc. / mean acc. / mean IoU / f.w. IoU):
89.1 / 73.3 / 59.4 / 81.4. Expected here (train_aug, which leaves out all of VOC 2012 val) with
ImageNet VGG16: about the same mean IoU.

FCN-16s and FCN-8s (`fcn16s_voc.py`, `fcn8s_voc.py`) import this file and change only the model.

Deviations: SAME padding with every map aligned to the input instead of the reference's
100-pixel input pad and fixed crops (`--config.model.faithful_padding=True` restores them);
FCN-16s/8s are trained at once from VGG16 (zero-initialised skip scores) instead of being
fine-tuned from the coarser net with LR 1e-12 / 1e-14; no doubled bias learning rate; trained
on VOC2012 train_aug (10,582 images; the paper: SBD train, 8,498).

--demo changes: generated data (300/100 scenes, 21 classes), crop 96, batch 4 (VGG16 is heavy
for a CPU), fc6/fc7 with 256 channels, Adam at 2e-4 for 300 steps instead of SGD (a VGG16
without BatchNorm trained from scratch barely moves with SGD in so few steps), float32.
"""

import flax.linen as nn
import ml_collections

from jaxseg import experiment
from jaxseg.models import FCN32s


def get_config() -> ml_collections.ConfigDict:
    config = experiment.base_config()
    config.dataset = "voc_segmentation/2012_aug"
    config.eval_split = "seg11valid"  # the FCN papers' and releases' evaluation set
    config.num_classes = 21
    config.crop_size = 512
    config.train_scales = (1.0,)
    config.flip = False
    config.normalization = "caffe_bgr"
    config.pretrained_model = "vgg16"
    config.batch_size = 1
    config.eval_batch_size = 1
    config.num_train_steps = 100_000
    config.eval_every = 4_000
    config.checkpoint_every = 4_000
    config.optimizer.learning_rate = 2e-5
    config.optimizer.schedule = "constant"
    config.optimizer.momentum = 0.99
    config.optimizer.weight_decay = 5e-4
    config.model = ml_collections.ConfigDict(
        dict(
            fc_features=4096,
            dropout_rate=0.5,
            faithful_padding=False,
            learnable_final_upsampling=False,
            dtype="bfloat16",
        )
    )
    return config


def demo_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config = experiment.demo_defaults(config)
    config.crop_size = 96
    config.batch_size = 4
    config.eval_batch_size = 4
    config.num_train_steps = 300
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 2e-4
    config.optimizer.weight_decay = 0.0
    config.model.fc_features = 256
    return config


def fcn_model(model_class: type[nn.Module], config: ml_collections.ConfigDict) -> nn.Module:
    """`model_class` (FCN32s, FCN16s or FCN8s) with this config's settings."""
    m = config.model
    layers = experiment.conv_layers(config)
    return model_class(
        num_classes=config.num_classes,
        fc_features=m.fc_features,
        dropout_rate=m.dropout_rate,
        faithful_padding=m.faithful_padding,
        learnable_final_upsampling=m.learnable_final_upsampling,
        conv=layers.conv,
        conv_transpose=layers.conv_transpose,
        dtype=experiment.compute_dtype(m.dtype),
    )


def build_model(config: ml_collections.ConfigDict) -> FCN32s:
    return fcn_model(FCN32s, config)


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
    eval_settings=(),
)

if __name__ == "__main__":
    experiment.main(EXPERIMENT)
