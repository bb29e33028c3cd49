"""A run taken elsewhere: a ``transformers`` folder (``hf``) or an ONNX model (``onnx``), each
with the run's model card."""

from .bundle import EXPORT_FORMATS, export_run

__all__ = ["EXPORT_FORMATS", "export_run"]
