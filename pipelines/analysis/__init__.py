"""Analyses beyond per-layer metrics: error attribution, local vs inherited (:mod:`.attribution`), and the search
for a minimal set of layers to keep in FP32 (:mod:`.search`, behind ``layerscope fix``)."""
