"""Native libraries built from ``csrc/`` and how to find them (the lowest layer: imports no other
part of clean_deploy).

``find_library(name, env)`` looks, in order, at ``$env``, the package's own ``lib/`` folder (where
a wheel puts the libraries) and the checkout's ``build/lib/`` (where ``bash scripts/build_csrc.sh``
puts them). :mod:`clean_deploy.native.kernels` is the ctypes binding of
``libclean_deploy_kernels.so`` (rulebooks, sparse conv forward/backward) used by training.
"""
from clean_deploy.native.library import BUILD_COMMAND, find_library

__all__ = ["BUILD_COMMAND", "find_library"]
