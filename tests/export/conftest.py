"""Fixtures of the export tests: narrow VGG16 blocks (helpers: cases.py)."""

import importlib.util
import sys
from pathlib import Path

import pytest


def load_cases():
    """cases.py as one module shared by the test files (they run with --import-mode=importlib,
    where a test folder is no package)."""
    name = "jaxseg_export_test_cases"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("cases.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def tiny_vgg():
    """VGG16 with narrow blocks while a test module runs (see cases.py): FCN, SegNet and
    DeepLab v1 keep their layers and operations at a fraction of the weights to convert. Module
    scope: the other test folders (parameter counts, weight import) see VGG16's own widths."""
    from jaxseg.backbones import vgg
    from jaxseg.models import segnet

    blocks = load_cases().TINY_VGG_BLOCKS
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vgg, "VGG16_BLOCKS", blocks)
        patch.setattr(segnet, "VGG16_BLOCKS", blocks)
        yield blocks
