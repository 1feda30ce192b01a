"""The ``cpu`` backend: the activation functors of ``cuda/`` compiled for the host CPU.

``backend.py`` (CpuBackend: host arrays into the compiled module),
``build.py`` (which compiled module this CPU runs, and why none when none).
The C++ is in ``cuda/host/`` (engine, threads, Python bindings), built by
``setup.py`` when the package is installed.
"""
