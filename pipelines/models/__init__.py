"""Models: a config's ``model`` resolved to an ONNX file with its digest and summary (:mod:`.resolve`), the
summary itself (:mod:`.summary`), the builtin UNet (:mod:`.unet`) and the zoo of real models (:mod:`.zoo`)."""

from layerscope.pipelines.models.resolve import ResolvedModel, load_summary, model_path, resolve_model
from layerscope.pipelines.models.summary import ModelSummary, NodeInfo, TensorInfo

__all__ = ["ModelSummary", "NodeInfo", "ResolvedModel", "TensorInfo", "load_summary", "model_path", "resolve_model"]
