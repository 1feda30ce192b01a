"""What the ``cuda`` and ``cuda-emulator`` backends share: the host side of the CUDA kernels.

``backend.py`` (KernelBackend: calls as kernel launches), ``fused.py`` (the
fused calls as launches and GEMMs), ``plan.py`` (instantiations, launch sizes,
functor packing).  No CuPy import here.
"""
