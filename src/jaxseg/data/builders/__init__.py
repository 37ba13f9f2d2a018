"""TFDS builders that prepare datasets once, from files on disk, into the data folder.

`voc` (VOC 2012 and train_aug with SBD), `camvid`, `ade20k` (ADE20K SceneParsing,
ADEChallengeData2016), `folder` (a user's images/ + masks/), with the host-side file readers and
checks they share (`readers`, `example_io`) and `downloads` (downloads off means off: a missing
`manual_dir` is listed, nothing is fetched).
"""

# TensorFlow starts here, quietly and without accelerators (it only feeds data).
from jaxseg.data import tf_setup  # noqa: F401, I001  (before TFDS loads TensorFlow)

# Each builder module registers its TFDS builder when imported, so `import jaxseg.data.builders`
# is what makes `tfds.builder("voc_segmentation/2012")` (and camvid, ade20k_scene_parsing) work.
from jaxseg.data.builders import ade20k, camvid, voc  # noqa: F401, E402
