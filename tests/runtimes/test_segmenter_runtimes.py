"""`Segmenter(runtime=...)`: the network call exported to ONNX (onnxruntime) and TFLite (LiteRT)
gives the JAX Segmenter's logits, through padding, batches, test-time scales and flips and the
DeepLab multi-scale protocol.

The reference is the JAX path (XLA), the runtimes are independent implementations of the same
operators (onnxruntime's and LiteRT's kernels): 1e-4 of the largest |logit| is float32
reordering, a wrong pad, crop, normalisation or layout is far larger.
"""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("jax2onnx")
pytest.importorskip("ai_edge_litert")

from jaxseg import runtimes  # noqa: E402
from jaxseg.models import UNet  # noqa: E402
from jaxseg.segmenter import Segmenter  # noqa: E402
from jaxseg.weights.tf_slim import DeepLabArch  # noqa: E402

NUM_CLASSES = 3
CLASS_NAMES = ("background", "cat", "dog")
RUNTIMES = ("onnxruntime", "litert")
RTOL = 1e-4


def random_variables(model, shape, seed=0):
    """Seeded He-scaled kernels and random BN statistics (no compiled init)."""
    import jax
    import jax.numpy as jnp

    abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape, jnp.float32))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = str(path[-1].key)
        if name == "var":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        if name == "mean":
            return rng.normal(0, 0.1, leaf.shape).astype(np.float32)
        fan_in = int(np.prod(leaf.shape[:-1])) if leaf.ndim > 1 else 1
        scale = np.sqrt(2.0 / max(fan_in, 1)) if leaf.ndim > 1 else 0.1
        values = rng.standard_normal(leaf.shape).astype(np.float32) * np.float32(scale)
        return values + 1.0 if name == "scale" else values

    return jax.tree_util.tree_map_with_path(fill, abstract)


@dataclasses.dataclass(frozen=True)
class Family:
    model: object
    crop: int
    pad_pixel: tuple
    align_corners: bool
    deeplab: bool


def families():
    # DeepLab v3 MobileNetV2 as the TF DeepLab releases configure it (no ASPP rates, no
    # decoder, 127.5 padding, align_corners), at half width.
    arch = DeepLabArch(
        backbone="mobilenet_v2",
        num_classes=NUM_CLASSES,
        atrous_rates=(),
        decoder=False,
        separable=False,
        depth_multiplier=0.5,
    )
    unet = UNet(num_classes=NUM_CLASSES, depth=2, base_features=4, padding="SAME", batch_norm=True)
    return {
        "deeplab_v3_mobilenetv2": Family(arch.model(16), 33, (127.5,) * 3, True, True),
        "unet": Family(unet, 32, (0.0, 0.0, 0.0), False, False),
    }


def normalize(images):
    return images * (2.0 / 255.0) - 1.0  # inception preprocessing, as DeepLab's releases


IMAGES = np.random.default_rng(3).integers(0, 256, (2, 25, 30, 3), dtype=np.uint8)
SCALES_AND_FLIP = dict(scales=(0.75, 1.0), flip=True)
DEEPLAB_PROTOCOL = dict(multiscale="deeplab", scales=(1.0,), flip=True)
# Windows of 16x16 every 8 rows, 7 columns: a batch of windows per network call.
SLIDING_WINDOW = dict(sliding_window=((16, 16), (8, 7)), batch_size=3)


def segmenter(spec, variables, runtime="jax", **options):
    return Segmenter(
        spec.model,
        variables,
        normalize=normalize,
        class_names=CLASS_NAMES,
        crop_size=spec.crop,
        pad_pixel=spec.pad_pixel,
        # every scaled view padded to the crop too: one canvas shape, one export per runtime
        bucket=(spec.crop,),
        align_corners=spec.align_corners,
        runtime=runtime,
        **options,
    )


@pytest.fixture(scope="module", params=list(families()))
def family(request):
    """(family, variables, the JAX Segmenter's logits of each case), computed once."""
    spec = families()[request.param]
    variables = random_variables(spec.model, (1, spec.crop, spec.crop, 3))
    jax_seg = segmenter(spec, variables)
    reference = {
        "batch": jax_seg.logits(IMAGES),
        "scales_and_flip": jax_seg.replace(**SCALES_AND_FLIP).logits(IMAGES[0]),
    }
    if spec.deeplab:
        reference["deeplab"] = jax_seg.replace(**DEEPLAB_PROTOCOL).logits(IMAGES[1])
    else:
        reference["windows"] = jax_seg.replace(**SLIDING_WINDOW).logits(IMAGES[1])
    return spec, variables, reference


def assert_close(ours, reference):
    assert ours.shape == reference.shape and ours.dtype == np.float32
    error = np.max(np.abs(ours - reference)) / np.max(np.abs(reference))
    assert error <= RTOL, f"max relative logit error {error:.2e}"


def assert_labels(labels, reference_logits, margin=1e-3):
    """Labels equal the reference's argmax wherever its top two logits differ by > margin."""
    top2 = np.sort(reference_logits, axis=-1)[..., -2:]
    decided = top2[..., 1] - top2[..., 0] > margin
    assert decided.mean() > 0.9
    np.testing.assert_array_equal(labels[decided], np.argmax(reference_logits, -1)[decided])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_logits_equal_jax(family, runtime):
    spec, variables, reference = family
    exported = segmenter(spec, variables, runtime)
    # A batch of two images smaller than the canvas: padded with pad_pixel, then cropped.
    assert reference["batch"].shape == (2, 25, 30, NUM_CLASSES)
    assert_close(exported.logits(IMAGES), reference["batch"])
    assert_labels(exported(IMAGES), reference["batch"])
    assert exported._exported.runtime == runtime
    assert set(exported._exported.first_use_seconds) == {(spec.crop, spec.crop)}
    # Test-time scales and flips (resize protocol); `replace` keeps the runtime and the export.
    scaled = exported.replace(**SCALES_AND_FLIP)
    assert scaled.runtime == runtime and scaled._exported is exported._exported
    assert_close(scaled.logits(IMAGES[0]), reference["scales_and_flip"])
    assert_labels(scaled(IMAGES[0]), reference["scales_and_flip"])
    if spec.deeplab and runtime == "litert":
        # The official protocol: the network at its own resolution, exported too (one runtime
        # is enough for this path, which is the same code for both).
        protocol = exported.replace(**DEEPLAB_PROTOCOL)
        assert_close(protocol.logits(IMAGES[1]), reference["deeplab"])
        assert_labels(protocol(IMAGES[1]), reference["deeplab"])
    if "windows" in reference:  # a U-Net's sliding windows: one more (small) canvas
        windows = exported.replace(**SLIDING_WINDOW)
        assert_close(windows.logits(IMAGES[1]), reference["windows"])
        assert_labels(windows(IMAGES[1]), reference["windows"])


def test_unknown_runtime_names_the_value_and_the_choices():
    spec = families()["unet"]
    with pytest.raises(ValueError) as e:
        segmenter(spec, {}, "tensorrt")
    assert "'tensorrt'" in str(e.value) and "'jax', 'onnxruntime', 'litert'" in str(e.value)


def test_missing_runtime_package_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "ai_edge_litert" else real(name, *a),
    )
    with pytest.raises(ImportError, match=r"ai_edge_litert.*pip install 'jaxseg\[tflite\]'"):
        runtimes.check_runtime("litert")
    assert runtimes.check_runtime("jax") == "jax"


def test_zoo_predict_passes_the_runtime_to_the_release(monkeypatch, tmp_path):
    """`jaxseg-zoo predict NAME --runtime onnxruntime`: the flag reaches `zoo.load` and the
    label PNG equals the JAX Segmenter's labels (a tiny U-Net stands in for the release)."""
    from PIL import Image

    from jaxseg import zoo, zoo_cli

    spec = families()["unet"]
    variables = random_variables(spec.model, (1, spec.crop, spec.crop, 3))
    asked = {}

    def load(name, **options):
        asked.update(options, name=name)
        runtime = options.pop("runtime")
        options = {k: v for k, v in options.items() if k in ("scales", "flip", "batch_size")}
        return segmenter(spec, variables, runtime, **options)

    monkeypatch.setattr(zoo, "load", load)
    Image.fromarray(IMAGES[0]).save(tmp_path / "photo.png")
    argv = ["predict", "tiny_release", "--input", str(tmp_path / "photo.png")]
    assert zoo_cli.main([*argv, "--output", str(tmp_path / "out"), "--runtime", "onnxruntime"]) == 0
    assert asked["name"] == "tiny_release" and asked["runtime"] == "onnxruntime"
    labels = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    reference = segmenter(spec, variables).logits(IMAGES[0])
    assert_labels(labels, reference)


def test_a_refused_conversion_names_the_runtime_and_the_default(monkeypatch):
    from jaxseg.runtimes import onnx as onnx_runtime

    def refuse(fn, inputs, *, model_name, **kwargs):
        raise runtimes.ConversionError(
            f"ONNX cannot express {model_name}: jax2onnx has no conversion for the operation "
            "'made_up'",
            refused=True,
        )

    monkeypatch.setattr(onnx_runtime, "convert", refuse)
    spec = families()["unet"]
    variables = random_variables(spec.model, (1, spec.crop, spec.crop, 3))
    seg = segmenter(spec, variables, "onnxruntime")
    with pytest.raises(runtimes.ConversionError) as e:
        seg(IMAGES[0])
    message = str(e.value)
    assert message.startswith("runtime='onnxruntime': ONNX cannot express UNet")
    assert "'made_up'" in message and message.endswith("use runtime='jax' (the default)")
    assert seg._exported.first_use_seconds == {}  # nothing kept: the next call tries again
