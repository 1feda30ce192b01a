"""float16 <-> float32 conversion by integer arithmetic, for the NumPy engine's 16-bit blocks.

NumPy's own float16 casts have no SIMD path on the x86 machines we measured
(0.33-0.54 ms to widen and 0.40-0.85 ms to narrow 256 Ki elements on the AMD
EPYC dev VM, 1.3-3 ns per element), which made float16 on the host run at
0.5 GB/s.  The same conversions written as a dozen vectorized integer ufuncs
over the block are exact and 2.5-3x (widen) and 1.3-1.7x (narrow) faster
there (``python bench/bench_half.py``).

Both follow the IEEE formats bit for bit: widening is exact, narrowing rounds
to nearest-even, overflows to inf, keeps NaN a NaN and keeps the sign of zero.
(Array constants, ``scratch.full_uint``, because np.maximum/np.minimum
with a scalar operand take a loop 2-3x slower than with two arrays.)
``tests/test_half.py`` checks every float16 value and the float32 values
around every float16 rounding boundary against NumPy's casts.
"""
from __future__ import annotations

import numpy as np

_F32_SCALE = np.float32(2.0**112)  # float16 exponent bias 15 -> float32 bias 127
_U32 = np.uint32


def widen(half: np.ndarray, out: np.ndarray, scratch) -> None:
    """out (float32) = half (float16), exactly.  ``scratch``: the engine's Scratch for out's shape.

    The magnitude bits shifted into float32 position read as a float32 that
    is 2**-112 times the value (subnormals included, as float32 subnormals);
    one float multiply by 2**112 rescales it exactly.  Infinities and NaN
    (exponent all ones) are patched only when the block has one.
    """
    work, sign = scratch.uint(0), scratch.uint(1)
    bits = half.view(np.uint16)
    np.copyto(work, bits)
    np.bitwise_and(work, _U32(0x7FFF), out=work)
    special = work.size and int(np.maximum.reduce(work, axis=None)) >= 0x7C00
    np.left_shift(work, _U32(13), out=work)
    np.multiply(work.view(np.float32), _F32_SCALE, out=out)
    out_bits = out.view(np.uint32)
    if special:
        inf_or_nan = work >= _U32(0x7C00 << 13)
        out_bits[inf_or_nan] = work[inf_or_nan] | _U32(0x7F800000)
    np.copyto(sign, bits)
    np.right_shift(sign, _U32(15), out=sign)
    np.left_shift(sign, _U32(31), out=sign)
    np.bitwise_or(out_bits, sign, out=out_bits)


def narrow(single: np.ndarray, out: np.ndarray, scratch) -> None:
    """out (float16) = single (float32, C-contiguous) rounded to nearest-even.

    ``scratch``: the engine's Scratch for single's shape.  Two candidate
    results, with no per-element branch:

    * normal: the float32 bits re-biased, with the dropped 13 bits rounded to
      nearest-even by adding 0xFFF plus the lowest kept bit (F. Giesen's
      float_to_half_rtne); the magnitude is first raised to 2**-14, so for
      smaller values this candidate is 0x0400;
    * subnormal: float32 addition of 0.5 rounds the value to a multiple of
      2**-24, the float16 subnormal spacing, in hardware; its bits minus those
      of 0.5 are the float16 bits.

    For values below 2**-14 the subnormal candidate is below 0x0400 and the
    smaller one wins; above, the subnormal candidate grows linearly with the
    value and the normal one logarithmically, so the normal one wins: the
    result is their minimum, capped at 0x7C00 (inf).  NaN is patched in only
    when the block has one.
    """
    work, other = scratch.uint(0), scratch.uint(1)
    bits = single.view(np.uint32)
    result = np.bitwise_and(bits, _U32(0x7FFFFFFF), out=work)  # the magnitude, for now
    has_nan = result.size and int(np.maximum.reduce(result, axis=None)) > 0x7F800000
    # Normal candidate.
    np.maximum(result, scratch.full_uint(0x38800000), out=result)  # at least 2**-14
    odd = np.right_shift(result, _U32(13), out=other)
    np.bitwise_and(odd, _U32(1), out=odd)
    np.add(result, odd, out=result)
    np.add(result, _U32((0xFFF - (112 << 23)) % (1 << 32)), out=result)
    np.right_shift(result, _U32(13), out=result)
    # Subnormal candidate: the magnitude as a float32, plus 0.5.
    subnormal = np.bitwise_and(bits, _U32(0x7FFFFFFF), out=other)
    with np.errstate(invalid="ignore"):  # NaN magnitudes: patched below
        np.add(subnormal.view(np.float32), np.float32(0.5), out=subnormal.view(np.float32))
    np.subtract(subnormal, _U32(0x3F000000), out=subnormal)
    np.minimum(result, subnormal, out=result)
    np.minimum(result, scratch.full_uint(0x7C00), out=result)
    # Sign, then NaN (quiet, with the payload's top bits, as NumPy's cast).
    sign = np.right_shift(bits, _U32(16), out=other)
    np.bitwise_and(sign, _U32(0x8000), out=sign)
    np.bitwise_or(result, sign, out=result)
    if has_nan:
        nan = np.isnan(single)
        payload = (bits[nan] & _U32(0x7FFFFF)) >> _U32(13)
        result[nan] = ((bits[nan] >> _U32(16)) & _U32(0x8000)) | _U32(0x7E00) | payload
    np.copyto(out.view(np.uint16), result, casting="unsafe")
