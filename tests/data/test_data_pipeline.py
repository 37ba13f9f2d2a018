"""train_stream / eval_stream: shapes, exact evaluation, per-process parts, resuming."""

import numpy as np
import pytest
from PIL import Image

from jaxseg.data.pipeline import eval_stream, train_stream


def _voc(voc_root):
    return voc_root / "manual" / "VOCdevkit" / "VOC2012"


def _ground_truth(voc_root, split_list):
    voc = _voc(voc_root)
    names = (voc / "ImageSets" / "Segmentation" / split_list).read_text().split()
    return [np.asarray(Image.open(voc / "SegmentationClass" / f"{n}.png")) for n in names]


def _padded(label, bucket):
    out = np.full(bucket, 255, np.uint8)
    out[: label.shape[0], : label.shape[1]] = label
    return out.tobytes()


def test_exact_eval_counts_every_pixel_once(voc_builder, voc_root):
    truth = _ground_truth(voc_root, "val.txt")
    assert len(truth) == 7
    stream = eval_stream(
        voc_builder,
        "validation",
        batch_size=4,
        buckets=[(48, 64)],
        process_index=0,
        process_count=1,
    )
    batches = list(stream)
    assert len(stream) == len(batches) == 2 and stream.num_examples == 7
    assert [b["mask"].tolist() for b in batches] == [[True] * 4, [True, True, True, False]]
    for b in batches:
        assert b["image"].dtype == np.float32 and b["image"].shape == (4, 48, 64, 3)
        assert b["label"].dtype == np.int32 and b["label"].shape == (4, 48, 64)
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    # Each image's own size travels with it (padding examples: 0 x 0).
    sizes = np.concatenate([b["size"][b["mask"]] for b in batches])
    assert sorted(map(tuple, sizes.tolist())) == sorted(t.shape for t in truth)
    assert batches[-1]["size"][~batches[-1]["mask"]].tolist() == [[0, 0]]
    # ... and its file name (pictures are named after it): val.txt's images, b"" for padding.
    names = [n for b in batches for n in b["name"][b["mask"]].tolist()]
    listed = (_voc(voc_root) / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert sorted(names) == sorted(f"{n}.jpg".encode() for n in listed)
    assert batches[-1]["name"][~batches[-1]["mask"]].tolist() == [b""]
    # Each name travels with its own label (the sizes of the demo's images differ).
    for b in batches:
        for name, size in zip(b["name"][b["mask"]], b["size"][b["mask"]], strict=True):
            stem = name.decode().removesuffix(".jpg")
            mask = Image.open(_voc(voc_root) / "SegmentationClass" / f"{stem}.png")
            assert tuple(size) == (mask.height, mask.width)
    want = np.bincount(np.concatenate([t.ravel() for t in truth]), minlength=256)
    got = np.bincount(labels.ravel(), minlength=256)
    padding = sum(48 * 64 - t.size for t in truth)
    np.testing.assert_array_equal(got[:255], want[:255])  # every class pixel exactly once
    assert got[255] == want[255] + padding  # ignore = VOC borders + bucket padding
    assert sorted(_padded(t, (48, 64)) for t in truth) == sorted(
        x.astype(np.uint8).tobytes() for x in labels
    )
    padding_example = batches[1]
    assert (padding_example["label"][3] == 255).all() and (padding_example["image"][3] == 0).all()


def test_eval_buckets_group_examples(voc_builder, voc_root):
    truth = _ground_truth(voc_root, "val.txt")
    buckets = [(48, 56), (48, 64)]
    stream = eval_stream(
        voc_builder, "val", batch_size=2, buckets=buckets, process_index=0, process_count=1
    )
    batches = list(stream)
    in_small = sum(t.shape[1] <= 56 for t in truth)
    assert 0 < in_small < 7, "the demo's size jitter should fill both buckets"
    shapes = [b["image"].shape[1:3] for b in batches]
    assert shapes == [(48, 56)] * -(-in_small // 2) + [(48, 64)] * -(-(7 - in_small) // 2)
    assert sum(int(b["mask"].sum()) for b in batches) == 7
    fingerprints = sorted(_padded(t, (48, 56) if t.shape[1] <= 56 else (48, 64)) for t in truth)
    got = sorted(lab.astype(np.uint8).tobytes() for b in batches for lab in b["label"][b["mask"]])
    assert got == fingerprints


def test_eval_parts_of_processes_are_disjoint_and_cover(voc_builder, voc_root):
    truth = sorted(_padded(t, (48, 64)) for t in _ground_truth(voc_root, "val.txt"))
    seen, lengths = [], set()
    for p in range(3):
        stream = eval_stream(
            voc_builder,
            "validation",
            batch_size=3,
            buckets=[(48, 64)],
            process_index=p,
            process_count=3,
        )
        batches = list(stream)
        lengths.add(len(batches))
        assert all(b["image"].shape[0] == 1 for b in batches)  # per-process batch = 3 / 3
        seen.append(
            [lab.astype(np.uint8).tobytes() for b in batches for lab in b["label"][b["mask"]]]
        )
    assert len(lengths) == 1, "every process must run the same number of batches"
    assert sorted(sum(seen, [])) == truth  # covering, and no example twice
    assert all(seen)


def _fingerprints_of_epoch(builder, p, count, crop):
    stream = train_stream(
        builder,
        "train",
        batch_size=count,
        crop_size=crop,
        seed=0,
        scales=(1.0,),
        flip=False,
        process_index=p,
        process_count=count,
    )
    return [next(stream)["label"][0].astype(np.uint8).tobytes() for _ in range(stream.num_examples)]


def test_train_parts_of_processes_are_disjoint_and_cover(voc_builder, voc_root):
    truth = sorted(_padded(t, (48, 64)) for t in _ground_truth(voc_root, "train.txt"))
    parts = [_fingerprints_of_epoch(voc_builder, p, 2, (48, 64)) for p in range(2)]
    assert len(set(parts[0]) & set(parts[1])) == 0
    assert sorted(parts[0] + parts[1]) == truth


def test_train_batches_and_resume(voc_builder):
    kwargs = dict(batch_size=4, crop_size=(24, 32), seed=3, process_index=0, process_count=1)
    stream = train_stream(voc_builder, "train", **kwargs)
    first = [next(stream) for _ in range(7)]  # 28 positions: crosses two epoch boundaries (12)
    b = first[0]
    assert b["image"].shape == (4, 24, 32, 3) and b["image"].dtype == np.float32
    assert b["label"].shape == (4, 24, 32) and b["label"].dtype == np.int32
    assert b["mask"].dtype == bool and b["mask"].all()
    values = np.unique(np.concatenate([x["label"].ravel() for x in first]))
    assert set(values.tolist()) <= set(range(21)) | {255}
    assert stream.num_examples == 12 and stream.steps_per_epoch == 3
    for start in (2, 4):
        resumed = train_stream(voc_builder, "train", start_step=start, **kwargs)
        for k in range(start, 7):
            batch = next(resumed)
            for key in ("image", "label", "mask"):
                np.testing.assert_array_equal(batch[key], first[k][key])
    other = next(train_stream(voc_builder, "train", **{**kwargs, "seed": 4}))
    assert not np.array_equal(other["image"], first[0]["image"])


def test_epochs_are_reshuffled(voc_builder):
    epochs = _epoch_orders(voc_builder)
    assert sorted(epochs[0]) == sorted(epochs[1]) and epochs[0] != epochs[1]


def _epoch_orders(builder):
    stream = train_stream(
        builder,
        "train",
        batch_size=1,
        crop_size=(48, 64),
        seed=0,
        scales=(1.0,),
        flip=False,
        process_index=0,
        process_count=1,
    )
    return [[next(stream)["label"].tobytes() for _ in range(12)] for _ in range(2)]


def test_global_batch_must_divide(voc_builder):
    with pytest.raises(ValueError, match="not divisible"):
        train_stream(
            voc_builder,
            "train",
            batch_size=5,
            crop_size=8,
            seed=0,
            process_index=0,
            process_count=2,
        )
