"""Model zoo: registry of served models, backends (PyTorch, ONNX Runtime), export, training recipe."""

from models import tokenizer as _tokenizer  # noqa: F401  (installs the false-warning filter)
