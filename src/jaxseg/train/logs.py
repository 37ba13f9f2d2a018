"""Run outputs in the workdir: metrics.jsonl, TensorBoard events, prediction images, config.json,
and the terminal progress bar. Only process 0 writes; on other processes everything is a no-op.

    <workdir>/config.json                      the resolved config of the run
    <workdir>/metrics.jsonl                    {"step": 100, "train/loss": 0.53, ...} per line
    <workdir>/tensorboard/events.out.tfevents.*
    <workdir>/predictions/step_<N>/<i>.png     image | ground truth | prediction
    <workdir>/predictions/step_<N>/confusion_matrix.png, class_iou.png   (training evaluations)
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxseg import figures, viz
from jaxseg.labels import IGNORE_LABEL
from jaxseg.train.summary import SummaryWriter

Render = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def is_main_process() -> bool:
    return jax.process_index() == 0


def _json_value(value: Any) -> Any:
    # Strict JSON has no NaN: an undefined score (absent class) becomes null.
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_config(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> None:
    """Saves the run's config as `<workdir>/config.json` (process 0)."""
    if not is_main_process():
        return
    path = os.path.join(workdir, "config.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def eval_scalars(summary: Mapping[str, Any], prefix: str = "eval") -> dict[str, float]:
    """`metrics.summarize` output -> flat `{eval/miou, eval/fw_iou, eval/iou/<class>, ...}`."""
    scalars = {
        f"{prefix}/{key}": summary[key]
        for key in ("miou", "pixel_accuracy", "mean_pixel_accuracy", "fw_iou")
    }
    for name, value in summary["iou"].items():
        scalars[f"{prefix}/iou/{name}"] = value
    return scalars


class MetricLogger:
    """Writes scalars to `metrics.jsonl` and TensorBoard, images to TensorBoard and PNG files."""

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        tensorboard: bool = True,
        resume_step: int | None = None,
    ):
        self.workdir = os.fspath(workdir)
        self.enabled = is_main_process()
        self.jsonl_path = os.path.join(self.workdir, "metrics.jsonl")
        self._tb: SummaryWriter | None = None
        if not self.enabled:
            return
        os.makedirs(self.workdir, exist_ok=True)
        if resume_step is not None:
            self._drop_records_after(resume_step)
        if tensorboard:
            self._tb = SummaryWriter(os.path.join(self.workdir, "tensorboard"))

    def _drop_records_after(self, step: int) -> None:
        """A resumed run recomputes steps after its checkpoint: drop their stale records."""
        if not os.path.exists(self.jsonl_path):
            return
        with open(self.jsonl_path) as f:
            lines = f.readlines()
        kept = []
        for line in lines:
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
        tmp = self.jsonl_path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, self.jsonl_path)

    def scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """One JSON line `{"step": step, **scalars}` and the same values in TensorBoard."""
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _json_value(v) for k, v in scalars.items()}}
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            finite = {k: v for k, v in scalars.items() if isinstance(v, int | float | np.number)}
            self._tb.scalars(step, finite)
            self._tb.flush()

    def images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """uint8 `[H, W, 3]` images to TensorBoard and `predictions/step_<N>/<name>.png`."""
        if not self.enabled or not images:
            return
        folder = os.path.join(self.workdir, "predictions", f"step_{int(step):08d}")
        os.makedirs(folder, exist_ok=True)
        for name, image in images.items():
            viz.save_image(os.path.join(folder, f"{name.replace('/', '_')}.png"), image)
            if self._tb is not None:
                self._tb.image(step, f"predictions/{name}", image)
        if self._tb is not None:
            self._tb.flush()

    def print(self, text: str) -> None:
        """Prints above the progress bar (process 0)."""
        if self.enabled:
            tqdm.write(text, file=sys.stdout)
            sys.stdout.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def make_render(
    palette: np.ndarray | None = None,
    *,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    ignore_label: int = IGNORE_LABEL,
    class_names: Sequence[str] | None = None,
) -> Render:
    """`render(image [H, W, 3] float, label [H, W], pred [H, W]) -> uint8 [h, w, 3]` figure.

    With `class_names`: titled panels enlarged to a readable size with a legend of the classes
    present (`jaxseg.figures.titled_panels`); without: the bare strip `image | truth | pred`.

    Args:
      palette: class colours `[N, 3]` (default: the VOC colour map, distinct for 256 indices).
      mean, std: the input normalisation to undo (`image * std + mean`, 0-255 scale); without
        them each image is stretched to its own min..max.
      ignore_label: drawn in viz's ignore colour.
      class_names: names of the palette's classes, for the legend.
    """
    palette = viz.voc_palette(256) if palette is None else np.asarray(palette)

    def render(image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        image = np.asarray(image, np.float32)
        if mean is not None:
            image = image * np.asarray(std if std is not None else 1.0) + np.asarray(mean)
        else:
            low, high = float(image.min()), float(image.max())
            image = (image - low) * (255.0 / max(high - low, 1e-6))
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
        if class_names is not None:
            return figures.titled_panels(
                image, label, prediction, palette, class_names, ignore_label=ignore_label
            )
        return viz.side_by_side(image, label, prediction, palette, ignore_label=ignore_label)

    return render


class Progress:
    """tqdm bar over training steps: step, loss, images/s and ETA (process 0 only)."""

    def __init__(self, total_steps: int, start_step: int, batch_size: int):
        self.batch_size = batch_size
        interactive = sys.stderr.isatty()
        self._bar = tqdm(
            total=total_steps,
            initial=start_step,
            unit="step",
            dynamic_ncols=True,
            # In a log file (not a terminal) a line every 30 s is enough.
            mininterval=0.1 if interactive else 30.0,
            disable=not is_main_process(),
        )
        self._last_time = time.perf_counter()
        self._last_step = start_step

    def update(self, step: int) -> None:
        self._bar.update(step - self._bar.n)

    def set_metrics(self, step: int, loss: float) -> float:
        """Shows `loss` and the throughput since the last call; returns images/s."""
        now = time.perf_counter()
        steps = max(step - self._last_step, 0)
        rate = steps * self.batch_size / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        self._bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.1f}", refresh=False)
        return rate

    def pause(self, step: int) -> None:
        """Restarts the throughput clock at `step`, so evaluation time is not counted."""
        self._last_time, self._last_step = time.perf_counter(), step

    def close(self) -> None:
        self._bar.close()
