"""The generic engine: config loading and validation, the stage graph, the artifact cache, execution and
the command line. It knows nothing about ONNX, precisions or metrics (those are in ``layerscope.pipelines``)."""
