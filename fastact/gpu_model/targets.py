"""The targets of issue 11, point 2, per row: the predicted share of copy each kind of kernel must reach on both GPUs.

* every elementwise activation, forward and backward, float16, bfloat16 and
  float32: >= 95% on H100 and H200;
* PReLU and bias_act, forward and backward (same dtypes): 16-byte vectors and
  >= 90%;
* softmax and log_softmax in float16 and bfloat16: >= 85%.

float64 rows and 32-bit softmax rows have no target (they are reported).
"""
from __future__ import annotations

TARGET_DTYPES = ("float16", "bfloat16", "float32")


def target(kernel: str, dtype: str) -> tuple[float, bool] | None:
    """(least predicted share, 16-byte vectors required) for a row's kernel label and dtype, or None."""
    if kernel.startswith(("softmax", "log_softmax")):
        return (0.85, False) if dtype in ("float16", "bfloat16") else None
    if dtype not in TARGET_DTYPES:
        return None
    if kernel.startswith(("prelu", "bias_act")):
        return 0.90, True
    return 0.95, False


def meets(row_json: dict) -> bool | None:
    """Whether a JSON row meets its target (None: no target)."""
    goal = target(row_json["kernel"], row_json["dtype"])
    if goal is None:
        return None
    share, vectors = goal
    if vectors and row_json["vector_bytes"] != 16:
        return False
    return all(value >= share for value in row_json["predicted"].values())
