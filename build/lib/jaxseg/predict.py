"""Segment your own images with a trained checkpoint.

    python -m jaxseg.predict --experiment experiments/deeplabv3plus_voc.py --workdir RUN \\
        --input photos/ --output predictions/ [--scales 0.5 0.75 1 1.25 1.5 1.75] [--flip] \\
        [--crf] [--sliding-window 513 [--stride 342]]

For every image in `--input` (a file, or the files directly inside a folder) it writes
`<name>.png`, the predicted classes as a palette PNG of the input's size (pixel value = class
index, viewers show the dataset's colours), and `<name>_overlay.jpg`, the colours blended over
the image. Grey, palette and RGBA images are converted to RGB (alpha is dropped); files that are
not images are skipped with a warning and counted. Each output file appears complete or not at
all, and an image that fails leaves no output behind.

What the experiment file must provide (it is imported as a module from its path):
- `get_config() -> ml_collections.ConfigDict`;
- `build_model(config) -> flax.linen.Module`, called as
  `model.apply(variables, images [B, H, W, 3] float32, train=False) -> logits [B, H, W, C]`;
- optional `preprocess(config, images) -> images`: the per-pixel input normalisation the model
  was trained with, applied (jitted) to float32 RGB `[B, H, W, 3]` in 0..255 (default: none).
  Bucket and window padding happen after it, with 0 (the mean pixel, for mean/std
  normalisation);
- the dataset, for the palette: a module-level `DATASET` (a name, or an object with `.palette`),
  or `config.dataset` (a name, or a section with `.name`), or `config.data.name`; unknown
  datasets are drawn with the generic VOC colour map.
- optional `demo_config(config) -> config`: the settings of the experiment's `--demo` runs,
  applied with `--demo` (before `--config` overrides) to predict with a demo checkpoint.
Optional config keys: `align_corners` (bool, the resize convention for scales != 1) and
`crf_params` (or a `crf` section: `jaxseg.crf.dense_crf` keyword arguments for `--crf`).
`--config.KEY=VALUE` arguments override the config as in training, e.g.
`--config.model.output_stride=8`.

Checkpoints are read from `<workdir>/checkpoints/<step>/` as `jaxseg.train.Checkpoints` writes
them: item `state` (the `TrainState` pytree, of which `params` and `batch_stats` are restored)
and item `signature` (JSON with the model class and parameter shapes, checked first).
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
from tqdm import tqdm

from jaxseg import inference, viz

OVERLAY_SUFFIX = "_overlay.jpg"
_DEFAULT_PROBE_SIZE = 512


class PredictError(Exception):
    """A problem with the command's inputs (experiment, workdir, checkpoint): message, exit 2."""


class NotAnImageError(Exception):
    """The file is not an image PIL can read."""


# --------------------------------------------------------------------------- experiment + model


def load_experiment(path: str | os.PathLike) -> ModuleType:
    """Imports an experiment file by path and checks it has `get_config` and `build_model`."""
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"experiment file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"jaxseg_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise PredictError(f"importing {path} failed: {type(e).__name__}: {e}") from e
    missing = [name for name in ("get_config", "build_model") if not hasattr(module, name)]
    if missing:
        raise PredictError(
            f"{path} does not define {' and '.join(missing)}: the prediction CLI needs "
            "get_config() -> ConfigDict and build_model(config) -> flax module"
        )
    return module


def _config_value(config: Any, *paths: str, default: Any = None) -> Any:
    """First present `a.b.c` key of a ConfigDict (or dict), else `default`."""
    for dotted in paths:
        node = config
        for key in dotted.split("."):
            try:
                node = node[key]
            except (KeyError, TypeError, AttributeError):
                break
        else:
            return node
    return default


def abstract_variables(model: Any, config: Any) -> dict:
    """Shapes and dtypes of the model's variables (`jax.eval_shape`: nothing is computed)."""
    images = _probe_input(config)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)


def _probe_input(config: Any) -> Any:
    """`[1, H, W, 3]` float32 spec for shape-only model calls: the config's crop size or 512."""
    size = _config_value(config, "crop_size", "image_size", "data.crop_size", "data.image_size")
    height, width = (size, size) if isinstance(size, int) else (size or (_DEFAULT_PROBE_SIZE,) * 2)
    return jax.ShapeDtypeStruct((1, int(height), int(width), 3), jnp.float32)


def _num_classes(model: Any, variables: dict, config: Any) -> int:
    """C of the model's logits, from shapes only."""
    images = _probe_input(config)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
    return int(logits.shape[-1])


# --------------------------------------------------------------------------- checkpoints


def _flat_shapes(tree: Any) -> dict[str, list[int]]:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {jax.tree_util.keystr(p, simple=True, separator="/"): list(x.shape) for p, x in leaves}


def _shape_differences(saved: dict[str, list[int]], model: dict[str, list[int]]) -> list[str]:
    only_saved = sorted(set(saved) - set(model))
    only_model = sorted(set(model) - set(saved))
    reshaped = sorted(k for k in set(saved) & set(model) if list(saved[k]) != list(model[k]))
    lines = [f"{k}: checkpoint {saved[k]}, model {model[k]}" for k in reshaped[:5]]
    if only_saved:
        lines.append(f"only in the checkpoint: {only_saved[:5]}")
    if only_model:
        lines.append(f"only in the model: {only_model[:5]}")
    return lines


def load_variables(
    workdir: str | os.PathLike, config: Any, model: Any, *, step: int | None = None
) -> tuple[dict, int]:
    """Restores `params` (and `batch_stats`) of the latest (or `step`) checkpoint in `workdir`.

    The checkpoint must match the model `build_model(config)` makes: the saved signature's
    class name and parameter shapes are compared first, then the restored arrays' shapes; any
    difference raises `PredictError` naming the parameters. Arrays land on the default device.

    Returns:
      `({"params": ..., "batch_stats": ...}, step)`; `batch_stats` only if the model has it.
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise PredictError(f"--workdir {workdir} does not exist")
    directory = workdir / "checkpoints"
    if not directory.is_dir():
        raise PredictError(
            f"{workdir} has no checkpoints/ folder: is it the --workdir of a training run? "
            "(expected checkpoints in <workdir>/checkpoints/<step>/)"
        )
    # A plain manager, not jaxseg.train.Checkpoints: that one cleans up temporary directories,
    # which would delete the in-flight save of a training run still writing to this workdir.
    manager = ocp.CheckpointManager(
        directory.resolve(),
        item_names=("state", "signature"),
        options=ocp.CheckpointManagerOptions(create=False),
    )
    steps = sorted(manager.all_steps())
    if not steps:
        raise PredictError(f"no complete checkpoint in {directory}")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise PredictError(f"no checkpoint for step {step} in {directory} (have: {steps})")

    target = {k: v for k, v in abstract_variables(model, config).items() if k != "intermediates"}
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), target)
    model_shapes = _flat_shapes(target["params"])
    mismatch = (
        f"checkpoint {directory / str(step)} does not fit the model this experiment builds "
        f"({type(model).__name__})"
    )
    if (directory / str(step) / "signature").exists():
        signature = manager.restore(
            step, args=ocp.args.Composite(signature=ocp.args.JsonRestore())
        ).signature
        problems = []
        if signature.get("model") not in (None, type(model).__name__):
            problems.append(f"it holds model {signature['model']!r}")
        saved = {k: v[0] for k, v in signature.get("params", {}).items()}
        problems += _shape_differences(saved, model_shapes)
        if problems:
            raise PredictError(f"{mismatch}: " + "; ".join(problems))
    try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(
                    item=target,
                    restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                    partial_restore=True,
                )
            ),
        ).state
    except Exception as e:  # orbax/tensorstore raise assorted types for missing or bad arrays
        raise PredictError(f"{mismatch}, or it is unreadable: {type(e).__name__}: {e}") from e
    problems = _shape_differences(_flat_shapes(restored["params"]), model_shapes)
    if problems:
        raise PredictError(f"{mismatch}: " + "; ".join(problems))
    return dict(restored), step


# --------------------------------------------------------------------------- images + palette


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 RGB `[H, W, 3]`: grey, palette, RGBA and CMYK images converted
    (alpha dropped), 16-bit and float greys rescaled by their maximum.

    Raises `NotAnImageError` if PIL does not recognise the file as an image; a recognised but
    broken image (e.g. truncated) raises PIL's own error.
    """
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I", "F"):
                # PIL's RGB conversion would clip these to 255 instead of scaling them.
                values = np.asarray(image, np.float64)
                span = max(float(values.max()), 1.0)
                image = Image.fromarray(np.round(values / span * 255).astype(np.uint8))
            return np.asarray(image.convert("RGB"))
    except Image.UnidentifiedImageError as e:
        raise NotAnImageError(f"{path} is not an image PIL can read") from e


def _dataset_palette(module: ModuleType, config: Any) -> tuple[np.ndarray, str | None]:
    """(palette [N, 3], dataset name or None) from the experiment, see the module docstring."""
    dataset = getattr(module, "DATASET", None)
    if dataset is not None and hasattr(dataset, "palette"):
        return np.asarray(dataset.palette, np.uint8), getattr(dataset, "name", None)
    name = dataset or _config_value(config, "dataset.name", "dataset", "data.name")
    if isinstance(name, str):
        try:
            return viz.palette_for(name), name
        except KeyError:
            pass
        try:
            from jaxseg.data import get_dataset_info

            return np.asarray(get_dataset_info(name).palette, np.uint8), name
        except (ImportError, KeyError):
            pass
    return viz.voc_palette(256), name if isinstance(name, str) else None


def list_inputs(path: Path) -> list[Path]:
    """The file itself, or the non-hidden files directly inside a folder, sorted."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    raise PredictError(f"--input {path} does not exist")


def _output_stem(path: Path, used: set[str]) -> str:
    # a.jpg and a.png in one folder would both write a.png: the second becomes a_png.png.
    stem = path.stem if path.stem not in used else f"{path.stem}_{path.suffix.lstrip('.')}"
    used.add(stem)
    return stem


# --------------------------------------------------------------------------- command


def _size_arg(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text!r}")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jaxseg.predict",
        description="Segment images with a trained jaxseg checkpoint.",
        epilog="Config overrides as for training: --config.KEY=VALUE (e.g. output stride).",
    )
    parser.add_argument("--experiment", required=True, help="the run's experiment file")
    parser.add_argument("--workdir", required=True, help="the training run's --workdir")
    parser.add_argument("--input", required=True, help="an image, or a folder of images")
    parser.add_argument("--output", required=True, help="folder for <name>.png and overlays")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument(
        "--scales", type=float, nargs="+", default=[1.0], help="test-time scales, e.g. 0.5 1 1.5"
    )
    parser.add_argument("--flip", action="store_true", help="add left-right flipped predictions")
    parser.add_argument("--crf", action="store_true", help="refine with the dense CRF")
    parser.add_argument(
        "--demo", action="store_true", help="the experiment's --demo settings (demo checkpoints)"
    )
    parser.add_argument(
        "--sliding-window", type=_size_arg, metavar="CROP", help="window size N or HxW"
    )
    parser.add_argument("--stride", type=_size_arg, help="window stride (default: 2/3 of CROP)")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per network call")
    parser.add_argument(
        "--bucket",
        type=int,
        nargs="+",
        default=[32],
        help="pad whole images to a multiple of N, or to the next of several sizes (0: no pad)",
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    return parser


def apply_overrides(config: Any, overrides: Sequence[str]) -> None:
    """Sets `--config.a.b=value` overrides on `config` in place (values parsed as Python
    literals, else kept as strings), e.g. `--config.model.output_stride=8` for evaluation."""
    for item in overrides:
        key, sep, text = item.removeprefix("--config.").partition("=")
        if not item.startswith("--config.") or not sep:
            raise PredictError(f"unrecognised argument {item!r} (overrides are --config.KEY=VALUE)")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        *parents, leaf = key.split(".")
        node = config
        try:
            for parent in parents:
                node = node[parent]
            if leaf not in node:
                raise KeyError(leaf)
            node[leaf] = value
        except (KeyError, TypeError, AttributeError) as e:
            raise PredictError(f"cannot set config.{key} to {value!r}: {e}") from None


def make_segmenter(
    model: Any,
    variables: dict,
    config: Any,
    *,
    preprocess: Callable[[Any, np.ndarray], Any] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    bucket: inference.Bucket = 32,
    sliding_window: tuple | None = None,
    batch_size: int = 4,
    align_corners: bool = False,
    crf: dict | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """`segment(image uint8 [H, W, 3]) -> class indices int [H, W]` with the CLI's options.

    The network is jitted once with the variables as an argument (not embedded constants, which
    would make compiling big models slow); `jaxseg.inference` keeps its shapes to buckets.
    """
    network = jax.jit(lambda v, x: model.apply(v, x, train=False).astype(jnp.float32))
    apply_fn = functools.partial(network, variables)
    normalise = jax.jit(lambda x: preprocess(config, x)) if preprocess else None

    def segment(image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        x = image.astype(np.float32)
        if normalise is not None:
            # Normalised on a bucket-sized canvas, so it compiles once per bucket, not per size.
            canvas = np.zeros(
                (1, inference.bucket_size(height, bucket), inference.bucket_size(width, bucket), 3),
                np.float32,
            )
            canvas[0, :height, :width] = x
            x = np.asarray(normalise(canvas), np.float32)[0, :height, :width]
        logits = inference.multiscale_flip_logits(
            apply_fn,
            x,
            tuple(scales),
            flip,
            bucket=bucket,
            sliding_window=sliding_window,
            batch_size=batch_size,
            align_corners=align_corners,
        )
        if crf is not None:
            logits = inference.crf_refine(logits, image, **crf)
        return np.argmax(logits, axis=-1)

    return segment


def _predict_one(path: Path, output: Path, stem: str, *, segment, palette, alpha) -> None:
    """Reads, segments and writes one image; on any error removes what it wrote and re-raises."""
    image = read_rgb(path)
    label = np.asarray(segment(image)).astype(np.uint8)
    overlay = viz.overlay(image, label, palette, alpha)
    written = []
    try:
        viz.save_index_png(output / f"{stem}.png", label, palette)
        written.append(output / f"{stem}.png")
        viz.save_image(output / f"{stem}{OVERLAY_SUFFIX}", overlay, quality=90)
    except BaseException:
        for target in written:
            target.unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace, overrides: Sequence[str] = ()) -> int:
    """The command; returns the exit status (0 ok, 1 if some image failed)."""
    module = load_experiment(args.experiment)
    config = module.get_config()
    if args.demo:
        if not hasattr(module, "demo_config"):
            raise PredictError(f"{args.experiment} has no demo_config(config) for --demo")
        config = module.demo_config(config)
    apply_overrides(config, overrides)
    model = module.build_model(config)
    inputs = list_inputs(Path(args.input))
    output = Path(args.output)
    input_dir = Path(args.input) if Path(args.input).is_dir() else Path(args.input).parent
    if output.resolve() == input_dir.resolve():
        raise PredictError("--output must differ from the input folder (outputs are PNG images)")
    variables, step = load_variables(args.workdir, config, model, step=args.step)
    palette, dataset = _dataset_palette(module, config)
    num_classes = _num_classes(model, variables, config)
    if len(palette) < num_classes:
        print(
            f"warning: the {dataset or 'dataset'} palette has {len(palette)} colours for "
            f"{num_classes} classes; using the generic VOC colour map",
            file=sys.stderr,
        )
        palette = viz.voc_palette(256)
    crf = None
    if args.crf:
        crf = _config_value(config, "crf_params", "crf", default={})
        # Experiments keep the parameters in `crf_params` (their `crf` is an on/off switch).
        crf = dict(crf.to_dict() if hasattr(crf, "to_dict") else crf) if crf else {}
    if args.bucket == [0]:
        bucket = None  # every image size compiles anew
    else:
        bucket = args.bucket[0] if len(args.bucket) == 1 else tuple(args.bucket)
    segment = make_segmenter(
        model,
        variables,
        config,
        preprocess=getattr(module, "preprocess", None),
        scales=args.scales,
        flip=args.flip,
        bucket=bucket,
        sliding_window=(args.sliding_window, args.stride) if args.sliding_window else None,
        batch_size=args.batch_size,
        align_corners=bool(_config_value(config, "align_corners", default=False)),
        crf=crf,
    )
    output.mkdir(parents=True, exist_ok=True)
    print(
        f"{type(model).__name__} from {args.workdir} (step {step}), dataset {dataset or '?'}: "
        f"{len(inputs)} file(s) -> {output}",
        file=sys.stderr,
    )
    done, skipped, failed, used = 0, 0, 0, set()
    for path in tqdm(inputs, unit="img", disable=len(inputs) == 1, file=sys.stderr):
        stem = _output_stem(path, used)
        try:
            _predict_one(path, output, stem, segment=segment, palette=palette, alpha=args.alpha)
            done += 1
        except NotAnImageError:
            skipped += 1
            tqdm.write(f"warning: skipping {path}: not an image", file=sys.stderr)
        except Exception as e:  # one bad image must not stop a folder
            failed += 1
            tqdm.write(f"error: {path}: {type(e).__name__}: {e}", file=sys.stderr)
    print(
        f"wrote {done} prediction(s) to {output}; skipped {skipped} non-image file(s); "
        f"{failed} failed",
        file=sys.stderr,
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 (all images done), 1 (some image failed) or 2 (bad setup)."""
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    unknown = [a for a in overrides if not a.startswith("--config.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return run(args, overrides)
    except PredictError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
