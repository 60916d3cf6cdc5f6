"""Shared image-analysis primitives (Gaussian fitting) used by registration, simulation checks and evaluation."""
