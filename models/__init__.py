"""The model axis: what MODEL= and ENCODER= mean, how a model loads, and the backends that run it.

spec (ModelSpec: how a variant is trained and served) and registry (MODEL= names, `resolve` to a
ServedModel); encoders (ENCODER= sizes); loaders (ServedModel and one loader per serving form, with
dispatch_free and fusion for the adapter forms); backends (BACKEND= names) over base (the Backend
contract), pytorch_backend, onnx_backend, export; tokenizer, e5 and zoo_layout (what serving knows
of the zoos that the zoo/ package builds). Task facts (kind, labels) come from the task registry
(tasks/), never from here.
"""

from models import tokenizer as _tokenizer  # noqa: F401  (installs the false-warning filter)
