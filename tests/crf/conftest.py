"""CRF tests import their inputs (`crf_inputs`: photos and degraded segmentations) from here."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
