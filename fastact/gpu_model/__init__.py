"""A static model of fastact's CUDA kernels on H100 and H200: no GPU needed.

    python -m fastact gpu-model [--arch 90] [--json FILE]
"""
