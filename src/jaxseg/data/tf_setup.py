"""TensorFlow for the input pipeline, started quietly and without accelerators (`jaxseg.tf_quiet`).

The data package's TensorFlow parts (`jaxseg.data.builders`, `jaxseg.data.pipeline`) import
this module first; without TensorFlow installed it says which extra brings it.
"""

from jaxseg import tf_quiet

try:
    tf = tf_quiet.tensorflow()
except ModuleNotFoundError as err:  # `pip install jaxseg` alone has no TensorFlow
    raise ModuleNotFoundError(
        f"jaxseg.data needs TensorFlow and TFDS ({err}); install them with "
        "pip install 'jaxseg[data]' (or pip install -r requirements.txt in a checkout)",
        name=err.name,
    ) from err
