"""A tiny experiment for the engine tests: conv net with BatchNorm and dropout, synthetic data.

Loaded by the tests (the `tinyrun` fixture of tests/train/conftest.py) and run as a script in
subprocesses (kill -9, SIGTERM, two processes). Data is a pure function of the step, so a resumed
run sees the same batches as an uninterrupted one.

    python tests/train/tinyrun.py --workdir W --steps 10 [--sleep 0.3] [--out final.npz]
        [--num_processes 2 --process_id 0 --port 12345]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import numpy as np

NUM_CLASSES = 3
SIZE = 16
CLASS_NAMES = ("background", "red", "green")
COLORS = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)


def make_examples(rng: np.random.Generator, count: int, size: int = SIZE) -> dict:
    """Images of 4x4 colour blocks whose colour is the class, with noise and some ignore pixels."""
    coarse = rng.integers(0, NUM_CLASSES, size=(count, size // 4, size // 4))
    label = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2).astype(np.int32)
    image = COLORS[label] + 0.2 * rng.standard_normal((count, size, size, 3)).astype(np.float32)
    ignore = rng.random((count, size, size)) < 0.05
    label = np.where(ignore, 255, label).astype(np.int32)
    return {"image": image.astype(np.float32), "label": label, "mask": np.ones(count, bool)}


def global_batch(step: int, batch_size: int, seed: int = 0) -> dict:
    """The global batch of `step`: a pure function of (seed, step)."""
    return make_examples(np.random.default_rng([seed, step]), batch_size)


def train_stream(
    start_step: int,
    *,
    batch_size: int,
    sleep: float = 0.0,
    nan_at: int | None = None,
    fixed: bool = False,
):
    """Process-local batches for steps start_step, start_step + 1, ... (infinite)."""
    import jax

    local = batch_size // jax.process_count()
    rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
    step = start_step
    while True:
        batch = global_batch(0 if fixed else step, batch_size)
        batch = {k: v[rows] for k, v in batch.items()}
        if nan_at is not None and step == nan_at:
            batch["image"] = np.full_like(batch["image"], np.nan)
        if sleep:
            time.sleep(sleep)
        yield batch
        step += 1


def eval_stream(batch_size: int, count: int = 12, fixed: bool = False):
    """`count` examples in batches, the last one padded and masked (per process share)."""
    import jax

    examples = (
        global_batch(0, batch_size) if fixed else make_examples(np.random.default_rng(99), count)
    )
    count = len(examples["image"])
    local = batch_size // jax.process_count()
    rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
    for start in range(0, count, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in examples.items()}
        pad = batch_size - len(batch["image"])
        if pad:
            batch = {
                k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)])
                for k, v in batch.items()
            }
        yield {k: v[rows] for k, v in batch.items()}


def tiny_net(features: int = 8, dropout: float = 0.1, name: str = "TinyNet"):
    import flax.linen as nn

    class TinyNet(nn.Module):
        features: int = 8
        dropout: float = 0.1

        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.Conv(self.features, (3, 3))(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = nn.relu(x)
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
            x = nn.Conv(self.features, (3, 3))(x)
            x = nn.relu(x)
            return nn.Conv(NUM_CLASSES, (1, 1), name="head")(x)

    TinyNet.__name__ = TinyNet.__qualname__ = name
    return TinyNet(features=features, dropout=dropout)


def tiny_config(**overrides):
    from jaxseg import train

    config = train.default_config()
    config.batch_size = 8
    config.num_train_steps = 10
    config.log_every = 2
    config.eval_every = 0
    config.checkpoint_every = 2
    config.keep_best = 2
    config.num_eval_images = 2
    config.tensorboard = False
    config.optimizer.learning_rate = 0.1
    config.optimizer.weight_decay = 1e-4
    for key, value in overrides.items():
        target = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return config


def run(
    workdir: str,
    config=None,
    *,
    model=None,
    sleep: float = 0.0,
    nan_at: int | None = None,
    fixed: bool = False,
    evaluate: bool = False,
    mesh=None,
):
    """Trains the tiny net with `jaxseg.train.train_and_evaluate`; returns the final state."""
    import jax

    from jaxseg import losses, train

    config = config or tiny_config()
    model = model or tiny_net()
    tx = train.make_train_optimizer(config)
    state = train.create_train_state(model, tx, jax.random.key(config.seed), (1, SIZE, SIZE, 3))
    loss = functools.partial(losses.softmax_cross_entropy, ignore_label=255)
    eval_kwargs = {}
    if evaluate:
        eval_kwargs = dict(
            eval_step=functools.partial(train.eval_step, num_classes=NUM_CLASSES),
            eval_stream_fn=lambda: eval_stream(config.batch_size, fixed=fixed),
            class_names=CLASS_NAMES,
        )
    return train.train_and_evaluate(
        config,
        workdir,
        state=state,
        train_step=functools.partial(train.train_step, loss_fn=loss),
        train_stream_fn=lambda start: train_stream(
            start, batch_size=config.batch_size, sleep=sleep, nan_at=nan_at, fixed=fixed
        ),
        mesh=mesh,
        **eval_kwargs,
    )


def flat_variables(state) -> dict[str, np.ndarray]:
    """`{'params/Conv_0/kernel': array, 'batch_stats/...': ...}` on the host."""
    import jax

    from jaxseg.train import to_host

    out = {}
    for group in ("params", "batch_stats"):
        tree = to_host(getattr(state, group))
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            out[group + "/" + jax.tree_util.keystr(path, simple=True, separator="/")] = np.asarray(
                leaf
            )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--checkpoint_every", type=int, default=2)
    parser.add_argument("--out", default="")
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--process_id", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    import jax

    if args.num_processes > 1:
        jax.distributed.initialize(
            coordinator_address=f"localhost:{args.port}",
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    from jaxseg import train

    config = tiny_config(num_train_steps=args.steps, checkpoint_every=args.checkpoint_every)
    # As an experiment's entry point: a TrainingError exits with its message and status.
    state = train.handle_errors(run)(args.workdir, config, sleep=args.sleep)
    if args.out:
        np.savez(args.out, **flat_variables(state))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.exit(main(sys.argv[1:]))
