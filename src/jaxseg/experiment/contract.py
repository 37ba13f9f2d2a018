"""The experiment contract: what an experiment file states, as one typed object.

An experiment file builds an `Experiment` at module level, every field written out, and ends
with `experiment.main(EXPERIMENT)`:

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

Training, `--mode=eval`, `jaxseg.predict` and export all read the same object: training records
the file and the resolved config in the run folder (`run.json`), the others import the file
again from there and rebuild the model from the recorded config.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from jaxseg import losses, train, weights
from jaxseg.data.datasets import DatasetInfo
from jaxseg.experiment.zoo_runs import init_from_zoo
from jaxseg.labels import IGNORE_LABEL

Config = ml_collections.ConfigDict
Batch = dict[str, Any]
# (config, batch, step) -> batch: host-side changes to each training batch (e.g. U-Net's
# border weights); `step` is the global step the batch is for, so it can seed randomness.
BatchFn = Callable[[Config, Batch, int], Batch]
# logits float32 [B, h, w, C], labels int32 [B, h, w] (IGNORE_LABEL = no label), plus the
# batch's extras (e.g. pixel_weights [B, h, w]) -> scalar
LossFn = Callable[..., jax.Array]

# Config keys a trained run may be evaluated with other values of, in every experiment: test
# time augmentation, the dense CRF, which images and how many at once, where the data lives.
# A section name ("crf_params") covers all its keys.
EVAL_SETTINGS = (
    "eval_scales",
    "conv_layers",  # the same values computed another way
    "eval_flip",
    "sliding_window",
    "crf",
    "crf_params",
    "eval_split",
    "eval_batch_size",
    "eval_buckets",
    "num_eval_examples",
    "num_eval_images",
    "compilation_cache",
    "data_dir",
    "manual_dir",
    "download",
    "demo.data_dir",
)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything that defines an experiment. No field has a default: each file states each.

    Attributes:
      file: the experiment file (`__file__`); its stem names the run, and evaluation and
        prediction import the file again from the path recorded in the run folder.
      get_config: `() -> ConfigDict`, the paper's setting (started from `base_config()`).
      demo_config: `ConfigDict -> ConfigDict`, what `--demo` changes (generated data, CPU-sized).
      model: `config -> module` for evaluation, prediction and export, called as
        `apply(variables, images [B, H, W, 3], train=False) -> logits [B, H, W, C]`.
      train_model: `config -> module` trained, with the same parameters as `model` (the patch
        classifier trains on patches and evaluates densely; most files pass `model` again).
        Parameters are initialised through `model`, on a whole crop.
      loss: `config -> loss_fn`, `loss_fn(logits [B, h, w, C] f32, labels [B, h, w], **extras)
        -> scalar`, extras being the batch's `pixel_weights` when present.
      batch_transform: `(config, batch, step) -> batch`, applied on the host to every training
        batch (None: batches go to the train step as the pipeline makes them).
      dataset: `config -> DatasetInfo` (class names, palette, label table) of the data trained
        and evaluated on.
      normalize: `(config, images float32 RGB 0..255 [B, H, W, 3]) -> network input`; must be
        what the data pipeline applies for `config.normalization` (`experiment.normalize` is).
      initialize: `(config, state) -> state`, the initial weights of a fresh run (e.g. an
        ImageNet backbone from `config.pretrained`); a resumed run replaces them by its
        latest checkpoint.
      eval_settings: dotted config keys, beyond `EVAL_SETTINGS`, that evaluation and prediction
        may change on a trained run (e.g. DeepLab's `model.output_stride`).
    """

    file: str
    get_config: Callable[[], Config]
    demo_config: Callable[[Config], Config]
    model: Callable[[Config], nn.Module]
    train_model: Callable[[Config], nn.Module]
    loss: Callable[[Config], LossFn]
    batch_transform: BatchFn | None
    dataset: Callable[[Config], DatasetInfo]
    normalize: Callable[[Config, jax.Array], jax.Array]
    initialize: Callable[[Config, train.TrainState], train.TrainState]
    eval_settings: tuple[str, ...]

    @property
    def name(self) -> str:
        """The file's stem, e.g. "deeplabv3plus_voc": the run's identity."""
        return Path(self.file).stem

    @property
    def path(self) -> str:
        return os.path.abspath(self.file)

    @property
    def doc(self) -> str:
        """The file's docstring (command, expected result, recipe): what `--help` prints."""
        return ast.get_docstring(ast.parse(Path(self.file).read_text())) or ""


def cross_entropy(config: Config) -> LossFn:
    """Softmax cross entropy averaged over labelled pixels (the default of most papers here)."""
    del config
    return functools.partial(losses.softmax_cross_entropy, ignore_label=IGNORE_LABEL)


# Pretrained weight files carry the preprocessing they were trained with (keras.applications'
# names); the config's `normalization` must agree or the backbone sees garbage.
_INPUT_MODE_NORMALIZATION = {"caffe": "caffe_bgr", "torch": "imagenet", "tf": "inception"}


def init_from_pretrained(config: Config, state: train.TrainState) -> train.TrainState:
    """`state` with backbone params and BatchNorm statistics from `config.pretrained` (a Keras
    `.h5` or torch `.safetensors`/`.npz` of architecture `config.pretrained_model`), or with a
    released model's weights from `config.init_from` ("zoo:NAME", `zoo_runs.init_from_zoo`);
    `state` unchanged when both are empty.

    Raises:
      ConfigError: no such file, no architecture, or the file needs another normalisation or
        backbone setting than the config's (the message names the flag to add).
    """
    if config.get("init_from"):  # released weights of jaxseg.zoo
        return init_from_zoo(config, state)
    if not config.pretrained:
        return state

    path = os.path.expanduser(config.pretrained)
    if not os.path.isfile(path):
        raise train.ConfigError(f"config.pretrained={config.pretrained!r} is not a file")
    if not config.pretrained_model:
        raise train.ConfigError(
            "config.pretrained needs config.pretrained_model, the architecture of the file "
            "(vgg16, vgg16bn, resnet50, resnet101, mobilenetv2)"
        )
    if path.lower().endswith((".h5", ".hdf5")):
        imported = weights.from_keras(path, config.pretrained_model)
    else:
        imported = weights.from_torch(path, config.pretrained_model)
    wanted = _INPUT_MODE_NORMALIZATION.get(imported.input_mode)
    if wanted and wanted != config.normalization:
        raise train.ConfigError(
            f"{config.pretrained} was trained on '{imported.input_mode}'-style inputs: add "
            f"--config.normalization={wanted}"
        )
    for key, value in imported.backbone_kwargs.items():
        if config.model.get(key, value) != value:
            raise train.ConfigError(
                f"{config.pretrained} needs the backbone built with {key}={value}: add "
                f"--config.model.{key}={value}"
            )
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    try:
        variables = weights.load_backbone(variables, imported)
    except ValueError as e:
        raise train.ConfigError(f"config.pretrained: {e}") from None
    # The optimizer state (momentum, Adam moments) is zeros whatever the params: keep it.
    return state.replace(params=variables["params"], batch_stats=variables["batch_stats"])
