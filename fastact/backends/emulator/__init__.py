"""The test-only ``cuda-emulator`` backend: the CUDA sources built with g++ and run on the CPU.

``backend.py`` (EmulatorBackend), ``build.py`` (g++ build and ctypes loading).
"""
