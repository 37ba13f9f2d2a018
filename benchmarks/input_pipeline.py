"""Training input pipeline throughput: images/s per CPU core, VOC-sized JPEGs, full augmentation.

    python benchmarks/input_pipeline.py [--cores 1] [--batches 30] [--crop 513]

Generates 500x375 VOC-like JPEGs + palette masks (jaxseg.data.demo), builds them with the real
``voc_segmentation`` builder, then times ``jaxseg.data.pipeline.train_stream`` (decode, random scale
0.5-2.0, pad, random 513 crop, flip, ImageNet normalisation, batching, numpy conversion).
With ``--cores N`` the process is pinned to N cores and tf.data gets N threads, so
``images/s / N`` is the per-core rate. Target: >= 150 images/s per core (2-4 host cores per GPU).
"""

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=1, help="cores to pin to (0 = all available)")
    parser.add_argument("--images", type=int, default=200, help="distinct JPEGs to generate")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=30, help="timed batches (after warm-up)")
    parser.add_argument("--crop", type=int, default=513)
    parser.add_argument("--data_dir", default=None, help="reuse a folder (default: a temp dir)")
    args = parser.parse_args()

    available = sorted(os.sched_getaffinity(0))
    cores = available if args.cores == 0 else available[: args.cores]
    os.sched_setaffinity(0, cores)  # before TF starts its thread pools
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import tensorflow as tf
    import tensorflow_datasets as tfds

    tf.config.threading.set_inter_op_parallelism_threads(len(cores))
    tf.config.threading.set_intra_op_parallelism_threads(len(cores))
    from jaxseg.data import demo
    from jaxseg.data.pipeline import train_stream

    root = args.data_dir or tempfile.mkdtemp(prefix="jaxseg_bench_")
    manual = os.path.join(root, "manual")
    if not os.path.exists(os.path.join(manual, "VOCdevkit")):
        demo.write_voc_tree(manual, args.images, 1, seed=0, image_size=(375, 500), size_jitter=0.0)
    builder = tfds.builder("voc_segmentation/2012", data_dir=os.path.join(root, "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    stream = train_stream(
        builder,
        "train",
        batch_size=args.batch,
        crop_size=args.crop,
        seed=0,
        process_index=0,
        process_count=1,
        num_threads=len(cores),
    )
    for _ in range(3):  # warm-up: graph tracing, buffers, first shuffle fill
        next(stream)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(args.batches):
        batch = next(stream)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    images = args.batches * args.batch
    print(
        f"train input pipeline: 500x375 JPEG -> flip, scale 0.5-2.0, pad, crop {args.crop}, "
        f"normalise; batches of {tuple(batch['image'].shape)} float32"
    )
    # Wall-clock rate per pinned core, and images per CPU-second the process actually got: the
    # second is the per-core rate that does not depend on other jobs sharing the cores.
    print(
        f"cores: {len(cores)}  images/s: {images / seconds:.1f}  "
        f"images/s per core: {images / seconds / len(cores):.1f}  "
        f"images per CPU-second: {images / cpu_seconds:.1f}"
    )


if __name__ == "__main__":
    main()
