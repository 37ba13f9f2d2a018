"""The runtime input pipeline: prepared TFDS splits -> decoded, augmented, batched examples.

`source` reads encoded examples, `transforms` holds the tf.data augmentation and normalisation,
`streams` turns a split into per-process training and evaluation batches.
"""

# TensorFlow starts here, quietly and without accelerators (it only feeds data).
from jaxseg.data import tf_setup  # noqa: F401, I001
from jaxseg.data.pipeline.streams import eval_pairs, eval_stream, train_stream

__all__ = ["eval_pairs", "eval_stream", "train_stream"]
