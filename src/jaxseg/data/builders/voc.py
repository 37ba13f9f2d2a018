"""TFDS builder ``voc_segmentation``: PASCAL VOC 2012 semantic segmentation (+SBD).

Stock TFDS ``voc`` carries boxes only. After ``import jaxseg.data``::

    tfds.load("voc_segmentation/2012_aug", data_dir=DATA_DIR, download_and_prepare_kwargs={
        "download_config": tfds.download.DownloadConfig(manual_dir=MANUAL_DIR)})

Features: ``image`` (JPEG bytes as published, ``uint8 [H, W, 3]`` decoded), ``label`` (PNG,
``uint8 [H, W, 1]``, class index 0..20, 255 = ignore/object border), ``file_name``
(``"2007_000032.jpg"``). Splits: ``train``, ``validation`` and ``seg11valid`` (VOC2011 val
minus SBD train, 736 images, the FCN papers' evaluation set) in both configs (``train`` of
``2012_aug`` is the 10,582-image train_aug set; ``seg11valid`` is left out only for trees that
hold none of its images, such as the generated demo data). See ``voc_splits`` for how splits
are formed and ``voc_sources`` for where the raw files may live.
"""

import dataclasses

import tensorflow_datasets as tfds

from jaxseg.data.builders import downloads, example_io, voc_sources, voc_splits

NUM_CLASSES = 21

_CITATION = """\
@article{everingham2015pascal,
  title={The PASCAL Visual Object Classes Challenge: A Retrospective},
  author={Everingham, M. and Eslami, S. M. A. and Van Gool, L. and Williams, C. K. I. and
          Winn, J. and Zisserman, A.},
  journal={International Journal of Computer Vision}, volume={111}, pages={98--136}, year={2015}}
@inproceedings{hariharan2011semantic,
  title={Semantic contours from inverse detectors},
  author={Hariharan, B. and Arbel{\'a}ez, P. and Bourdev, L. and Maji, S. and Malik, J.},
  booktitle={ICCV}, year={2011}}
"""


@dataclasses.dataclass
class VocConfig(tfds.core.BuilderConfig):
    """``with_sbd``: build the train_aug training split from VOC + SBD (config ``2012_aug``)."""

    with_sbd: bool = False


class VocSegmentation(downloads.OneLinePreparation, tfds.core.GeneratorBasedBuilder):
    """PASCAL VOC 2012 segmentation; config ``2012`` or ``2012_aug`` (train_aug with SBD)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "VOC 2012 segmentation, optional SBD train_aug.",
        "1.1.0": "seg11valid split (VOC2011 val minus SBD train, 736 images; FCN protocol).",
    }
    BUILDER_CONFIGS = [
        VocConfig(
            name="2012", description="VOC2012 train 1,464 / validation 1,449 / seg11valid 736."
        ),
        VocConfig(
            name="2012_aug",
            with_sbd=True,
            description=(
                "train = VOC train + SBD - VOC val (10,582) / validation 1,449 / seg11valid 736."
            ),
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = voc_sources.INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "PASCAL VOC 2012 semantic segmentation, 21 classes (background + 20), "
                "255 marks object borders and ambiguous regions."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                    "file_name": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        sources = voc_sources.resolve_sources(dl_manager, need_extra=self.builder_config.with_sbd)
        items = voc_splits.split_items(sources, with_extra=self.builder_config.with_sbd)
        return {split: self._generate_examples(split_items) for split, split_items in items.items()}

    def _generate_examples(self, items: list[voc_splits.Item]):
        def build(item: voc_splits.Item):
            return item.name, example_io.make_example(item.image, item.label, NUM_CLASSES)

        yield from example_io.parallel_map(build, items)
