"""Shared fixtures: one small generated VOC tree (+SBD) built once per session with the real
``voc_segmentation`` builder through ``manual_dir``."""

import os

import pytest


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory):
    from jaxseg.data import demo

    root = tmp_path_factory.mktemp("voc")
    demo.write_voc_tree(
        root / "manual", num_train=12, num_val=7, seed=0, image_size=(48, 64), num_sbd=6
    )
    return root


def build(name: str, data_dir, manual_dir):
    """Prepare TFDS dataset ``name`` from ``manual_dir`` into ``data_dir``; returns the builder."""
    import tensorflow_datasets as tfds

    import jaxseg.data.builders  # noqa: F401  (registers the builders)

    builder = tfds.builder(name, data_dir=os.fspath(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))
    )
    return builder


@pytest.fixture(scope="session")
def voc_builder(voc_root):
    return build("voc_segmentation/2012", voc_root / "tfds", voc_root / "manual")


@pytest.fixture(scope="session")
def voc_aug_builder(voc_root):
    return build("voc_segmentation/2012_aug", voc_root / "tfds", voc_root / "manual")


@pytest.fixture(scope="session")
def build_dataset():
    """The :func:`build` helper, for tests that prepare their own (broken) trees."""
    return build
