"""Model zoo: registry of served models, backends (PyTorch, ONNX Runtime), export, training recipe."""
