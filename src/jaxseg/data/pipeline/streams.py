"""Training and evaluation streams: numpy batches for one process of a (multi-host) job.

Both yield ``{"image": float32 [b, H, W, 3], "label": int32 [b, H, W], "mask": bool [b]}`` where
``b = batch_size // process_count`` (``batch_size`` is global); ``jaxseg.train.shard_batch`` turns
a batch into globally sharded ``jax.Array``s. Each process reads its own part of the split,
``tfds.even_splits(split, process_count)[process_index]``.

**Resuming** (train): the order is a function of the step, not of iterator state. Position
``p`` of this process's stream (step ``s`` holds ``p = s*b .. s*b+b-1``) is example ``p mod n`` of
epoch ``p // n``, where each epoch is the process's examples shuffled with a seed derived from
``(seed, process_index, epoch)``, and the augmentation of position ``p`` is seeded by
``(seed, p, process)``. ``train_stream(..., start_step=k)`` jumps to epoch ``k*b // n`` and skips
the rest of that epoch as encoded bytes, so it yields exactly what an uninterrupted run yields from
step ``k`` on; it needs the same seed, batch size, process count, data and TF version (the
``shuffle`` op also mixes in TF's global seed, which jaxseg never sets).

**Exact evaluation**: native-resolution labels (never resized), images and labels padded
bottom/right to the smallest fitting size *bucket* (image 0 = the mean after normalising, label
255) so a model compiles once per bucket. Batches hold one bucket each, buckets in order; every
process runs the same number of batches per bucket (they must agree for a global jit), filled up
with padding examples whose ``mask`` is False. Every pixel of the split is counted exactly once.
"""

import math
import os
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxseg.data.datasets import DatasetInfo
from jaxseg.data.pipeline import source, transforms
from jaxseg.labels import IGNORE_LABEL


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return process_index, process_count


def _process_split(split: str, process_index: int, process_count: int):
    return split if process_count == 1 else tfds.even_splits(split, n=process_count)[process_index]


def _per_process_batch(batch_size: int, process_count: int) -> int:
    if batch_size % process_count:
        raise ValueError(
            f"global batch_size {batch_size} is not divisible by {process_count} processes"
        )
    return batch_size // process_count


def _options(num_threads: int | None) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True  # order is part of the resumability contract
    if num_threads:
        options.threading.private_threadpool_size = num_threads
    return options


def _as_numpy_batch(image, label, mask) -> dict:
    return {"image": image, "label": tf.cast(label, tf.int32), "mask": mask}


def _as_eval_batch(image, label, mask, size, name) -> dict:
    return {**_as_numpy_batch(image, label, mask), "size": size, "name": name}


class TrainStream:
    """Infinite iterator of training batches (see module docstring); also says its sizes.

    Attributes:
      dataset: the underlying ``tf.data.Dataset`` of batches.
      num_examples: examples in this process's part of the split.
      batch_size: per-process batch ``b``.
      steps_per_epoch: ``num_examples / batch_size`` (a float; batches span epoch boundaries).
    """

    def __init__(self, dataset: tf.data.Dataset, num_examples: int, batch_size: int):
        self.dataset, self.num_examples, self.batch_size = dataset, num_examples, batch_size
        self.steps_per_epoch = num_examples / batch_size
        self._iterator = None

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        if self._iterator is None:
            self._iterator = self.dataset.as_numpy_iterator()
        return next(self._iterator)


def train_stream(
    builder_or_name,
    split: str,
    *,
    batch_size: int,
    crop_size: int | tuple[int, int],
    seed: int,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    normalization: str | transforms.Normalization = "imagenet",
    data_dir: str | os.PathLike | None = None,
    scales: Sequence[float] = transforms.DEFAULT_SCALES,
    flip: bool = True,
    shuffle_buffer: int = 1024,
    prefetch: int = 2,
    num_threads: int | None = None,
    dataset_info: DatasetInfo | None = None,
) -> TrainStream:
    """Augmented, shuffled, repeated training batches, resumable at any step.

    Args:
      builder_or_name: a prepared TFDS builder or a name such as ``"voc_segmentation/2012_aug"``.
      split: TFDS split (``"train"``; ``"train_aug"``/``"val"`` are accepted as aliases).
      batch_size: *global* batch size; each process yields ``batch_size // process_count``.
      crop_size: output ``(height, width)`` (an int means square), e.g. 513.
      seed: run seed; order and augmentation are functions of ``(seed, step)``.
      start_step: first step to yield (resume from a checkpoint at this step).
      process_index / process_count: default ``jax.process_index() / jax.process_count()``.
      normalization: ``"imagenet"``, ``"caffe_bgr"``, ``"inception"``, ``"none"`` or a
        :class:`~jaxseg.data.pipeline.transforms.Normalization`.
      scales: random scale choices (DeepLab: 0.5..2.0 step 0.25); ``(1.0,)`` disables scaling.
      shuffle_buffer: examples (encoded) held for shuffling; TFDS already stores examples in
        hashed (random) order, the buffer re-mixes them every epoch.
      num_threads: private tf.data thread pool size (``None``: TF's default, all cores).
      dataset_info: metadata override (default: looked up from the builder name).

    Returns:
      :class:`TrainStream` yielding ``{"image": float32 [b, crop_h, crop_w, 3], "label": int32
      [b, crop_h, crop_w], "mask": bool [b] (all True)}``.
    """
    builder = source.get_builder(builder_or_name, data_dir)
    info = source.dataset_info_for(builder, dataset_info)
    split = source.resolve_split(builder, split)
    process_index, process_count = _process(process_index, process_count)
    local_batch = _per_process_batch(batch_size, process_count)
    crop = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
    local_split = _process_split(split, process_index, process_count)
    num_examples = builder.info.splits[local_split].num_examples
    if num_examples == 0:
        raise ValueError(f"{builder.name} split {local_split!r} has no examples")
    encoded = source.read_encoded(builder, local_split, info)
    buffer = max(1, min(shuffle_buffer, num_examples))
    epoch_seed = tf.constant(int(seed) * 1_000_003 + process_index * 7_919, tf.int64)

    def epoch(e):
        e_seed = epoch_seed + e * 104_729
        shuffled = encoded.shuffle(buffer, seed=e_seed, reshuffle_each_iteration=False)
        return shuffled.enumerate().map(lambda i, ex: (e * num_examples + i, ex))

    first_position = start_step * local_batch
    first_epoch = first_position // num_examples
    ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch)
    ds = ds.skip(first_position - first_epoch * num_examples)

    def augment(position, ex):
        image, label = source.decode(builder, info, ex)
        aug_seed = tf.stack([tf.constant(seed, tf.int64), position * process_count + process_index])
        return transforms.train_transform(
            image, label, aug_seed, crop, normalization, tuple(scales), flip
        )

    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(local_batch, drop_remainder=True)
    ds = ds.map(lambda image, label: _as_numpy_batch(image, label, tf.ones([local_batch], tf.bool)))
    ds = ds.prefetch(prefetch).with_options(_options(num_threads))
    return TrainStream(ds, num_examples, local_batch)


class EvalStream:
    """Re-iterable finite stream of evaluation batches (see module docstring).

    Attributes:
      dataset: the underlying ``tf.data.Dataset``.
      num_batches: batches per pass, equal on every process (also ``len(stream)``).
      num_examples: real examples this process yields (``mask`` True).
      num_examples_total: examples in the split over all processes.
      buckets: the ``(height, width)`` padding sizes, in the order batches come.
      batches_per_bucket: number of batches of each bucket.
    """

    def __init__(self, dataset, num_batches, num_examples, num_examples_total, buckets, per_bucket):
        self.dataset, self.num_batches = dataset, num_batches
        self.num_examples, self.num_examples_total = num_examples, num_examples_total
        self.buckets, self.batches_per_bucket = buckets, per_bucket

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[dict]:
        return self.dataset.as_numpy_iterator()


def _sizes(builder, split, info) -> np.ndarray:
    """``int32 [n, 2]`` image (height, width) of each example, read from headers only."""
    ds = source.read_encoded(builder, split, info)
    ds = ds.map(
        lambda ex: source.encoded_image_size(ex["image"]), num_parallel_calls=tf.data.AUTOTUNE
    )
    sizes = list(ds.as_numpy_iterator())
    return np.stack(sizes).astype(np.int64) if sizes else np.zeros((0, 2), np.int64)


def _bucket_ids(sizes: np.ndarray, buckets: list[tuple[int, int]], split: str) -> np.ndarray:
    """Index of the smallest-area bucket holding each ``(height, width)``."""
    fits = (sizes[:, None, 0] <= np.array([b[0] for b in buckets])) & (
        sizes[:, None, 1] <= np.array([b[1] for b in buckets])
    )
    too_big = ~fits.any(axis=1)
    if too_big.any():
        i = int(np.argmax(too_big))
        raise ValueError(
            f"example {i} of split {split!r} is {sizes[i, 0]}x{sizes[i, 1]}, larger than every "
            f"eval bucket {buckets}; add a bigger bucket (or pass buckets=None)."
        )
    return np.argmax(fits, axis=1)  # buckets are sorted by area, first fit = smallest


def eval_stream(
    builder_or_name,
    split: str,
    *,
    batch_size: int,
    buckets: Sequence[tuple[int, int]] | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    normalization: str | transforms.Normalization = "imagenet",
    data_dir: str | os.PathLike | None = None,
    bucket_multiple: int = 32,
    prefetch: int = 2,
    num_threads: int | None = None,
    dataset_info: DatasetInfo | None = None,
) -> EvalStream:
    """Exact evaluation batches at native label resolution, padded to size buckets.

    Args:
      builder_or_name / split / normalization / process_*: as for :func:`train_stream`.
      batch_size: *global* batch size; each process yields ``batch_size // process_count``.
      buckets: ``(height, width)`` padding sizes, e.g. ``((513, 513),)`` for VOC with DeepLab;
        each example goes to the smallest-area bucket it fits. ``None``: one bucket, the largest
        image of the split rounded up to a multiple of ``bucket_multiple``.

    Returns:
      :class:`EvalStream` yielding ``{"image": float32 [b, Hk, Wk, 3], "label": int32
      [b, Hk, Wk], "mask": bool [b], "size": int32 [b, 2], "name": bytes [b]}`` with
      ``(Hk, Wk)`` the batch's bucket, ``size`` each image's own ``(height, width)`` before
      padding (0 for padding examples) and ``name`` its ``file_name`` in the dataset (b"" for
      padding examples and datasets without file names).
    """
    builder = source.get_builder(builder_or_name, data_dir)
    info = source.dataset_info_for(builder, dataset_info)
    split = source.resolve_split(builder, split)
    process_index, process_count = _process(process_index, process_count)
    local_batch = _per_process_batch(batch_size, process_count)
    # Every process computes every process's bucket counts (image headers only), so all agree
    # on how many batches of each bucket to run.
    parts = [_process_split(split, p, process_count) for p in range(process_count)]
    sizes = [_sizes(builder, part, info) for part in parts]
    all_sizes = np.concatenate(sizes)
    if buckets is None:
        top = all_sizes.max(axis=0) if len(all_sizes) else np.array([bucket_multiple] * 2)
        buckets = [tuple(int(math.ceil(d / bucket_multiple) * bucket_multiple) for d in top)]
    buckets = sorted((int(h), int(w)) for h, w in buckets)
    buckets = sorted(buckets, key=lambda b: b[0] * b[1])
    ids = [_bucket_ids(s, buckets, split) for s in sizes]
    counts = np.array([np.bincount(i, minlength=len(buckets)) for i in ids])  # [process, bucket]
    per_bucket = [int(math.ceil(c / local_batch)) for c in counts.max(axis=0)]

    local_ids = tf.constant(ids[process_index], tf.int64)
    encoded = source.read_encoded(builder, parts[process_index], info).enumerate()
    ds = None
    for k, (bucket, num_batches) in enumerate(zip(buckets, per_bucket, strict=True)):
        if num_batches == 0:
            continue

        def prepare(_, ex, bucket=bucket):
            image, label = source.decode(builder, info, ex)
            size = tf.shape(label)[:2]
            image, label = transforms.eval_transform(image, label, bucket, normalization)
            return image, label, True, size, ex["name"]

        real = encoded.filter(lambda i, _, k=k: tf.gather(local_ids, i) == k)
        real = real.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        padding = tf.data.Dataset.from_tensors(
            (
                tf.zeros([*bucket, 3], tf.float32),
                tf.fill(bucket, tf.constant(IGNORE_LABEL, tf.uint8)),
                False,
                tf.zeros([2], tf.int32),
                tf.constant(""),
            )
        ).repeat(num_batches * local_batch - int(counts[process_index, k]))
        batches = real.concatenate(padding).batch(local_batch, drop_remainder=True)
        ds = batches if ds is None else ds.concatenate(batches)
    if ds is None:
        raise ValueError(f"{builder.name} split {split!r} has no examples")
    ds = ds.map(_as_eval_batch).prefetch(prefetch).with_options(_options(num_threads))
    return EvalStream(
        ds,
        num_batches=sum(per_bucket),
        num_examples=int(counts[process_index].sum()),
        num_examples_total=int(counts.sum()),
        buckets=buckets,
        per_bucket=per_bucket,
    )


def eval_pairs(
    builder: tfds.core.DatasetBuilder, split: str, info: DatasetInfo
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`(uint8 [H, W, 3] RGB image, int32 [H, W] labels)` of every example of `split` this
    process evaluates (labels mapped through `info`, 255 = ignore), each at its own size: the
    input of `jaxseg.scoring`."""
    from jaxseg.data import pipeline  # TensorFlow: only when the data is read

    stream = pipeline.eval_stream(
        builder, split, batch_size=1, normalization="none", dataset_info=info
    )
    for batch in stream:
        for i in np.flatnonzero(batch["mask"]):
            height, width = batch["size"][i]
            image = np.asarray(batch["image"][i, :height, :width])
            yield (
                np.clip(np.rint(image), 0, 255).astype(np.uint8),
                np.asarray(batch["label"][i, :height, :width], np.int32),
            )
