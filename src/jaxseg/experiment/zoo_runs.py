"""Released weights in experiments: `--config.init_from=zoo:NAME`.

Training starts from the release (`init_from_zoo`, called by `init_from_pretrained`):
ImageNet backbone entries fill the backbone, whole-model entries every variable, the
classifier only when the number of classes matches. `evaluate_release` (the command
`jaxseg-zoo evaluate NAME`) scores a release on a prepared dataset by its published
protocols and prints the published numbers beside the measured ones.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from jaxseg import train, zoo
from jaxseg.data.datasets import DatasetInfo
from jaxseg.zoo import evaluate

PREFIX = "zoo:"


def zoo_name(config: ml_collections.ConfigDict) -> str:
    """The entry named by `config.init_from` ("zoo:NAME"), checked to be in the zoo."""
    spec = config.init_from
    if not spec.startswith(PREFIX):
        raise train.ConfigError(
            f"config.init_from={spec!r}: write zoo:NAME, NAME from `jaxseg-zoo list`"
        )
    name = spec[len(PREFIX) :]
    try:
        zoo.entry(name)
    except KeyError as e:
        raise train.ConfigError(f"config.init_from={spec!r}: {e.args[0]}") from None
    return name


def init_from_zoo(config: ml_collections.ConfigDict, state: train.TrainState) -> train.TrainState:
    """`state` with the released variables of `config.init_from` put in (see the module doc).

    Raises:
      ConfigError: an unknown entry, both `init_from` and `pretrained` set, or a model
        that is not the release's architecture
        (the message names the release's architecture and the experiment's model).
    """
    name = zoo_name(config)
    if config.get("pretrained"):
        raise train.ConfigError(
            f"config.init_from={config.init_from!r} and config.pretrained="
            f"{config.pretrained!r} both give initial weights; keep one"
        )
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    try:
        variables = zoo.training.initial_variables(config.init_from, variables)
    except ValueError as e:
        model = config.get("model", {})
        raise train.ConfigError(
            f"config.init_from={config.init_from!r} is {zoo.entry(name).architecture}; this "
            f"experiment builds a model with backbone={model.get('backbone')!r}, which does "
            f"not take these weights: {e}"
        ) from None
    # A model without BatchNorm (VGG-based releases) has no batch_stats to fill.
    batch_stats = variables.get("batch_stats", state.batch_stats)
    return state.replace(params=variables["params"], batch_stats=batch_stats)


def evaluate_release(
    name: str,
    builder: Any,
    info: DatasetInfo,
    split: str,
    *,
    crf: bool = False,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """Scores release `name` on `split` of a prepared dataset by each of its published
    protocols (`jaxseg.zoo.evaluate.evaluate_entry`: the release's own preprocessing,
    evaluation canvas, output stride, scales, flip; with `crf` the CRF settings published
    with it) and prints published and measured numbers side by side (`jaxseg-zoo evaluate`).

    Args:
      name: a zoo entry.
      builder: the prepared TFDS builder; info: its `DatasetInfo`; split: e.g. "validation".
      crf: also measure the numbers published with the dense CRF.
      checkpoint: a local copy of the release instead of the cached download.

    Returns:
      `{"model", "split", "results": [{"metric", "protocol", "published", "measured"}]}`.

    Raises:
      ConfigError naming the release: unknown, a backbone without a head, another label
      set than the dataset's, `crf` without published settings.
    """
    try:
        item = zoo.entry(name)
    except KeyError as e:
        raise train.ConfigError(e.args[0]) from None
    if name in zoo.deeplab_models.RELEASES and zoo.deeplab_models.RELEASES[name].labels is None:
        raise train.ConfigError(
            f"{name} is an ImageNet backbone without a segmentation head: nothing to "
            "evaluate; train from it with --config.init_from=zoo:NAME"
        )
    if item.num_classes != len(info.class_names):
        ade20k_other = item.num_classes == len(info.class_names) + 1  # DeepLab's "other"
        if not ade20k_other:
            raise train.ConfigError(
                f"{name} predicts {item.num_classes} classes, the dataset {info.name} has "
                f"{len(info.class_names)}: evaluate it on a dataset of its label set"
            )
    if crf and item.crf is None:
        raise train.ConfigError(f"{name} was not published with CRF settings; drop --crf")
    from jaxseg.data import pipeline  # TensorFlow: only when the data is read

    try:
        measured = evaluate.evaluate_entry(
            name, lambda: pipeline.eval_pairs(builder, split, info), crf=crf, checkpoint=checkpoint
        )
    except (KeyError, ValueError, FileNotFoundError) as e:
        raise train.ConfigError(f"{name}: {e}") from None
    lines = [f"\n{name} ({item.architecture}) on {info.name}:{split}, no training:"]
    results = []
    for published, value in measured:
        text = "not measured (--crf)" if value is None else f"measured {value:.2f}"
        lines.append(
            f"  {published.metric}: published {published.value} ({published.protocol}); {text}"
        )
        results.append(
            dict(
                metric=published.metric,
                protocol=published.protocol,
                published=published.value,
                measured=value,
            )
        )
    print("\n".join(lines))
    return {"model": name, "split": split, "results": results}
