"""Every model family exports to ONNX and TFLite, and the files compute the model's outputs in
the runtimes that will run them: onnxruntime (dynamic batch of 2) and LiteRT's interpreter
(fixed batch 1), against the Flax model applied by JAX to the same uint8 images."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxseg import Segmenter
from jaxseg.export import onnx as onnx_format
from jaxseg.export import serving_graph
from jaxseg.export import tflite as tflite_format

pytest.importorskip("jax2onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("tensorflow")


def _cases():
    name = "jaxseg_export_test_cases"  # the module conftest.py loads, shared
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("cases.py"))
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


cases = _cases()
SIZE = cases.SIZE


@pytest.fixture(scope="module", params=cases.FAMILIES)
def family(request, tiny_vgg):
    """(name, serving graph, uint8 images [2, S, S, 3], reference logits [2, S, S, C])."""
    model = cases.families()[request.param]()
    variables = cases.random_variables(model, (1, SIZE, SIZE, 3), seed=len(request.param))
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    # The reference: the model as built (CPU conv forms included), applied by JAX.
    apply = jax.jit(lambda v, x: model.apply(v, cases.rescale(x.astype(np.float32)), train=False))
    reference = np.stack([np.asarray(apply(variables, im[None]))[0] for im in images])
    seg = Segmenter(model, variables, normalize=cases.rescale, class_names=cases.CLASS_NAMES)
    return request.param, serving_graph(seg, SIZE, SIZE), images, reference


def test_onnx_in_onnxruntime_with_a_dynamic_batch(family):
    import onnx

    name, graph, images, reference = family
    data = onnx_format.convert(graph, batch=None)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert model.graph.input[0].name == "images" and dims == ["batch", SIZE, SIZE, 3]
    assert [o.name for o in model.graph.output] == ["logits", "labels"]
    assert model.opset_import[0].version == onnx_format.DEFAULT_OPSET
    logits, labels = onnx_format.run(data, images)
    cases.assert_matches(logits, labels, reference)
    one, _ = onnx_format.run(data, images[1:])  # another batch size, same file
    np.testing.assert_allclose(one, logits[1:], rtol=0, atol=1e-5 * np.abs(logits).max())


def test_tflite_in_litert_at_a_fixed_batch(family):
    name, graph, images, reference = family
    data = tflite_format.convert(graph, batch=1)
    runner = tflite_format.Runner(data)
    details = runner.signature.get_input_details()["images"]
    assert list(details["shape"]) == [1, SIZE, SIZE, 3] and details["dtype"] == np.uint8
    logits, labels = runner(images)
    cases.assert_matches(logits, labels, reference)


def test_cpu_conv_forms_are_exported_as_the_reference_ones():
    """The CPU forms (1x1 convs as matmuls, taps, phase transposed convs) are swapped for the
    reference convs in the exported graph; the model itself is left as built."""
    from jaxseg.export import with_reference_convs
    from jaxseg.nn import conv_layers
    from jaxseg.ops import atrous_conv2d

    model = cases.families()["fcn8s"]()
    exported = with_reference_convs(model)
    reference, cpu = conv_layers("reference"), conv_layers("cpu")
    # Conv2D itself or a partial of it bound to the reference op: the same computation.
    assert getattr(exported.conv, "keywords", {}).get("op", atrous_conv2d) is atrous_conv2d
    assert exported.conv_transpose is reference.conv_transpose
    assert model.conv is cpu.conv and model.conv_transpose is cpu.conv_transpose
    plain = cases.families()["segnet"]()
    assert with_reference_convs(plain) is plain
