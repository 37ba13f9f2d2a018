"""jaxseg.metrics against hand-computed values, numpy loops and tf.math.confusion_matrix."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxseg import metrics

tf.config.set_visible_devices([], "GPU")

# One compiled program per call instead of op-by-op dispatch: keeps the file fast on 2 cores.
# The [C + 1, C + 1] form with the out-of-range row and column, as evaluation keeps it.
_jit_cm = jax.jit(
    functools.partial(metrics.confusion_matrix, out_of_range=True),
    static_argnames=("num_classes", "ignore_label"),
)
OOR = {"out_of_range": True}


# -- independent references: explicit loops over a [C + 1, C + 1] matrix ----------------------


def _ref_scores(cm):
    """FCN's four scores with plain loops; last row/column = out-of-range bins."""
    c = cm.shape[0] - 1
    t = [sum(int(cm[i, j]) for j in range(c + 1)) for i in range(c)]
    p = [sum(int(cm[i, j]) for i in range(c)) for j in range(c)]
    iou, acc = [], []
    for i in range(c):
        union = t[i] + p[i] - int(cm[i, i])
        iou.append(cm[i, i] / union if union > 0 else math.nan)
        acc.append(cm[i, i] / t[i] if t[i] > 0 else math.nan)
    present_iou = [v for v in iou if not math.isnan(v)]
    present_acc = [v for v in acc if not math.isnan(v)]
    pa = sum(int(cm[i, i]) for i in range(c)) / sum(t)
    fw = sum(t[i] * iou[i] for i in range(c) if t[i] > 0) / sum(t)
    return {
        "pa": pa,
        "mpa": sum(present_acc) / len(present_acc),
        "miou": sum(present_iou) / len(present_iou),
        "fw": fw,
        "iou": iou,
        "acc": acc,
    }


def _ref_counts(labels, predictions, num_classes, ignore_label=255):
    """Pixel-by-pixel counting loop."""
    cm = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for label, pred in zip(labels.ravel(), predictions.ravel(), strict=True):
        if label == ignore_label:
            continue
        row = label if 0 <= label < num_classes else num_classes
        col = pred if 0 <= pred < num_classes else num_classes
        cm[row, col] += 1
    return cm


# -- confusion_matrix -----------------------------------------------------------------------


def test_hand_computed_two_classes():
    labels = np.array([[[0, 0, 1, 1], [0, 255, 1, 1]]], np.int32)
    preds = np.array([[[0, 1, 1, 1], [0, 0, 0, 1]]], np.int32)
    cm = np.asarray(_jit_cm(labels, preds, num_classes=2))
    # class 0: pixels (0,0)->0, (0,1)->1, (1,0)->0 ; class 1: (0,2)->1, (0,3)->1, (1,2)->0, (1,3)->1
    np.testing.assert_array_equal(cm, [[2, 1, 0], [1, 3, 0], [0, 0, 0]])
    assert cm.dtype == np.int32
    assert metrics.pixel_accuracy(cm, **OOR) == pytest.approx(5 / 7)
    assert metrics.mean_pixel_accuracy(cm, **OOR) == pytest.approx((2 / 3 + 3 / 4) / 2)
    miou, iou = metrics.mean_iou(cm, **OOR)
    # IoU_0 = 2 / (3 + 3 - 2) = 1/2 ; IoU_1 = 3 / (4 + 4 - 3) = 3/5
    np.testing.assert_allclose(iou, [0.5, 0.6])
    assert miou == pytest.approx(0.55)
    assert metrics.frequency_weighted_iou(cm, **OOR) == pytest.approx((3 * 0.5 + 4 * 0.6) / 7)


def test_matches_tf_confusion_matrix_on_random_data():
    rng = np.random.default_rng(0)
    num_classes = 5
    labels = rng.integers(0, num_classes, (3, 17, 13)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.2] = 255
    preds = rng.integers(0, num_classes, labels.shape).astype(np.int32)
    cm = np.asarray(_jit_cm(labels, preds, num_classes))

    keep = labels != 255
    expected = tf.math.confusion_matrix(
        labels[keep], preds[keep], num_classes=num_classes, dtype=tf.int64
    ).numpy()
    np.testing.assert_array_equal(cm[:num_classes, :num_classes], expected)
    assert cm[num_classes].sum() == 0 and cm[:, num_classes].sum() == 0
    np.testing.assert_array_equal(cm, _ref_counts(labels, preds, num_classes))


def test_out_of_range_labels_and_predictions_are_counted_not_dropped():
    labels = np.array([[[0, 1, 3, -1, 7, 255]]], np.int32)
    preds = np.array([[[0, 9, 1, 0, 2, 1]]], np.int32)
    cm = np.asarray(_jit_cm(labels, preds, num_classes=3))
    np.testing.assert_array_equal(cm, _ref_counts(labels, preds, 3))
    # labels 3, -1, 7 are out of range -> last row; prediction 9 -> last column
    np.testing.assert_array_equal(cm[3], [1, 1, 1, 0])
    assert cm[1, 3] == 1 and cm.sum() == 5

    summary = metrics.summarize(cm, ["bg", "cat", "dog"], **OOR)
    assert summary["out_of_range_pixels"] == 3
    assert summary["out_of_range_predictions"] == 1
    assert summary["num_pixels"] == 2
    # only labels 0 (right) and 1 (predicted 9: wrong) are scored
    assert summary["pixel_accuracy"] == pytest.approx(0.5)
    assert "WARNING: 3 pixels have labels outside [0, 3)" in metrics.format_table(summary)


def test_uint8_labels_do_not_overflow():
    labels = np.full((1, 2, 2), 20, np.uint8)
    labels[0, 0, 0] = 255
    preds = np.full((1, 2, 2), 20, np.int32)
    cm = np.asarray(_jit_cm(labels, preds, num_classes=21))
    assert cm[20, 20] == 3 and cm.sum() == 3


@pytest.mark.parametrize("mask_rank", [1, 3])
def test_mask_excludes_pixels(mask_rank):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (4, 6, 5)).astype(np.int32)
    preds = rng.integers(0, 4, labels.shape).astype(np.int32)
    if mask_rank == 1:
        mask = np.array([True, True, False, False])
        pixel_mask = np.broadcast_to(mask[:, None, None], labels.shape)
    else:
        pixel_mask = mask = rng.random(labels.shape) < 0.5
    cm = np.asarray(_jit_cm(labels, preds, 4, mask=mask))
    expected = _ref_counts(labels[pixel_mask], preds[pixel_mask], 4)
    np.testing.assert_array_equal(cm, expected)


def test_exact_count_on_four_megapixels():
    labels = jnp.full((4, 1024, 1024), 2, jnp.int32)
    cm = np.asarray(_jit_cm(labels, labels, 3))
    assert cm[2, 2] == 4194304 and cm.sum() == 4194304


def test_jit_over_batch_sharded_on_eight_devices_matches_numpy():
    devices = jax.devices()
    assert len(devices) == 8, "tests/conftest.py sets 8 simulated CPU devices"
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 6, (8, 9, 7)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.1] = 255
    labels[0, 0, :3] = 6  # out of range
    preds = rng.integers(0, 6, labels.shape).astype(np.int32)
    mask = np.array([True] * 6 + [False] * 2)  # last two examples are padding

    sharding = NamedSharding(Mesh(np.array(devices), ("data",)), PartitionSpec("data"))
    args = [jax.device_put(x, sharding) for x in (labels, preds, mask)]
    step = jax.jit(lambda lab, p, m: metrics.confusion_matrix(lab, p, 6, mask=m, **OOR))
    cm = np.asarray(step(*args))
    np.testing.assert_array_equal(cm, _ref_counts(labels[:6], preds[:6], 6))
    assert cm[6].sum() == 3


def test_accumulate_is_int64_and_sums():
    a = np.array([[2**31 - 1, 0], [0, 1]], np.int32)
    total = metrics.accumulate(None, a)
    total = metrics.accumulate(total, a)
    assert total.dtype == np.int64
    assert total[0, 0] == 2 * (2**31 - 1)
    with pytest.raises(ValueError, match="shape"):
        metrics.accumulate(total, np.zeros((3, 3), np.int32))


def test_sum_counts_sums_trees_in_int64_reading_each_item_one_late():
    """The one scoring loop: int64 sums of `{"plain", "crf"}` trees; item i is read only
    after item i + 1 was produced (the device works while the host adds); an empty stream
    is (None, 0)."""
    rng = np.random.default_rng(0)
    items = [
        {"plain": rng.integers(0, 2**31 - 1, (3, 3), np.int32), "crf": np.eye(3, dtype=np.int32)}
        for _ in range(4)
    ]
    events = []

    def produce():
        for i, item in enumerate(items):
            events.append(("made", i))
            yield item

    def read(item):
        events.append(("read", next(i for i, x in enumerate(items) if x is item)))
        return item

    total, count = metrics.sum_counts(produce(), read=read)
    assert count == 4
    assert total["plain"].dtype == np.int64
    np.testing.assert_array_equal(total["plain"], sum(x["plain"].astype(np.int64) for x in items))
    np.testing.assert_array_equal(total["crf"], 4 * np.eye(3))
    for i in range(3):
        assert events.index(("made", i + 1)) < events.index(("read", i))
    assert metrics.sum_counts(iter(())) == (None, 0)


# -- scores -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_loop_reference_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    c = 7
    cm = rng.integers(0, 50, (c + 1, c + 1))
    cm[3, :] = 0  # class 3 never labelled but predicted: IoU 0, accuracy undefined
    cm[5, :] = 0  # class 5 absent from labels and predictions
    cm[:, 5] = 0
    ref = _ref_scores(cm)
    assert metrics.pixel_accuracy(cm, **OOR) == pytest.approx(ref["pa"])
    assert metrics.mean_pixel_accuracy(cm, **OOR) == pytest.approx(ref["mpa"])
    miou, iou = metrics.mean_iou(cm, **OOR)
    assert miou == pytest.approx(ref["miou"])
    np.testing.assert_allclose(iou, ref["iou"])  # NaNs compare equal here
    assert metrics.frequency_weighted_iou(cm, **OOR) == pytest.approx(ref["fw"])
    assert iou[3] == 0.0 and math.isnan(iou[5])
    # scores also accept a device array
    assert metrics.pixel_accuracy(jnp.asarray(cm, jnp.int32), **OOR) == pytest.approx(ref["pa"])


def test_absent_class_excluded_from_means_and_named():
    labels = np.array([[[0, 0, 2, 2]]], np.int32)
    preds = np.array([[[0, 2, 2, 2]]], np.int32)
    cm = _jit_cm(labels, preds, num_classes=3)
    summary = metrics.summarize(cm, ["bg", "person", "car"], **OOR)
    assert summary["absent_classes"] == ["person"]
    assert math.isnan(summary["iou"]["person"])
    # IoU_bg = 1 / 2, IoU_car = 2 / 3; the mean is over two classes, not three
    assert summary["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert summary["mean_pixel_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert summary["pixel_accuracy"] == pytest.approx(3 / 4)
    assert summary["fw_iou"] == pytest.approx((2 * 0.5 + 2 * 2 / 3) / 4)
    assert summary["num_pixels"] == 4 and summary["out_of_range_pixels"] == 0

    table = metrics.format_table(summary)
    lines = table.splitlines()
    person = next(line for line in lines if line.startswith("person"))
    assert "absent" in person and "-" in person
    car = next(line for line in lines if line.startswith("car"))
    assert "66.67" in car and "100.00" in car
    assert any(line.startswith("mean IoU") and line.endswith("58.33") for line in lines)
    assert "WARNING" not in table


def test_empty_matrix_gives_nan_not_errors():
    cm = np.zeros((4, 4), np.int64)
    summary = metrics.summarize(cm, **OOR)
    assert math.isnan(summary["miou"]) and math.isnan(summary["pixel_accuracy"])
    assert summary["absent_classes"] == ["0", "1", "2"]
    metrics.format_table(summary)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "preds", "kwargs", "match"),
    [
        (np.zeros((4, 4), np.int32), np.zeros((4, 4), np.int32), {}, "labels"),
        (np.zeros((1, 4, 4), np.float32), np.zeros((1, 4, 4), np.int32), {}, "labels"),
        (np.zeros((1, 4, 4), np.int32), np.zeros((1, 4, 4, 3)), {}, "predictions"),
        (np.zeros((1, 4, 4), np.int32), np.zeros((1, 4, 5), np.int32), {}, "predictions"),
        (np.zeros((1, 4, 4), np.int32), np.zeros((1, 4, 4), np.int32), {"nc": 0}, "num_classes"),
        (
            np.zeros((2, 4, 4), np.int32),
            np.zeros((2, 4, 4), np.int32),
            {"mask": np.ones(3, bool)},
            "mask",
        ),
        (
            np.zeros((2, 4, 4), np.int32),
            np.zeros((2, 4, 4), np.int32),
            {"mask": np.ones(2, np.float32)},
            "mask",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_argument(labels, preds, kwargs, match):
    num_classes = kwargs.pop("nc", 3)
    with pytest.raises(ValueError, match=match):
        jax.jit(lambda lab, pred: metrics.confusion_matrix(lab, pred, num_classes, **kwargs))(
            labels, preds
        )


def test_bad_matrix_and_names():
    with pytest.raises(ValueError, match="cm"):
        metrics.mean_iou(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="cm"):
        metrics.mean_iou(np.zeros((1, 1)), **OOR)
    with pytest.raises(ValueError, match="class_names"):
        metrics.summarize(np.zeros((3, 3), np.int64), ["a"])
    with pytest.raises(ValueError, match="class_names"):
        metrics.summarize(np.zeros((3, 3), np.int64), ["a", "b", "c"], **OOR)


# -- the standard [C, C] matrix (scikit-learn's layout) -----------------------------------------


def test_standard_matrix_scores_are_the_textbook_ones():
    """A plain [C, C] matrix (rows truth, columns prediction, as sklearn.metrics.
    confusion_matrix returns) scored against hand-computed numbers."""
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    # IoU_i = n_ii / (row_i + col_i - n_ii): 5/(6+7-5), 3/(6+4-3), 4/(4+5-4)
    iou = [5 / 8, 3 / 7, 4 / 5]
    miou, got = metrics.mean_iou(cm)
    np.testing.assert_allclose(got, iou)
    assert miou == pytest.approx(np.mean(iou))
    assert metrics.pixel_accuracy(cm) == pytest.approx(12 / 16)
    assert metrics.mean_pixel_accuracy(cm) == pytest.approx((5 / 6 + 3 / 6 + 4 / 4) / 3)
    assert metrics.frequency_weighted_iou(cm) == pytest.approx(
        (6 * 5 / 8 + 6 * 3 / 7 + 4 * 4 / 5) / 16
    )
    summary = metrics.summarize(cm, ["a", "b", "c"])
    assert summary["miou"] == pytest.approx(np.mean(iou))
    assert summary["num_pixels"] == 16 and summary["out_of_range_pixels"] == 0
    # The last class is a class, not bookkeeping: dropping it would give another mIoU.
    assert metrics.mean_iou(np.pad(cm, ((0, 1), (0, 1))), **OOR)[0] == pytest.approx(miou)


def test_default_confusion_matrix_is_c_by_c_and_drops_out_of_range():
    labels = np.array([[[0, 1, 2, 7, 255, 1]]], np.int32)
    preds = np.array([[[0, 2, 2, 1, 0, 9]]], np.int32)
    cm = np.asarray(jax.jit(metrics.confusion_matrix, static_argnums=2)(labels, preds, 3))
    # pairs (0,0), (1,2), (2,2); label 7, ignore 255 and prediction 9 are not counted
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 0, 1], [0, 0, 1]])
