"""The ``numpy`` backend: host arrays in cache-sized blocks.

``backend.py`` (NumpyBackend), ``engine.py`` (blocks, scratch, threads),
``math.py`` (one forward/backward pair per kernel), ``fused.py`` (the fused
calls), ``half.py`` (float16 <-> float32 by integer arithmetic).
"""
