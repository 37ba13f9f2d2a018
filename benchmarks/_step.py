"""Our model and training step as the benchmarks build them (shared by train_step/peers/flops).

The step is the real `jaxseg.train.steps.train_step` (forward, float32 cross-entropy with
ignore label 255, gradients, optax SGD momentum 0.9, BatchNorm statistics update) jitted the way
the experiments jit it (`jit_train_step` on a `data` mesh, state donated).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import time

import flops as flop_count
import jax
import jax.numpy as jnp
import numpy as np

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="DeepLabV3Plus", help="class name in jaxseg.models")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--output-stride", type=int, default=16)
    p.add_argument(
        "--atrous-rates", type=int, nargs="+", default=None, help="default: the model's own"
    )
    p.add_argument("--num-classes", type=int, default=21)
    p.add_argument(
        "--layers",
        default="reference",
        choices=["reference", "space_to_batch", "cpu"],
        help="conv forms the model is built with (jaxseg.nn.conv_layers)",
    )
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra constructor argument, VALUE a Python literal (repeatable), e.g. "
        "--model-arg separable=False",
    )


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word is a string


def model_kwargs(args, dtype: str) -> dict:
    from jaxseg.nn import conv_layers  # noqa: PLC0415

    layers = conv_layers(args.layers)
    kwargs = {
        "num_classes": args.num_classes,
        "backbone": args.backbone,
        "output_stride": args.output_stride,
        "conv": layers.conv,
        "conv_transpose": layers.conv_transpose,
        "dtype": DTYPES[dtype],
    }
    if args.atrous_rates:
        kwargs["atrous_rates"] = tuple(args.atrous_rates)
    for item in args.model_arg:
        key, _, value = item.partition("=")
        kwargs[key.strip().replace("-", "_")] = _literal(value)
    return kwargs


def build_model(args, dtype: str):
    """`jaxseg.models.<args.model>(...)`, passing only the arguments its constructor has."""
    from jaxseg import models  # noqa: PLC0415 - import errors name the missing piece

    cls = getattr(models, args.model)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = model_kwargs(args, dtype)
    unknown = [k for k in kwargs if k not in fields]
    explicit = {item.partition("=")[0].strip().replace("-", "_") for item in args.model_arg}
    if unknown and explicit & set(unknown):
        raise ValueError(f"{args.model} has no argument(s) {sorted(explicit & set(unknown))}")
    # Generic arguments (backbone, output_stride, ...) that this model lacks are dropped.
    return cls(**{k: v for k, v in kwargs.items() if k in fields})


def model_label(args) -> str:
    """e.g. 'DeepLabV3Plus resnet50 OS16': the generic arguments the model actually takes."""
    from jaxseg import models  # noqa: PLC0415

    fields = {f.name for f in dataclasses.fields(getattr(models, args.model))}
    parts = [args.model]
    if "backbone" in fields:
        parts.append(args.backbone if isinstance(args.backbone, str) else "custom-backbone")
    if "output_stride" in fields:
        parts.append(f"OS{args.output_stride}")
    if args.atrous_rates and "atrous_rates" in fields:
        parts.append("rates " + "/".join(map(str, args.atrous_rates)))
    parts.append(f"layers={args.layers}")
    parts += args.model_arg
    return " ".join(parts)


def fake_batch(batch: int, resolution: int, num_classes: int, seed: int = 0) -> dict:
    """Random images and labels with ~5% ignore (255) pixels, like VOC's boundaries."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, (batch, resolution, resolution), dtype=np.int32)
    labels[rng.random(labels.shape) < 0.05] = 255
    images = rng.standard_normal((batch, resolution, resolution, 3), dtype=np.float32)
    return {"image": images, "label": labels}


def forward_flops_per_image(model, resolution: int) -> dict[str, float]:
    """Analytic conv + matmul FLOPs of one training-mode forward pass of one image."""
    images = jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)

    def forward(v, x):
        return model.apply(
            v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}
        )

    return flop_count.count_flops(forward, variables, images)


@dataclasses.dataclass
class CompiledStep:
    """A compiled train step and what it is called with (state is donated: reassign it)."""

    step: object  # compiled: (state, batch, rng) -> (state, metrics)
    state: object
    batch: dict
    rng: jax.Array
    compiled: object
    compile_s: float
    devices: int

    def run(self):
        self.state, metrics = self.step(self.state, self.batch, self.rng)
        return jax.block_until_ready(metrics)


def compile_train_step(
    model,
    batch: dict,
    learning_rate: float = 0.007,
    devices: int = 1,
    seed: int = 0,
    compiler_options: dict | None = None,
) -> CompiledStep:
    """State + batch placed on a `data` mesh of `devices` devices, step lowered and compiled
    (with XLA `compiler_options`, e.g. `{"xla_cpu_experimental_ynn_fusion_type": ""}`)."""
    from jaxseg import losses  # noqa: PLC0415
    from jaxseg.train.optim import make_optimizer  # noqa: PLC0415
    from jaxseg.train.parallel import (  # noqa: PLC0415
        jit_train_step,
        make_mesh,
        shard_batch,
        shard_state,
    )
    from jaxseg.train.state import create_train_state  # noqa: PLC0415
    from jaxseg.train.steps import train_step  # noqa: PLC0415

    # Constant-LR SGD with momentum 0.9, no weight decay: the same update keras' SGD does in
    # the peers benchmark (a schedule costs nothing measurable either way).
    tx = make_optimizer(
        {"name": "sgd", "learning_rate": learning_rate, "schedule": "constant", "momentum": 0.9},
        total_steps=1000,
    )
    images = batch["image"]
    rng = jax.random.key(seed)
    state = create_train_state(model, tx, rng, (1, *images.shape[1:]))
    mesh = make_mesh(jax.devices()[:devices])
    state = shard_state(state, mesh)
    placed = shard_batch(batch, mesh)
    step = functools.partial(train_step, loss_fn=losses.softmax_cross_entropy)
    jitted = jit_train_step(step, mesh)
    start = time.perf_counter()
    compiled = jitted.lower(state, placed, rng).compile(compiler_options=compiler_options or {})
    compile_s = time.perf_counter() - start
    return CompiledStep(compiled, state, placed, rng, compiled, compile_s, devices)
