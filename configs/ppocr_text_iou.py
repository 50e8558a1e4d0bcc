"""Task score for PP-OCR text detection: does the candidate find text in the same places as the reference?

The detector's output is a text probability map; PP-OCR's DB post-processing binarises it at 0.3 before it
traces boxes. The score is the intersection-over-union of the two binarised maps (1.0 when neither finds any
text). The same shape as Polygraphy's --compare-func-script: (reference outputs, candidate outputs) -> score.
"""

import numpy as np

THRESHOLD = 0.3  # PP-OCR's det_db_thresh


def text_iou(reference, candidate):
    """{"text_iou": IoU of the two text masks} for one sample (higher is better)."""
    name = next(iter(reference))  # the detector has one output: the probability map
    ref = reference[name] > THRESHOLD
    cand = candidate[name] > THRESHOLD
    union = np.logical_or(ref, cand).sum()
    iou = 1.0 if union == 0 else float(np.logical_and(ref, cand).sum() / union)
    return {"text_iou": iou}
