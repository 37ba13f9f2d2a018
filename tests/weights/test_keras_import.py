"""Keras application models (random weights, random BN statistics and conv biases so that
folding matters) converted to our backbones give the same feature maps to float32 tolerance."""

import types

import h5py
import jax
import numpy as np
import pytest

from jaxseg.backbones import VGG16, MobileNetV2, ResNet50
from jaxseg.nn import Conv2D
from jaxseg.weights import from_keras

keras = pytest.importorskip("keras")


def randomize_statistics(model, rng):
    """Random BN statistics/affine and conv biases (fresh Keras layers have 0/1 and zeros)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.1, mean.shape),
                    rng.uniform(0.5, 1.5, var.shape),
                ]
            )
        elif isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])


def keras_features(model, names, x):
    outputs = [model.get_layer(name).output for name in names]
    features = keras.Model(model.input, outputs)(x)
    if len(names) == 1:  # Keras returns a bare tensor for a single output
        features = [features]
    return [np.asarray(f) for f in features]


def test_resnet50_feature_maps_match_keras():
    rng = np.random.default_rng(0)
    reference = keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(64, 64, 3)
    )
    randomize_statistics(reference, rng)
    x = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
    names = ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]
    expected = keras_features(reference, names, x)

    imported = from_keras(reference, "resnet50")
    assert imported.missing == () and imported.unexpected == ()
    assert imported.backbone_kwargs == {"stride_in_1x1": True}
    ours = jax.jit(ResNet50(**imported.backbone_kwargs).apply)(imported.variables, x)
    for name, stage, want in zip(
        names, ["stage1", "stage2", "stage3", "stage4"], expected, strict=True
    ):
        np.testing.assert_allclose(ours[stage], want, rtol=1e-4, atol=1e-4, err_msg=name)

    with pytest.raises(ValueError, match="missing.*conv4_block7_1_conv"):
        from_keras(reference, "resnet101")


def write_legacy_weights_h5(path, model):
    """The layout of keras.applications' downloaded *_notop.h5 files (Keras 2 weight names)."""
    with h5py.File(path, "w") as file:
        names = [layer.name for layer in model.layers]
        file.attrs["layer_names"] = [name.encode() for name in names]
        for layer in model.layers:
            group = file.create_group(layer.name)
            weight_names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = [name.encode() for name in weight_names]
            for name, weight in zip(weight_names, layer.weights, strict=True):
                group.create_dataset(name, data=np.asarray(weight.numpy()))


def test_vgg16_feature_maps_and_fc_layers_match_keras(tmp_path):
    rng = np.random.default_rng(0)
    convs = keras.applications.VGG16(weights=None, include_top=False, input_shape=(64, 64, 3))
    x = rng.normal(size=(1, 64, 64, 3)).astype(np.float32) * 50
    names = [f"block{b}_pool" for b in range(1, 6)]
    expected = keras_features(convs, names, x)

    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_legacy_weights_h5(path, convs)
    notop = from_keras(path, "vgg16")
    assert notop.input_mode == "caffe"
    ours = jax.jit(VGG16().apply)(notop.variables, x)
    for b, want in enumerate(expected, start=1):
        np.testing.assert_allclose(ours[f"pool{b}"], want, rtol=1e-4, atol=1e-3)

    # The classifier's dense fc1/fc2 become the 7x7 fc6 / 1x1 fc7 convs.
    top = keras.Sequential(
        [
            keras.Input((7, 7, 512)),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(4096, activation="relu", name="fc1"),
            keras.layers.Dense(4096, name="fc2"),
        ]
    )
    pool5 = rng.normal(size=(2, 7, 7, 512)).astype(np.float32)
    want = np.asarray(top(pool5))
    imported = from_keras(types.SimpleNamespace(layers=convs.layers + top.layers), "vgg16")
    params = imported.variables["params"]
    fc6 = Conv2D(4096, kernel_size=7, padding="VALID").apply({"params": params["fc6"]}, pool5)
    fc7 = Conv2D(4096, kernel_size=1).apply({"params": params["fc7"]}, jax.nn.relu(fc6))
    np.testing.assert_allclose(fc7[:, 0, 0], want, rtol=1e-4, atol=1e-4)

    with pytest.raises(ValueError, match="does not look like Keras ResNet50"):
        from_keras(path, "resnet50")


def test_mobilenet_v2_from_saved_h5_matches_keras(tmp_path):
    rng = np.random.default_rng(0)
    reference = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(64, 64, 3)
    )
    randomize_statistics(reference, rng)
    x = rng.normal(size=(1, 64, 64, 3)).astype(np.float32)
    (expected,) = keras_features(reference, ["block_16_project_BN"], x)
    path = tmp_path / "mobilenet_v2.h5"
    reference.save(path)  # Keras 3 writes whole models to .h5 in the legacy layout

    imported = from_keras(path, "mobilenetv2")
    assert imported.missing == ()
    assert all(key.startswith(("Conv_1", "Conv_1_bn")) for key in imported.unexpected)
    ours = jax.jit(MobileNetV2().apply)(imported.variables, x)["out"]
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def test_keras_xception_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="not the aligned Xception-65"):
        from_keras("xception_weights.h5", "xception")
