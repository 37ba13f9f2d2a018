"""Pure train / eval / predict steps. Bind the static pieces with `functools.partial`, then jit.

    step = functools.partial(train_step, loss_fn=my_loss, learning_rate_fn=schedule)
    p_train_step = jit_train_step(step, mesh)        # (state, batch, rng) -> (state, metrics)

Batches are dicts:
    image:          float [B, H, W, 3]
    label:          int32 [B, H, W], `ignore_label` (255) = no label, padding included
    mask:           bool [B] (optional), False for padding examples of a last partial batch
    pixel_weights:  float [B, H, W] (optional), e.g. U-Net border weights, passed to the loss

Models are Flax modules called as `model(images, train=...)` returning logits `[B, h, w, C]`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from jaxseg import losses, metrics
from jaxseg.ops import center_crop, resize_bilinear
from jaxseg.train.state import TrainState

Batch = Mapping[str, jax.Array]
LossFn = Callable[..., jax.Array]
PredictFn = Callable[[dict, jax.Array], jax.Array]


def _variables(state: TrainState) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats}


def _masked_labels(batch: Batch, ignore_label: int) -> jax.Array:
    """Labels with padding examples (`mask` False) turned into ignore: `[B, H, W]`."""
    labels = batch["label"]
    if "mask" in batch:
        labels = jnp.where(batch["mask"][:, None, None], labels, ignore_label)
    return labels


def _crop_to(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Centre crop of `[B, H, W]` to the logits' `size`.

    Only VALID-padded U-Net has logits smaller than its input: the centre of the input is what
    the output covers, so the labels are cropped (never resized) to match.
    """
    if x.shape[1:3] == tuple(size):
        return x
    if x.shape[1] < size[0] or x.shape[2] < size[1]:
        raise ValueError(f"logits {size} are larger than the labels {x.shape[1:3]}")
    return center_crop(x, size)


def train_step(
    state: TrainState,
    batch: Batch,
    rng: jax.Array,
    *,
    loss_fn: LossFn = losses.softmax_cross_entropy,
    learning_rate_fn: optax.Schedule | None = None,
    ignore_label: int = 255,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on the (global) batch.

    Args:
      state: the train state (replicated).
      batch: see the module docstring; labels at input resolution.
      rng: base PRNG key; the step's dropout key is `fold_in(rng, state.step)`, so it is never
        stored and a resumed run draws the same masks.
      loss_fn: `loss_fn(logits [B, h, w, C] f32, labels [B, h, w]) -> scalar`, called with
        `pixel_weights=` too when the batch has them (e.g. a partial of
        `jaxseg.losses.softmax_cross_entropy`). It must treat `ignore_label` as no label.
      learning_rate_fn: the optimizer's schedule, only to report `lr`.
      ignore_label: label value without a class (also given to padding examples).

    Returns:
      `(new_state, metrics)`, metrics = float32 scalars `loss`, `grad_norm`, `pixel_accuracy`
      (training batch, valid pixels, before the update) and `lr` if `learning_rate_fn` is set.
    """
    dropout_rng = jax.random.fold_in(rng, state.step)
    labels = _masked_labels(batch, ignore_label)

    def compute_loss(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        logits, updates = state.apply_fn(
            variables,
            batch["image"],
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_rng},
        )
        # bf16 compute stays inside the model; the loss and its reductions are float32.
        logits = logits.astype(jnp.float32)
        size = logits.shape[1:3]
        extra = {}
        if "pixel_weights" in batch:
            extra["pixel_weights"] = _crop_to(batch["pixel_weights"], size)
        cropped = _crop_to(labels, size)
        loss = loss_fn(logits, cropped, **extra)
        return loss, (logits, cropped, updates.get("batch_stats", {}))

    grad_fn = jax.value_and_grad(compute_loss, has_aux=True)
    (loss, (logits, cropped, batch_stats)), grads = grad_fn(state.params)
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)

    num_classes = logits.shape[-1]
    valid = (cropped >= 0) & (cropped < num_classes) & (cropped != ignore_label)
    correct = (jnp.argmax(logits, axis=-1) == cropped) & valid
    step_metrics = {
        "loss": loss.astype(jnp.float32),
        "grad_norm": optax.tree.norm(grads).astype(jnp.float32),
        "pixel_accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32),
    }
    if learning_rate_fn is not None:
        step_metrics["lr"] = jnp.asarray(learning_rate_fn(state.step), jnp.float32)
    return new_state, step_metrics


def _default_predict(state: TrainState) -> PredictFn:
    return lambda variables, images: state.apply_fn(variables, images, train=False)


def predict_logits(
    state: TrainState,
    images: jax.Array,
    size: tuple[int, int],
    *,
    predict_fn: PredictFn | None = None,
    align_corners: bool = False,
) -> jax.Array:
    """Eval-mode logits at label resolution: `[B, H, W, 3]` -> float32 `[B, size[0], size[1], C]`.

    Args:
      state: the train state.
      images: `[B, H, W, 3]`.
      size: the labels' `(H, W)`; logits of another size are resized bilinearly (labels are
        never resized: evaluation is at native label resolution).
      predict_fn: `(variables, images) -> logits`; default `model.apply(..., train=False)`.
        Use it for sliding-window, multi-scale or overlap-tile inference.
      align_corners: resize convention (True for TF1 DeepLab's 513 = 32k + 1 sizes).
    """
    predict_fn = predict_fn or _default_predict(state)
    logits = predict_fn(_variables(state), images).astype(jnp.float32)
    if logits.shape[1:3] != tuple(size):
        logits = resize_bilinear(logits, size, align_corners=align_corners)
    return logits


def eval_step(
    state: TrainState,
    batch: Batch,
    *,
    num_classes: int,
    ignore_label: int = 255,
    predict_fn: PredictFn | None = None,
    align_corners: bool = False,
) -> jax.Array:
    """Confusion matrix of one (global) batch: int32 `[num_classes + 1, num_classes + 1]`.

    Predictions are the argmax of the logits at label resolution (`predict_logits`); padding
    pixels (label = ignore) and padding examples (`mask` False) are not counted. Under jit
    over a sharded batch the counts are already summed across devices and processes; add
    batches on the host with `jaxseg.metrics.accumulate` (int64).
    """
    labels = batch["label"]
    logits = predict_logits(
        state, batch["image"], labels.shape[1:3], predict_fn=predict_fn, align_corners=align_corners
    )
    predictions = jnp.argmax(logits, axis=-1)
    return metrics.confusion_matrix(
        labels, predictions, num_classes, ignore_label=ignore_label, mask=batch.get("mask")
    )


def predict_step(
    state: TrainState,
    batch: Batch,
    *,
    predict_fn: PredictFn | None = None,
    align_corners: bool = False,
) -> jax.Array:
    """Predicted classes at label resolution: int32 `[B, H, W]` (for prediction images)."""
    size = batch["label"].shape[1:3] if "label" in batch else batch["image"].shape[1:3]
    logits = predict_logits(
        state, batch["image"], size, predict_fn=predict_fn, align_corners=align_corners
    )
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
