"""The label convention shared by data, losses, metrics and figures.

Labels are int32 class indices `0..C-1`; `IGNORE_LABEL` marks pixels without a label (object
borders in VOC, CamVid's void, the padding added by crops and eval batching). Losses average
over the other pixels and metrics do not count them.
"""

IGNORE_LABEL = 255
