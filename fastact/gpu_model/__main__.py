"""``python -m fastact.gpu_model``: the same as ``python -m fastact gpu-model``."""
import sys

from .cli import main

sys.exit(main())
