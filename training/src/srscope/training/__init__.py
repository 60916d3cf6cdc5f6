"""srscope training: paired-data simulation and registration, GAN training, ONNX export, evaluation.

Depends on :mod:`srscope.runtime` (model card, I/O); nothing in the runtime or acquisition
packages imports from here.
"""
