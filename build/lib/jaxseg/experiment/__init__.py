"""What every experiment file shares: the command line, data, model state, train and eval modes.

An experiment file (`experiments/*.py`) is the config plus the composition root (DESIGN.md,
convention 1). It defines, at module level,

    get_config() -> ConfigDict          the paper's setting, started from `base_config()`
    demo_config(config) -> ConfigDict   what `--demo` changes (generated data, CPU-sized)
    build_model(config) -> nn.Module    model classes imported directly
    preprocess(config, images)          the input normalisation (`jaxseg.predict` needs it)
    DATASET                             dataset name, for palettes

and ends with `experiment.main(...)`, which gets those plus the experiment's own pieces (loss,
batch transforms). The same command line serves every file:

    python experiments/X.py [--demo] [--mode=train|eval] [--workdir=DIR]
        [--checkpoint=best|latest|STEP] [--config.KEY=VALUE ...]

`--mode=eval` restores a checkpoint and prints pixel accuracy, mean pixel accuracy, mean IoU,
frequency-weighted IoU and the per-class table; `--config.eval_scales`, `--config.eval_flip`,
`--config.sliding_window` and `--config.crf` switch on test-time augmentation and the dense CRF
(scored before and after it, like DeepLab's tables).

Problems with the command's inputs (unknown config keys, a crop the model cannot take, a batch
the devices cannot split, a missing dataset or checkpoint, another model's checkpoint in the
workdir) stop the program with one message and a non-zero status, before anything compiles.

This package holds `main`/`run` (command line and the two modes); `config` (shared keys,
`--demo` defaults, normalisation, checks), `datasets` (builders, demo data, streams), `state`
(shapes, checkpoints, pretrained weights) and `evaluation` (TTA / CRF scoring, overlays) hold
the pieces, all re-exported here.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Experiment files import this package first: "done in" times then include data generation
# and compilation, which is what a person running the command waits for.
_IMPORTED_AT = time.perf_counter()

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxseg import losses, train  # noqa: E402
from jaxseg.data.datasets import DatasetInfo  # noqa: E402
from jaxseg.experiment.config import (  # noqa: E402
    backbone_factory,
    base_config,
    check_config,
    compute_dtype,
    crf_kwargs,
    demo_defaults,
    denormalize,
    preprocess,
)
from jaxseg.experiment.datasets import (  # noqa: E402
    BatchFn,
    DatasetNotFoundError,
    dataset_info,
    foreground_dataset_info,
    load_builder,
    make_streams,
    prepare_camvid_demo,
)
from jaxseg.experiment.evaluation import (  # noqa: E402
    PredictFn,
    evaluate_per_image,
    make_render,
    run_evaluation,
    uses_tta,
    write_overlays,
)
from jaxseg.experiment.state import (  # noqa: E402
    abstract_state,
    check_workdir,
    create_state,
    find_checkpoint,
    load_pretrained,
    restore,
)

__all__ = [
    "BatchFn",
    "DatasetNotFoundError",
    "PredictFn",
    "abstract_state",
    "backbone_factory",
    "base_config",
    "check_config",
    "check_workdir",
    "compute_dtype",
    "create_state",
    "crf_kwargs",
    "dataset_info",
    "demo_defaults",
    "denormalize",
    "evaluate_per_image",
    "find_checkpoint",
    "foreground_dataset_info",
    "load_builder",
    "load_pretrained",
    "main",
    "make_render",
    "make_streams",
    "parse_command_line",
    "prepare_camvid_demo",
    "preprocess",
    "restore",
    "run",
    "run_evaluation",
    "uses_tta",
    "write_overlays",
]


def run(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    mode: str,
    demo: bool,
    build_model: Callable[[ml_collections.ConfigDict], nn.Module],
    make_loss: Callable[[ml_collections.ConfigDict], Callable] | None = None,
    batch_fn: BatchFn | None = None,
    build_train_model: Callable[[ml_collections.ConfigDict], nn.Module] | None = None,
    dataset_info_fn: Callable[[ml_collections.ConfigDict], DatasetInfo] = dataset_info,
    checkpoint: str = "best",
) -> dict[str, Any] | None:
    """Trains (`mode="train"`) or evaluates (`mode="eval"`) an experiment in `workdir`.

    Args:
      config: the experiment's config (after `--demo` and overrides).
      workdir: the run folder.
      mode: "train" or "eval".
      demo: use generated data (`jaxseg.data.demo`).
      build_model: `config -> module` (the experiment's `build_model`).
      make_loss: `config -> loss_fn`, `loss_fn(logits, labels, **extra) -> scalar`; default
        softmax cross entropy over valid pixels.
      batch_fn: host-side transform of each training batch (`BatchFn`).
      build_train_model: a different module for training with the same parameters (the patch
        classifier trains on patches, evaluates densely); default `build_model`.
      dataset_info_fn: `config -> DatasetInfo` (e.g. a relabelled dataset for the demo).
      checkpoint: `--mode=eval`: "best", "latest" or a step.

    Returns:
      The final evaluation's results (`run_evaluation`), or None when training had no eval.
    """
    if mode not in ("train", "eval"):
        raise train.ConfigError(f"--mode={mode!r}; choose train or eval")
    train.maybe_initialize_distributed()
    if config.compilation_cache:
        train.enable_compilation_cache()
    eval_model = build_model(config)
    model = build_train_model(config) if build_train_model else eval_model
    mesh = train.make_mesh()
    # Everything that can be wrong with the inputs is checked here, before any compilation,
    # cheapest first: config values, the dataset, parameter paths, the workdir's checkpoints.
    check_config(config, model, mesh.size)
    info = dataset_info_fn(config)
    builder = load_builder(config, demo)
    # With a separate training module (same parameters), parameters are initialised through
    # the evaluation module, which takes whole crops; training then applies the other one.
    try:
        shapes = abstract_state(eval_model, config).replace(apply_fn=model.apply)
    except ValueError as e:  # the models check their settings when first called
        raise train.ConfigError(f"the model rejects this config: {e}") from None
    train.validate_config(config, num_devices=mesh.size, params=shapes.params)
    check_workdir(workdir, shapes, config)
    step = find_checkpoint(workdir, checkpoint, config) if mode == "eval" else None
    train_stream_fn, eval_stream_fn = make_streams(config, builder, info, batch_fn)
    eval_predict: PredictFn | None = None  # None: the state's own module
    if build_train_model is not None:
        eval_predict = lambda v, x: eval_model.apply(v, x, train=False)  # noqa: E731
    palette = np.asarray(info.palette)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
    common = dict(
        config=config,
        workdir=workdir,
        eval_stream_fn=eval_stream_fn,
        predict_fn=eval_predict,
        mesh=mesh,
    )

    if mode == "eval":
        # Restored straight onto the mesh from the shapes: no initialisation to compile.
        replicated = train.replicated(mesh)
        template = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), shapes
        )
        state = restore(template, workdir, step, config)
        return run_evaluation(state, step=step, class_names=info.class_names, **common)

    state = create_state(eval_model, config).replace(apply_fn=model.apply)
    if make_loss is None:
        loss_fn = functools.partial(losses.softmax_cross_entropy, ignore_label=255)
    else:
        loss_fn = make_loss(config)
    schedule = train.make_schedule(config.optimizer, config.num_train_steps)
    state = train.train_and_evaluate(
        config,
        workdir,
        state=state,
        train_step=functools.partial(train.train_step, loss_fn=loss_fn, learning_rate_fn=schedule),
        train_stream_fn=train_stream_fn,
        eval_step=functools.partial(
            train.eval_step,
            num_classes=config.num_classes,
            predict_fn=eval_predict,
            align_corners=config.align_corners,
        ),
        eval_stream_fn=eval_stream_fn,
        class_names=info.class_names,
        predict_step=functools.partial(
            train.predict_step, predict_fn=eval_predict, align_corners=config.align_corners
        ),
        render=make_render(config, palette),
        mesh=mesh,
    )
    folder = None
    if config.num_eval_images:
        folder = write_overlays(state, palette=palette, count=config.num_eval_images, **common)
    results = None
    if uses_tta(config):
        step = int(train.to_host(state.step))
        results = run_evaluation(state, step=step, class_names=info.class_names, **common)
    if jax.process_index() == 0:
        minutes = (time.perf_counter() - _IMPORTED_AT) / 60
        print(
            f"\nDone in {minutes:.1f} min (data, compilation and evaluation included). "
            f"Run folder {workdir}: checkpoints/, tensorboard/ "
            f"(tensorboard --logdir {workdir}), metrics.jsonl"
            + (", predictions/ and overlays/." if folder else ".")
        )
    return results


def _define_flags(
    fv: flags.FlagValues, config: ml_collections.ConfigDict, default_workdir: str
) -> None:
    train.define_config_flag(config, flag_values=fv)
    flags.DEFINE_string(
        "workdir", None, f"Run folder (default {default_workdir}[_demo]).", flag_values=fv
    )
    flags.DEFINE_enum("mode", "train", ["train", "eval"], "Train, or evaluate.", flag_values=fv)
    flags.DEFINE_bool(
        "demo", False, "Generated VOC-style data and CPU-sized settings.", flag_values=fv
    )
    flags.DEFINE_string(
        "checkpoint", "best", "--mode=eval: best, latest or a step number.", flag_values=fv
    )


def _apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[leaf] = value
    return config


def parse_command_line(
    argv: Sequence[str],
    get_config: Callable[[], ml_collections.ConfigDict],
    demo_config: Callable[[ml_collections.ConfigDict], ml_collections.ConfigDict],
    doc: str | None = None,
) -> tuple[ml_collections.ConfigDict, str, str, bool, str]:
    """`argv` -> (config, workdir, mode, demo, checkpoint); exits 2 on bad flags.

    `--demo` replaces the defaults by `demo_config(get_config())`; `--config.*` overrides then
    apply on top of whichever defaults are in force.
    """
    name = Path(argv[0]).stem if argv and argv[0] else "experiment"
    default_workdir = os.path.join("runs", name)
    fv = flags.FlagValues()
    saved_argv, sys.argv = sys.argv, list(argv)  # ml_collections reads overrides from sys.argv
    try:
        _define_flags(fv, get_config(), default_workdir)
        if any(a in ("-h", "--help", "--helpfull", "-help") for a in argv[1:]):
            print((doc or "").strip() + "\n\nFlags:\n" + fv.main_module_help())
            raise SystemExit(0)
        try:
            fv(list(argv))
        except flags.Error as e:
            print(f"error: {e}\nRun with --help for the flags.", file=sys.stderr)
            raise SystemExit(2) from None
    finally:
        sys.argv = saved_argv
    config = fv["config"].value
    if fv.demo:
        overrides = config_flags.get_override_values(fv["config"])
        config = _apply_overrides(demo_config(get_config()), overrides)
    workdir = fv.workdir or (default_workdir + ("_demo" if fv.demo else ""))
    return config, workdir, fv.mode, fv.demo, fv.checkpoint


def main(
    get_config: Callable[[], ml_collections.ConfigDict],
    build_model: Callable[[ml_collections.ConfigDict], nn.Module],
    *,
    demo_config: Callable[[ml_collections.ConfigDict], ml_collections.ConfigDict],
    doc: str | None = None,
    argv: Sequence[str] | None = None,
    **run_kwargs: Any,
) -> dict[str, Any] | None:
    """An experiment file's entry point: parse the command line, then `run`.

    Problems with the inputs (`jaxseg.train.TrainingError`, a missing dataset) print one
    message and exit with a non-zero status instead of a stack trace.
    """
    argv = list(sys.argv if argv is None else argv)
    config, workdir, mode, demo, checkpoint = parse_command_line(argv, get_config, demo_config, doc)
    runner = train.handle_errors(run)
    return runner(
        config,
        workdir,
        mode=mode,
        demo=demo,
        build_model=build_model,
        checkpoint=checkpoint,
        **run_kwargs,
    )
