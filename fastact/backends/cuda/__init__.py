"""The ``cuda`` backend: CuPy arrays, NVRTC-compiled kernels (``backend.py``, ``compile.py``).

Nothing is imported here, so ``import fastact`` never imports CuPy.
"""
