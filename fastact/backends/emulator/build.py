"""Build the CUDA kernels for the CPU emulator with g++ and load them with ctypes.

One shared library per (module family, dtype, planted-bug defines), built from
``cuda/kernels.cu`` plus ``cuda/emulator/cuda_shim.h`` and ``launcher.h``, and
cached under ``$FASTACT_EMULATOR_CACHE`` (default ``~/.cache/fastact/emulator``)
by a hash of the sources, the instantiations and the compiler command: a
rebuild happens only when a kernel source changes.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ...cuda_sources import MAIN_SOURCE, source_dir

# -Wno-unknown-pragmas: g++ does not know CUDA's #pragma unroll.
# -O1: the kernels are small and the suite compiles several libraries; -O2
# buys little here and costs CPU time shared with other jobs.  Aliasing is
# relaxed because the vector path reads T arrays through Vector<T, N>.
COMPILER_FLAGS = ("-std=c++17", "-O1", "-fPIC", "-shared", "-fno-strict-aliasing", "-Wall", "-Wno-unknown-pragmas", "-Werror")

_LaunchFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint),
                             ctypes.POINTER(ctypes.c_void_p))


class _Entry(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("launch", ctypes.c_void_p)]


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++")


def _cache_dir() -> Path:
    return Path(os.environ.get("FASTACT_EMULATOR_CACHE", Path.home() / ".cache" / "fastact" / "emulator"))


def translation_unit(kernels: Sequence[str], defines: Sequence[str], extra_code: str = "") -> str:
    """The C++ file compiled for the emulator: the real kernels, ``extra_code`` (tests' own kernels), launchers."""
    rows = ",\n".join(f'  {{"{k}", &fastact_emulator::launch<&{k}>}}' for k in kernels)
    return (
        "".join(f"#define {d} 1\n" for d in defines)
        + '#include "emulator/cuda_shim.h"\n'
        + f'#include "{MAIN_SOURCE}"\n'
        + extra_code
        + '#include "emulator/launcher.h"\n\n'
        + f'extern "C" const fastact_emulator::Entry fastact_emulator_kernels[] = {{\n{rows}\n}};\n'
        + f'extern "C" const int fastact_emulator_kernel_count = {len(kernels)};\n'
    )


def _source_digest() -> str:
    digest = hashlib.sha256()
    root = source_dir()
    for path in sorted([*root.glob("*.cu*"), *root.glob("emulator/*.h"), *root.glob("host/*.h")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build(kernels: Sequence[str], defines: Sequence[str] = (), extra_code: str = "") -> Path:
    """The path of the shared library with these instantiations, compiling it if not cached."""
    cxx = compiler()
    unit = translation_unit(kernels, defines, extra_code)
    key = hashlib.sha256("\0".join([_source_digest(), unit, cxx, *COMPILER_FLAGS]).encode()).hexdigest()[:24]
    library = _cache_dir() / f"fastact_emulator_{key}.so"
    if library.exists():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "emulated_kernels.cpp"
        source.write_text(unit)
        partial = Path(tmp) / library.name
        command = [cxx, *COMPILER_FLAGS, f"-I{source_dir()}", str(source), "-o", str(partial)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"emulator build failed: {' '.join(command)}\n{result.stderr}")
        os.replace(shutil.copy(partial, library.with_suffix(".tmp")), library)  # atomic for parallel runs
    return library


class EmulatedModule:
    """The kernels of one built library, launched like CUDA kernels."""

    def __init__(self, kernels: Sequence[str], defines: Sequence[str] = (), extra_code: str = ""):
        self._library = ctypes.CDLL(str(build(kernels, defines, extra_code)))
        count = ctypes.c_int.in_dll(self._library, "fastact_emulator_kernel_count").value
        table = (_Entry * count).in_dll(self._library, "fastact_emulator_kernels")
        self._kernels = {entry.name.decode(): _LaunchFn(entry.launch) for entry in table}
        self._library.fastact_emulator_error.restype = ctypes.c_char_p

    def launch(self, kernel: str, grid: Sequence[int], block: Sequence[int], args: Sequence) -> None:
        """Run ``kernel`` over ``grid`` x ``block``; args: NumPy arrays (by pointer) and NumPy scalars (by value)."""
        holders = [_argument(a) for a in args]
        pointers = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
        status = self._kernels[kernel](_dim3(grid), _dim3(block), pointers)
        if status != 0:
            raise RuntimeError(f"emulated kernel {kernel} failed: {self._library.fastact_emulator_error().decode()}")


def _dim3(sizes: Sequence[int]):
    padded = [*sizes, 1, 1][:3]
    return (ctypes.c_uint * 3)(*padded)


def _argument(value):
    """A ctypes object holding one kernel argument's bytes, as cuLaunchKernel expects them."""
    if isinstance(value, np.ndarray):
        return ctypes.c_void_p(value.__array_interface__["data"][0])
    if isinstance(value, np.generic):
        return ctypes.create_string_buffer(value.tobytes(), max(value.nbytes, 1))
    raise TypeError(f"unsupported kernel argument {type(value).__name__}")
