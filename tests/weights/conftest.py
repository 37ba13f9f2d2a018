"""Fixtures of the weight-import tests: the test-side Caffe encoders (`caffe_proto.py`)."""

import importlib.util
import pathlib
import sys

import pytest


def _caffe_proto():
    name = "jaxseg_tests_caffe_proto"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, pathlib.Path(__file__).with_name("caffe_proto.py")
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


@pytest.fixture(scope="session")
def caffe_proto():
    """The module: `messages()` (protobuf classes of a minimal caffe.proto), `write_caffemodel`."""
    return _caffe_proto()
