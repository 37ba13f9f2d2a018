"""torchvision state dicts (built here in numpy with torchvision's key names and layouts) are
converted correctly: conv outputs checked against numpy convs on OIHW/NCHW data, BN folding
against the BN formula, and every kind of mismatch reported by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from jaxseg.models import DeepLabV3
from jaxseg.nn import Conv2D, ConvBN
from jaxseg.weights import from_torch, load_backbone, load_pretrained


def torchvision_resnet_state_dict(blocks=(3, 4, 6, 3), rng=None):
    """Keys and shapes of torchvision.models.resnet50/101().state_dict() (v1.5, Bottleneck)."""
    make = (lambda s: rng.standard_normal(s).astype(np.float32)) if rng else np.zeros
    state = {}

    def conv_bn(conv, bn, out_ch, in_ch, k):
        state[f"{conv}.weight"] = make((out_ch, in_ch, k, k))
        state[f"{bn}.weight"] = make((out_ch,)) + 1
        state[f"{bn}.bias"] = make((out_ch,))
        state[f"{bn}.running_mean"] = make((out_ch,))
        state[f"{bn}.running_var"] = np.abs(make((out_ch,))) + 0.5
        state[f"{bn}.num_batches_tracked"] = np.zeros((), np.int64)

    conv_bn("conv1", "bn1", 64, 3, 7)
    in_ch = 64
    for layer, count in enumerate(blocks, start=1):
        width = 64 * 2 ** (layer - 1)
        for b in range(count):
            p = f"layer{layer}.{b}"
            conv_bn(f"{p}.conv1", f"{p}.bn1", width, in_ch, 1)
            conv_bn(f"{p}.conv2", f"{p}.bn2", width, width, 3)
            conv_bn(f"{p}.conv3", f"{p}.bn3", 4 * width, width, 1)
            if b == 0:
                conv_bn(f"{p}.downsample.0", f"{p}.downsample.1", 4 * width, in_ch, 1)
            in_ch = 4 * width
    state["fc.weight"] = make((1000, 2048))
    state["fc.bias"] = make((1000,))
    return state


def numpy_conv_nchw(x, weight, stride, pad):
    """Cross-correlation as torch.nn.functional.conv2d: x [N, C, H, W], weight [O, C, k, k]."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = weight.shape[-1]
    out_h = (x.shape[2] - k) // stride + 1
    out_w = (x.shape[3] - k) // stride + 1
    out = np.zeros((x.shape[0], weight.shape[0], out_h, out_w), np.float64)
    for i in range(k):
        for j in range(k):
            patch = x[:, :, i : i + stride * out_h : stride, j : j + stride * out_w : stride]
            out += np.einsum("nchw,oc->nohw", patch, weight[:, :, i, j])
    return out


@pytest.fixture(scope="module")
def resnet50_state():
    rng = np.random.default_rng(0)
    state = torchvision_resnet_state_dict()
    for key in list(state):  # random values where the test looks, zeros elsewhere (fast)
        if key.startswith(("conv1.", "bn1.")) and "num_batches" not in key:
            state[key] = rng.standard_normal(state[key].shape).astype(np.float32)
    state["bn1.running_var"] = np.abs(state["bn1.running_var"]) + 0.5
    return state


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_resnet_stem_conv_and_bn(tmp_path, resnet50_state, suffix):
    path = tmp_path / f"resnet50{suffix}"
    if suffix == ".npz":
        np.savez(path, **resnet50_state)
    else:
        save_file(resnet50_state, str(path))
    imported = from_torch(path, "resnet50")
    assert imported.missing == ()
    assert set(imported.unexpected) == {"fc.weight", "fc.bias"}
    assert imported.backbone_kwargs == {"stride_in_1x1": False}

    rng = np.random.default_rng(1)
    x_nchw = rng.normal(size=(2, 3, 20, 23)).astype(np.float32)
    expected = numpy_conv_nchw(x_nchw, resnet50_state["conv1.weight"], stride=2, pad=3)
    stem = imported.variables["params"]["conv1"]
    ours = Conv2D(64, kernel_size=7, stride=2, padding="FIXED", use_bias=False).apply(
        {"params": stem["conv"]}, jnp.asarray(x_nchw.transpose(0, 2, 3, 1))
    )
    np.testing.assert_allclose(ours, expected.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    stats = imported.variables["batch_stats"]["conv1"]["bn"]
    np.testing.assert_array_equal(stats["mean"], resnet50_state["bn1.running_mean"])
    np.testing.assert_array_equal(stem["bn"]["scale"], resnet50_state["bn1.weight"])


def test_vgg16_bn_folds_conv_bias_and_fc6_reads_nchw_flattening():
    rng = np.random.default_rng(0)
    state = {}
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    conv_indices = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]  # torchvision vgg16_bn
    in_ch = 3
    for index, out_ch in zip(conv_indices, widths, strict=True):
        state[f"features.{index}.weight"] = np.zeros((out_ch, in_ch, 3, 3), np.float32)
        state[f"features.{index}.bias"] = np.zeros(out_ch, np.float32)
        for name in ("weight", "bias", "running_mean"):
            state[f"features.{index + 1}.{name}"] = np.zeros(out_ch, np.float32)
        state[f"features.{index + 1}.running_var"] = np.ones(out_ch, np.float32)
        in_ch = out_ch
    first = {
        "features.0.weight": (64, 3, 3, 3),
        "features.0.bias": (64,),
        "features.1.weight": (64,),
        "features.1.bias": (64,),
        "features.1.running_mean": (64,),
    }
    for key, shape in first.items():
        state[key] = rng.normal(size=shape).astype(np.float32)
    state["features.1.running_var"] = rng.uniform(0.5, 2, 64).astype(np.float32)
    # Random rows for 16 output units are enough to catch any permutation of the inputs.
    state["classifier.0.weight"] = np.zeros((4096, 25088), np.float32)
    state["classifier.0.weight"][:16] = rng.standard_normal((16, 25088), dtype=np.float32)
    state["classifier.0.bias"] = rng.standard_normal(4096, dtype=np.float32)
    state["classifier.3.weight"] = np.zeros((4096, 4096), np.float32)
    state["classifier.3.bias"] = np.zeros(4096, np.float32)

    imported = from_torch(state, "vgg16_bn")
    assert imported.missing == () and imported.unexpected == ()
    params, stats = imported.variables["params"], imported.variables["batch_stats"]

    # conv (with bias) -> BN (eps 1e-5) in numpy, NCHW; ours has no conv bias.
    x = rng.normal(size=(1, 3, 9, 11)).astype(np.float32)
    conv = numpy_conv_nchw(x, state["features.0.weight"], 1, 1)
    conv += state["features.0.bias"][:, None, None]
    bn = (conv - state["features.1.running_mean"][:, None, None]) / np.sqrt(
        state["features.1.running_var"][:, None, None] + 1e-5
    )
    expected = (
        bn * state["features.1.weight"][:, None, None] + state["features.1.bias"][:, None, None]
    )
    layer = {"params": params["conv1_1"], "batch_stats": stats["conv1_1"]}
    ours = ConvBN(64, activation=None).apply(layer, jnp.asarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(ours, expected.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)

    # fc6: torch flattens pool5 as (C, H, W); our 7x7 conv reads NHWC.
    pool5 = rng.normal(size=(2, 512, 7, 7)).astype(np.float32)
    fc6_torch = pool5.reshape(2, -1) @ state["classifier.0.weight"][:16].T
    fc6_torch += state["classifier.0.bias"][:16]
    ours = Conv2D(4096, kernel_size=7, padding="VALID").apply(
        {"params": params["fc6"]}, jnp.asarray(pool5.transpose(0, 2, 3, 1))
    )
    np.testing.assert_allclose(ours[:, 0, 0, :16], fc6_torch, rtol=1e-3, atol=1e-3)


def test_missing_unexpected_and_ignored_keys_are_named(resnet50_state):
    state = dict(resnet50_state)
    del state["layer4.2.conv3.weight"]
    state["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="layer4.2.conv3.weight.*extra.weight"):
        from_torch(state, "resnet50")
    imported = from_torch(state, "resnet50", strict=False)
    assert imported.missing == ("layer4.2.conv3.weight",)
    assert set(imported.unexpected) == {"extra.weight", "fc.weight", "fc.bias"}


def test_wrong_architecture_and_shapes(resnet50_state):
    with pytest.raises(ValueError, match="does not look like torchvision vgg16"):
        from_torch(resnet50_state, "vgg16")
    with pytest.raises(ValueError, match="missing.*layer3.6.conv1.weight"):
        from_torch(resnet50_state, "resnet101")
    state = dict(resnet50_state)
    state["layer1.0.conv2.weight"] = np.zeros((64, 64, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"layer1.0.conv2 -> stage1_block1/conv2/conv/kernel"):
        from_torch(state, "resnet50")


def test_pickle_checkpoints_are_refused(tmp_path):
    path = tmp_path / "resnet50.pth"
    path.write_bytes(b"not read")
    with pytest.raises(ValueError, match="pickle"):
        from_torch(path, "resnet50")


def test_load_into_deeplab_backbone(tmp_path, resnet50_state, caplog):
    path = tmp_path / "resnet50.npz"
    np.savez(path, **resnet50_state)
    model = DeepLabV3(backbone="resnet50")
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    loaded = load_pretrained(variables, path, "resnet50", strict=True)
    kernel = loaded["params"]["backbone"]["conv1"]["conv"]["kernel"]
    np.testing.assert_array_equal(kernel, resnet50_state["conv1.weight"].transpose(2, 3, 1, 0))
    # The head keeps its (here abstract) initial values.
    assert (
        loaded["params"]["aspp"]["project"]["conv"]["kernel"]
        is (variables["params"]["aspp"]["project"]["conv"]["kernel"])
    )

    imported = from_torch(resnet50_state, "resnet50")
    wrong = DeepLabV3(backbone="resnet101")
    wrong_vars = jax.eval_shape(wrong.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    with pytest.raises(ValueError, match="missing.*stage3_block7"):
        load_backbone(wrong_vars, imported, strict=True)
    with pytest.raises(ValueError, match="no 'encoder'"):
        load_backbone(variables, imported, path=("encoder",))
