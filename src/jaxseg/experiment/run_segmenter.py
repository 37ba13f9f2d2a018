"""A training run folder as a `Segmenter`: the network fed exactly as it was trained.

seg = jaxseg.experiment.load_segmenter("runs/deeplabv3plus_voc")
labels = seg(image)          # uint8 [H, W, 3] -> int32 [H, W]
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxseg.experiment import runs
from jaxseg.experiment.config import crf_kwargs, denormalize
from jaxseg.segmenter import Segmenter


def load_segmenter(
    workdir: str | os.PathLike,
    checkpoint: str = "best",
    *,
    overrides: Mapping[str, Any] | None = None,
    experiment: Any = None,
    crf: bool | Mapping[str, float] = False,
    **options: Any,
) -> Segmenter:
    """The network of a training run folder, fed as it was trained.

    The experiment file and config come from `<workdir>/run.json` (see
    `jaxseg.experiment.runs`), the weights from checkpoint `checkpoint` ("best", "latest"
    or a step, as `--mode=eval` takes it); normalisation, class names, palette and resize
    convention are the run's (class names and palette as training recorded them in
    run.json, so a run trained on `folder:DIR` needs not that folder), images are padded
    with the pixel that normalises to 0 (what the evaluation pipeline pads with).

    Args:
      workdir: the run folder.
      checkpoint: which checkpoint.
      overrides: `{"a.b": value}` config changes; only evaluation settings (e.g.
        `model.output_stride` for DeepLab) may differ from the run's, others are refused.
      experiment: the run's `jaxseg.experiment.Experiment`, when the file recorded in
        run.json has moved (it must be the same experiment); default: imported from there.
      crf: refine with the dense CRF: True for the run's `config.crf_params`, or a dict of
        `jaxseg.crf.dense_crf` keyword arguments.
      **options: other `Segmenter` arguments (scales, flip, sliding_window, batch_size,
        bucket, crop_size).

    Returns:
      The `Segmenter`, with `run_config` (the resolved config) and `step` (the
      checkpoint's) attributes added.

    Raises:
      jaxseg.train.TrainingError: no run there, a contradicting override, no such
        checkpoint, or another model's checkpoint.
    """
    experiment, config, record = runs.load_run(workdir, overrides, experiment)
    model, variables, step = runs.restore_variables(workdir, experiment, config, checkpoint)
    classes = runs.recorded_classes(record)
    if classes is None:  # a run from before run.json recorded its classes
        info = experiment.dataset(config)
        classes = (info.class_names, info.palette)
    if crf is True:
        crf = crf_kwargs(config)
    segmenter = Segmenter(
        model,
        variables,
        normalize=functools.partial(experiment.normalize, config),
        class_names=classes[0],
        palette=classes[1],
        pad_pixel=tuple(denormalize(config, np.zeros(3, np.float32))),
        align_corners=config.align_corners,
        crf=crf or None,
        **options,
    )
    segmenter.run_config, segmenter.step = config, step
    return segmenter
