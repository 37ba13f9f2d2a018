"""The experiment contract and the one runner every experiment file ends with.

An experiment file (`experiments/*.py`) is the config plus the composition root: it defines
`get_config()`, `demo_config(config)` and its model builder, then states the whole experiment
as one `Experiment` (model, loss, batch transform, dataset, normalisation, initialisation; see
`contract.py`) and ends with `experiment.main(EXPERIMENT)`. The same command line serves every
file:

    python experiments/X.py [--demo] [--mode=train|eval] [--workdir=DIR]
        [--checkpoint=best|latest|STEP] [--config.KEY=VALUE ...]

Training records the experiment and its resolved config in `<workdir>/run.json` (`runs.py`).
`--mode=eval` (like `jaxseg.predict`) takes the config from there: flags that contradict it are
refused, naming both values, except evaluation settings (`EVAL_SETTINGS`: eval scales, flips,
sliding window, CRF, ...; the file's own `eval_settings`, e.g. DeepLab's output stride). It
restores a checkpoint (`--checkpoint`, default the best) and prints pixel accuracy, mean pixel
accuracy, mean IoU, frequency-weighted IoU and the per-class table; with test-time
augmentation or the dense CRF it scores before and after it, like DeepLab's tables.

Problems with the command's inputs (unknown config keys, a crop the model cannot take, a batch
the devices cannot split, a missing dataset or checkpoint, another experiment's run in the
workdir) stop the program with one message and a non-zero status, before anything compiles.

`config` (shared keys, `--demo` defaults, normalisation, checks), `datasets` (builders, demo
data, streams), `state` (shapes, checkpoints), `evaluation` (TTA / CRF scoring, overlays),
`contract` (the `Experiment`) and `runs` (the run folder) hold the pieces, re-exported here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

# Experiment files import this package first: "done in" times then include data generation
# and compilation, which is what a person running the command waits for.
_IMPORTED_AT = time.perf_counter()

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxseg import train  # noqa: E402
from jaxseg.data import DataError, is_folder_spec  # noqa: E402
from jaxseg.experiment import cli_help, runs  # noqa: E402
from jaxseg.experiment.config import (  # noqa: E402
    backbone_factory,
    base_config,
    check_config,
    compute_dtype,
    conv_layers,
    crf_kwargs,
    demo_defaults,
    denormalize,
    normalize,
)
from jaxseg.experiment.contract import (  # noqa: E402
    EVAL_SETTINGS,
    BatchFn,
    Experiment,
    LossFn,
    cross_entropy,
    init_from_pretrained,
)
from jaxseg.experiment.datasets import (  # noqa: E402
    DatasetNotFoundError,
    dataset_info,
    foreground_dataset_info,
    load_builder,
    make_eval_pairs,
    make_streams,
    prepare_camvid_demo,
)
from jaxseg.experiment.evaluation import (  # noqa: E402
    evaluate_per_image,
    make_render,
    run_evaluation,
    uses_tta,
    write_overlays,
)
from jaxseg.experiment.run_segmenter import load_segmenter  # noqa: E402
from jaxseg.experiment.runs import load_run, restore_variables  # noqa: E402
from jaxseg.experiment.state import (  # noqa: E402
    abstract_state,
    check_workdir,
    create_state,
    find_checkpoint,
    restore,
)

__all__ = [
    "EVAL_SETTINGS",
    "BatchFn",
    "CommandLine",
    "DatasetNotFoundError",
    "Experiment",
    "LossFn",
    "abstract_state",
    "backbone_factory",
    "base_config",
    "check_config",
    "check_workdir",
    "compute_dtype",
    "conv_layers",
    "create_state",
    "crf_kwargs",
    "cross_entropy",
    "dataset_info",
    "demo_defaults",
    "denormalize",
    "evaluate_per_image",
    "find_checkpoint",
    "foreground_dataset_info",
    "init_from_pretrained",
    "load_builder",
    "load_run",
    "load_segmenter",
    "main",
    "make_render",
    "make_eval_pairs",
    "make_streams",
    "normalize",
    "parse_command_line",
    "prepare_camvid_demo",
    "resolve",
    "restore",
    "restore_variables",
    "run",
    "run_evaluation",
    "uses_tta",
    "write_overlays",
]


def run(
    experiment: Experiment,
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    mode: str,
    demo: bool,
    checkpoint: str = "best",
) -> dict[str, Any] | None:
    """Trains (`mode="train"`) or evaluates (`mode="eval"`) `experiment` in `workdir`.

    Args:
      experiment: what the experiment file states (`Experiment`).
      config: the resolved config (`--demo`, overrides, the run's `run.json`: see `main`).
      workdir: the run folder.
      mode: "train" or "eval".
      demo: use generated data (`jaxseg.data.demo`).
      checkpoint: `--mode=eval`: "best", "latest" or a step.

    Returns:
      The final evaluation's results (`run_evaluation`), or None when training had no
      test-time augmentation to evaluate at the end.
    """
    if mode not in ("train", "eval"):
        raise train.ConfigError(f"--mode={mode!r}; choose train or eval")
    train.maybe_initialize_distributed()
    if config.compilation_cache:
        train.enable_compilation_cache()
    eval_model = experiment.model(config)
    train_model = experiment.train_model(config)
    mesh = train.make_mesh()
    # Everything that can be wrong with the inputs is checked here, before any compilation,
    # cheapest first: config values, the dataset, parameter paths, the workdir's checkpoints.
    check_config(config, train_model, mesh.size)
    if mode == "eval" and not os.path.isdir(os.path.join(workdir, "checkpoints")):
        release = config.get("init_from") or ""
        hint = (
            f"; to score the release itself: jaxseg-zoo evaluate {release[4:]}" if release else ""
        )
        raise train.CheckpointError(
            f"--mode=eval: --workdir {workdir} has no checkpoints/ folder (train first, or "
            f"point --workdir at a training run){hint}"
        )
    info = experiment.dataset(config)
    builder = load_builder(config, demo)
    # Parameters are initialised through the evaluation module, which takes whole crops; the
    # state then trains with the training module (the same parameters).
    try:
        shapes = abstract_state(eval_model, config).replace(apply_fn=train_model.apply)
    except ValueError as e:  # the models check their settings when first called
        raise train.ConfigError(f"the model rejects this config: {e}") from None
    train.validate_config(config, num_devices=mesh.size, params=shapes.params)
    check_workdir(workdir, shapes, config)
    step = find_checkpoint(workdir, checkpoint, config) if mode == "eval" else None
    train_stream_fn, eval_stream_fn = make_streams(
        config, builder, info, experiment.batch_transform
    )
    palette = np.asarray(info.palette)
    common = dict(config=config, workdir=workdir, eval_stream_fn=eval_stream_fn, mesh=mesh)
    evaluation = dict(
        common,
        eval_pairs_fn=make_eval_pairs(config, builder, info),
        model=eval_model,
        class_names=info.class_names,
        palette=palette,
    )

    if mode == "eval":
        # Restored straight onto the mesh from the shapes: no initialisation to compile.
        replicated = train.replicated(mesh)
        template = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), shapes
        )
        state = restore(template, workdir, step, config)
        return run_evaluation(state, step=step, **evaluation)

    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
    runs.write_run(
        workdir, experiment, config, demo=demo, model_name=type(eval_model).__name__, info=info
    )
    state = create_state(eval_model, config).replace(apply_fn=train_model.apply)
    state = experiment.initialize(config, state)
    schedule = train.train_schedule(config)
    state = train.train_and_evaluate(
        config,
        workdir,
        state=state,
        train_step=functools.partial(
            train.train_step, loss_fn=experiment.loss(config), learning_rate_fn=schedule
        ),
        train_stream_fn=train_stream_fn,
        eval_step=functools.partial(
            train.eval_step,
            num_classes=config.num_classes,
            apply_fn=eval_model.apply,
            align_corners=config.align_corners,
        ),
        eval_stream_fn=eval_stream_fn,
        class_names=info.class_names,
        predict_step=functools.partial(
            train.predict_step, apply_fn=eval_model.apply, align_corners=config.align_corners
        ),
        render=make_render(config, palette, info.class_names),
        mesh=mesh,
        palette=palette,
    )
    folder = None
    if config.num_eval_images:
        folder = write_overlays(
            state,
            palette=palette,
            count=config.num_eval_images,
            class_names=info.class_names,
            apply_fn=eval_model.apply,
            **common,
        )
    results = None
    if uses_tta(config):
        step = int(train.to_host(state.step))
        results = run_evaluation(state, step=step, **evaluation)
    if jax.process_index() == 0:
        minutes = (time.perf_counter() - _IMPORTED_AT) / 60
        print(
            f"\nDone in {minutes:.1f} min (data, compilation and evaluation included). "
            f"Run folder {workdir}: run.json, checkpoints/, tensorboard/ "
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


@dataclasses.dataclass(frozen=True)
class CommandLine:
    """What the experiment command line asks for.

    Attributes:
      config: `get_config()` (or `demo_config(get_config())` with `--demo`) with the
        `--config.*` overrides applied.
      overrides: those overrides alone, `{"a.b": value}` (checked against a run's `run.json`).
      workdir, mode, demo, checkpoint: the flags' values.
    """

    config: ml_collections.ConfigDict
    overrides: dict[str, Any]
    workdir: str
    mode: str
    demo: bool
    checkpoint: str


def parse_command_line(argv: Sequence[str], experiment: Experiment) -> CommandLine:
    """`argv` -> `CommandLine`; exits 2 on bad flags, 0 after `--help` (the file's docstring).

    `--demo` replaces the defaults by `demo_config(get_config())`; `--config.*` overrides then
    apply on top of whichever defaults are in force. A `--config.dataset=folder:DIR` is built
    here (once) and sets `num_classes`; an explicit `--config.num_classes` must agree with it.
    """
    default_workdir = os.path.join("runs", experiment.name)
    fv = flags.FlagValues()
    saved_argv, sys.argv = sys.argv, list(argv)  # ml_collections reads overrides from sys.argv
    try:
        _define_flags(fv, experiment.get_config(), default_workdir)
        if any(a in ("-h", "--help", "--helpfull", "-help") for a in argv[1:]):
            demo = any(a in ("--demo", "--demo=true", "--demo=True") for a in argv[1:])
            shown = experiment.get_config()
            shown = experiment.demo_config(shown) if demo else shown
            print(cli_help.format_help(experiment.doc, fv, shown, demo=demo))
            raise SystemExit(0)
        try:
            fv(list(argv))
        except flags.Error as e:
            print(f"error: {e}\nRun with --help for the flags.", file=sys.stderr)
            raise SystemExit(2) from None
    finally:
        sys.argv = saved_argv
    config = fv["config"].value
    overrides = dict(config_flags.get_override_values(fv["config"]))
    if fv.demo:
        config = experiment.demo_config(experiment.get_config())
        config = _apply_overrides(train.allow_size_pairs(config), overrides)
    if is_folder_spec(config.dataset):  # the folder sets num_classes
        from jaxseg.data.builders import folder  # TFDS: only for a folder dataset

        try:
            folder.configure(config, num_classes_given="num_classes" in overrides)
        except DataError as e:
            print(f"error: --config.dataset={config.dataset}: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    return CommandLine(
        config=config,
        overrides=overrides,
        workdir=fv.workdir or (default_workdir + ("_demo" if fv.demo else "")),
        mode=fv.mode,
        demo=fv.demo,
        checkpoint=fv.checkpoint,
    )


def resolve(experiment: Experiment, command: CommandLine) -> tuple[ml_collections.ConfigDict, bool]:
    """`(config, demo)` to run: the command's, or, in a run folder that has a `run.json`, the
    run's with the command's overrides checked against it (`runs.resolve_config`).

    Raises:
      CheckpointMismatchError: the folder is another experiment's run.
      ConfigError: a flag contradicts the run (`--demo` included).
      CheckpointError: `--mode=eval` on a folder with checkpoints but no `run.json`.
    """
    record = runs.read_run(command.workdir)
    if record is None:
        if command.mode == "eval" and os.path.isdir(os.path.join(command.workdir, "checkpoints")):
            raise train.CheckpointError(
                f"{command.workdir} has no {runs.RUN_FILE}, which records the experiment and "
                "config evaluation needs: it was not written by this version's training"
            )
        return command.config, command.demo
    runs.check_identity(record, experiment, command.workdir)
    if command.demo and not record["demo"]:
        raise train.ConfigError(
            f"--demo, but {command.workdir} was trained without --demo (on the real dataset)"
        )
    config = runs.resolve_config(
        record,
        experiment,
        command.overrides,
        workdir=command.workdir,
        resuming=command.mode == "train",
    )
    return config, bool(record["demo"])


def main(experiment: Experiment, argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """An experiment file's entry point: parse the command line, resolve the config, `run`.

    Problems with the inputs (`jaxseg.train.TrainingError`, a missing dataset) print one
    message and exit with a non-zero status instead of a stack trace.
    """
    argv = list(sys.argv if argv is None else argv)
    command = parse_command_line(argv, experiment)

    def resolve_and_run() -> dict[str, Any] | None:
        config, demo = resolve(experiment, command)
        return run(
            experiment,
            config,
            command.workdir,
            mode=command.mode,
            demo=demo,
            checkpoint=command.checkpoint,
        )

    return train.handle_errors(resolve_and_run)()
