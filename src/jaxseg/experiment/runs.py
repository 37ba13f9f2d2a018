"""The run folder carries its own definition: `run.json` records which experiment file trained
it and the resolved config, so evaluation, prediction and export rebuild the model exactly as
it was trained, without repeating flags.

    <workdir>/run.json = {"experiment": "deeplabv3plus_voc", "file": "/abs/path/to/it.py",
                          "model": "DeepLabV3Plus", "demo": true, "config": {...},
                          "classes": {"names": [...], "palette": [[r, g, b], ...]}}

`classes` are the trained dataset's class names and colours, so that a run trained on a folder
(`--config.dataset=folder:DIR`) labels and colours its predictions without that folder.

A command-line value that contradicts the recorded one is refused, naming both, unless it is an
evaluation setting (`EVAL_SETTINGS` plus the experiment's own `eval_settings`); a resumed
training run may also change how long it trains and logs (`RESUME_SETTINGS`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxseg import train
from jaxseg.experiment.contract import EVAL_SETTINGS, Experiment
from jaxseg.experiment.state import abstract_state, check_workdir, find_checkpoint, restore

RUN_FILE = "run.json"
# What a resumed training run may change besides the evaluation settings.
RESUME_SETTINGS = (
    "num_train_steps",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "keep_best",
    "tensorboard",
)


def write_run(
    workdir: str | os.PathLike,
    experiment: Experiment,
    config: ml_collections.ConfigDict,
    *,
    demo: bool,
    model_name: str,
    info: Any = None,
) -> None:
    """Writes `<workdir>/run.json` (atomically; process 0 only); with `info` (the dataset's
    `jaxseg.data.DatasetInfo`) its class names and palette as `classes`."""
    if jax.process_index() != 0:
        return
    record = {
        "experiment": experiment.name,
        "file": experiment.path,
        "model": model_name,
        "demo": bool(demo),
        "config": json.loads(config.to_json_best_effort()),
    }
    if info is not None:
        record["classes"] = {
            "names": [str(n) for n in info.class_names],
            "palette": np.asarray(info.palette, np.uint8).tolist(),
        }
    path = os.path.join(os.fspath(workdir), RUN_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)


def read_run(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """The record in `<workdir>/run.json`, or None when there is none.

    Raises:
      CheckpointError: the file exists but is not a run record.
    """
    path = Path(workdir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        missing = {"experiment", "file", "demo", "config"} - set(record)
    except (OSError, ValueError) as e:
        raise train.CheckpointError(f"{path} is not readable JSON: {e}") from None
    if missing:
        raise train.CheckpointError(f"{path} lacks {sorted(missing)}: not a jaxseg run record")
    return record


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples configs hold (crop sizes, scales, buckets)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """Comparable form: ConfigDicts as dicts, tuples as lists."""
    if isinstance(value, ml_collections.ConfigDict):
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_from_run(
    record: Mapping[str, Any], defaults: ml_collections.ConfigDict | None = None
) -> ml_collections.ConfigDict:
    """The config a run was trained with, as a ConfigDict.

    Keys that the experiment file's config (`defaults`) has and the run lacks (added to the
    file after training) take the file's values, with a warning naming them.
    """
    # Size keys may take an int or (h, w) at evaluation, as on the command line.
    config = train.allow_size_pairs(ml_collections.ConfigDict(_tuples(record["config"])))
    if defaults is None:
        return config
    recorded = _flat(record["config"])
    added = [k for k in _flat(_plain(defaults)) if k not in recorded]
    for key in added:
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            if part not in node:
                node[part] = ml_collections.ConfigDict()
            node = node[part]
        node[leaf] = _get(defaults, key)
    if added:
        logging.warning(
            "run.json predates config keys %s of the experiment file: using the file's values",
            added,
        )
    return config


def _covered(key: str, settings: Iterable[str]) -> bool:
    return any(key == s or key.startswith(s + ".") for s in settings)


def _get(config: ml_collections.ConfigDict, key: str) -> Any:
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def _set(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value


def resolve_config(
    record: Mapping[str, Any],
    experiment: Experiment,
    overrides: Mapping[str, Any],
    *,
    workdir: str | os.PathLike,
    resuming: bool = False,
) -> ml_collections.ConfigDict:
    """The run's config with the command line's `overrides` (`{"a.b": value}`) applied.

    Overrides equal to the run's values are accepted; evaluation settings (and, when
    `resuming` training, `RESUME_SETTINGS`) replace them; anything else is refused.

    Raises:
      ConfigError: naming each contradicting key with the run's and the command's value.
    """
    config = config_from_run(record, experiment.get_config())
    allowed = EVAL_SETTINGS + tuple(experiment.eval_settings)
    if resuming:
        allowed += RESUME_SETTINGS
    conflicts = []
    for key, value in overrides.items():
        try:
            recorded = _get(config, key)
        except (KeyError, AttributeError):
            recorded = "<no such key>"
        if _plain(recorded) == _plain(value):
            continue
        if _covered(key, allowed) and recorded != "<no such key>":
            try:
                _set(config, key, value)
                continue
            except TypeError as e:
                raise train.ConfigError(f"--config.{key}={value!r}: {e}") from None
        conflicts.append(f"config.{key}: the run has {recorded!r}, the command line {value!r}")
    if conflicts:
        what = "resuming it" if resuming else "evaluation and prediction"
        raise train.ConfigError(
            f"{os.path.join(os.fspath(workdir), RUN_FILE)} records how this run was trained; "
            f"the command line contradicts it:\n  "
            + "\n  ".join(conflicts)
            + f"\nDrop those flags ({what} use the run's values), or train a new run in another "
            "--workdir. Evaluation settings such as "
            + ", ".join(sorted(set(EVAL_SETTINGS[:4]) | set(experiment.eval_settings)))
            + " may differ."
        )
    return config


def check_identity(record: Mapping[str, Any], experiment: Experiment, workdir: str) -> None:
    """Refuses a run folder that another experiment file trained (nothing is written).

    Raises:
      CheckpointMismatchError: naming both experiments (and the run's model class).
    """
    if record["experiment"] != experiment.name:
        raise train.CheckpointMismatchError(
            f"{workdir} is a run of {record['experiment']} (model {record.get('model', '?')}, "
            f"file {record['file']}), not of {experiment.name}. Nothing was overwritten. Use a "
            "new --workdir, or run that experiment's file."
        )


def import_experiment(path: str | os.PathLike) -> Experiment:
    """The `EXPERIMENT` an experiment file builds, imported from the file's path.

    Raises:
      ConfigError: no such file, it fails to import, or it builds no `Experiment`.
    """
    path = Path(path)
    if not path.is_file():
        raise train.ConfigError(f"experiment file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"jaxseg_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    # A variant imports its base experiment from its own folder, as when run as a script.
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise train.ConfigError(f"importing {path} failed: {type(e).__name__}: {e}") from e
    finally:
        sys.path.remove(str(path.resolve().parent))
    found = vars(module).get("EXPERIMENT")
    if not isinstance(found, Experiment):
        raise train.ConfigError(
            f"{path} builds no EXPERIMENT = jaxseg.experiment.Experiment(...) at module level"
        )
    return found


def load_run(
    workdir: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    experiment: Experiment | None = None,
) -> tuple[Experiment, ml_collections.ConfigDict, dict[str, Any]]:
    """`(experiment, config, record)` of a trained run, with evaluation-setting `overrides`.

    The experiment is imported from the file the run records, unless given (it must then be
    the same experiment).

    Raises:
      CheckpointError: no such run folder or no `run.json`; ConfigError: see `resolve_config`.
    """
    workdir = os.fspath(workdir)
    record = read_run(workdir)
    if record is None:
        if not os.path.isdir(workdir):
            raise train.CheckpointError(f"--workdir {workdir} does not exist")
        raise train.CheckpointError(
            f"{workdir} has no {RUN_FILE}: point --workdir at the folder of a training run "
            f"(training writes {RUN_FILE} with the experiment and its config)"
        )
    if experiment is None:
        experiment = import_experiment(record["file"])
    check_identity(record, experiment, workdir)
    config = resolve_config(record, experiment, overrides or {}, workdir=workdir)
    return experiment, config, record


def restore_variables(
    workdir: str | os.PathLike,
    experiment: Experiment,
    config: ml_collections.ConfigDict,
    checkpoint: str = "best",
) -> tuple[Any, dict, int]:
    """`(model, {"params", "batch_stats"}, step)` of checkpoint `checkpoint` ("best", "latest"
    or a step, as `--mode=eval` takes it) on the default device, read through
    `jaxseg.train.Checkpoints` without touching a save in flight. The params are what
    evaluation applies: the moving average of the weights for a run with `ema_decay`."""
    workdir = os.fspath(workdir)
    model = experiment.model(config)
    step = find_checkpoint(workdir, checkpoint, config)
    shapes = abstract_state(model, config)
    check_workdir(workdir, shapes, config)  # another model's checkpoint: named, not "corrupt"
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    template = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes
    )
    state = restore(template, workdir, step, config)
    return model, train.eval_variables(state), step


def recorded_classes(record: Mapping[str, Any]) -> tuple[tuple[str, ...], np.ndarray] | None:
    """`(class names, uint8 [N, 3] palette)` that training wrote into `record`, or None for a
    run written before they were recorded (the experiment's dataset then says)."""
    classes = record.get("classes")
    if not classes:
        return None
    palette = np.asarray(classes["palette"], np.uint8).reshape(-1, 3)
    return tuple(str(n) for n in classes["names"]), palette
