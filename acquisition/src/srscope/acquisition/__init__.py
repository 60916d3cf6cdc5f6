"""srscope acquisition: live super-resolution hooks for Micro-Manager that write OME-Zarr.

Depends on :mod:`srscope.runtime` only; never imports training code.
"""
