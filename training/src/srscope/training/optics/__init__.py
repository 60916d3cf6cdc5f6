"""Optical models: point-spread functions used by the simulator and the deconvolution baselines."""
