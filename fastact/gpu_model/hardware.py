"""The two GPUs of the model and the prediction itself (the model is written out in ``fastact/gpu_model/__init__.py``)."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str
    sms: int  # streaming multiprocessors
    clock_ghz: float  # SM clock under load
    copy_tbps: float  # device-to-device copy, bytes read + written, TB/s
    copy_measured: bool  # measured on such a GPU, or assumed
    issue_per_clock: int = 4  # warp instructions per clock per SM (4 schedulers, 1 each)
    mufu_per_clock: int = 16  # MUFU (ex2, rcp, lg2, ...) lanes per clock per SM
    fp64_per_clock: int = 64  # DFMA/DADD/DMUL lanes per clock per SM
    conversion64_per_clock: int = 16  # conversions to/from 64-bit types per clock per SM
    registers_per_sm: int = 65536
    threads_per_sm: int = 2048
    blocks_per_sm: int = 32


# Hopper (compute capability 9.0), SXM parts, 132 SMs each.  The clock is the
# 1980 MHz boost clock (read under load on an H200).  Copy bandwidth, bytes
# read + written: 4.3 TB/s on an H200 is a measured device-to-device copy (its
# datasheet says 4.8); 3.0 TB/s on an H100 is assumed (issue 11's figure: 0.9
# of its 3.35 TB/s datasheet, the ratio measured on the H200), not measured.
H100 = Gpu("H100", sms=132, clock_ghz=1.98, copy_tbps=3.0, copy_measured=False)
H200 = Gpu("H200", sms=132, clock_ghz=1.98, copy_tbps=4.3, copy_measured=True)
GPUS = (H100, H200)

# The issue efficiency: the share of the 4 issue slots per clock a
# memory-streaming loop of this kind fills (dependency stalls, the memory
# pipe's throttling, the loop's own branch); 75% as in the audit of issue 11.
ISSUE_EFFICIENCY = 0.75
REGISTER_GRANULE = 8  # registers are allocated per thread in multiples of 8 (256 per warp)


def resident_blocks(gpu: Gpu, registers: int, threads: int) -> int:
    """Blocks of ``threads`` that fit on one SM at once, limited by registers, threads and the block limit."""
    per_thread = max(REGISTER_GRANULE, math.ceil(registers / REGISTER_GRANULE) * REGISTER_GRANULE)
    by_registers = gpu.registers_per_sm // (per_thread * threads)
    return max(0, min(by_registers, gpu.threads_per_sm // threads, gpu.blocks_per_sm))


def wave_efficiency(gpu: Gpu, resident: int, grid: int) -> float:
    """Share of block slots busy over the waves a grid of equal blocks needs: grid / (waves * slots)."""
    slots = resident * gpu.sms
    if slots == 0:
        return 0.0
    waves = math.ceil(grid / slots)
    return grid / (waves * slots)


@dataclass(frozen=True)
class Prediction:
    share: float  # predicted share of copy bandwidth
    bound: str  # the smallest rate: "memory", "issue", "mufu", "fp64" or "conversion64"
    resident_blocks: int
    wave_efficiency: float


def predict(gpu: Gpu, *, instructions: float, mufu: float, fp64: float, conversions64: float, bytes_per_element: float,
            registers: int, threads: int, grid_blocks: int) -> Prediction:
    """Elements per second of each limit; the smallest over the copy rate, times the wave efficiency."""
    clock = gpu.sms * gpu.clock_ghz * 1e9  # SM-clocks per second
    rates = {
        "memory": gpu.copy_tbps * 1e12 / bytes_per_element,
        "issue": clock * gpu.issue_per_clock * 32 * ISSUE_EFFICIENCY / instructions if instructions else math.inf,
        "mufu": clock * gpu.mufu_per_clock / mufu if mufu else math.inf,
        "fp64": clock * gpu.fp64_per_clock / fp64 if fp64 else math.inf,
        "conversion64": clock * gpu.conversion64_per_clock / conversions64 if conversions64 else math.inf,
    }
    bound = min(rates, key=rates.get)
    resident = resident_blocks(gpu, registers, threads)
    waves = wave_efficiency(gpu, resident, grid_blocks)
    share = min(1.0, rates[bound] / rates["memory"]) * waves
    return Prediction(share, bound, resident, waves)
