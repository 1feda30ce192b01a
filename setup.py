"""Builds the ``cpu`` backend's compiled module (everything else is in pyproject.toml).

The activation functors of ``cuda/`` are compiled for the host from
``cuda/host/module.cpp``, once per instruction set this machine's compiler can
target (x86-64: AVX-512, AVX2 and the x86-64 baseline; other CPUs: one
baseline build).  fastact picks the best one the CPU runs when it loads the
backend (``fastact/backends/cpu/build.py``).

Every build is optional: without a working C++ compiler the install still
succeeds, the ``cpu`` backend reports why it is unavailable
(``python -m fastact info``), and ``"auto"`` runs host arrays on ``numpy``.
"""
from __future__ import annotations

import os
import platform
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# -ffp-contract=off: no FMA contraction, so the ReLU family and PReLU round
# exactly as NumPy does (bit-for-bit agreement between backends).
# -fno-math-errno: math calls without errno, which lets g++ vectorize them
# (NaN and infinity keep their IEEE behaviour; this is not -ffast-math).
# -fopenmp-simd: honours `#pragma omp simd` without the OpenMP runtime.
COMPILE_ARGS = [
    "-std=c++17", "-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math",
    "-ffp-contract=off", "-fvisibility=hidden", "-Wno-unknown-pragmas",
    "--param=vect-max-peeling-for-alignment=0", "--param=vect-epilogues-nomask=0",
]
X86_ISAS = {
    "avx512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma", "-mf16c"],
    "avx2": ["-mavx2", "-mfma", "-mf16c"],
    "baseline": [],
}


def _glibc_has_vector_math() -> bool:
    """glibc's libmvec has every vector function the functors call (erfc, tanh, ...) from 2.35 on."""
    name, version = platform.libc_ver()
    if name != "glibc" or not version:
        return False
    major, minor = (int(p) for p in version.split(".")[:2])
    return (major, minor) >= (2, 35)


def extensions() -> list[Extension]:
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    isas = X86_ISAS if x86 else {"baseline": []}
    vector_math = x86 and sys.platform.startswith("linux") and _glibc_has_vector_math()
    built = []
    for isa, flags in isas.items():
        name = f"_engine_{isa}"
        built.append(Extension(
            f"fastact.backends.cpu.{name}",
            sources=["cuda/host/module.cpp"],
            depends=[os.path.join("cuda", p) for p in os.listdir("cuda") if p.endswith(".cuh")]
            + [os.path.join("cuda", "host", p) for p in os.listdir(os.path.join("cuda", "host"))],
            define_macros=[("FASTACT_MODULE_NAME", name), ("FASTACT_ISA", isa)]
            + ([("FASTACT_LIBMVEC", "1")] if vector_math else []),
            extra_compile_args=COMPILE_ARGS + flags,
            # dl: dlopen/dlsym, to run on PyTorch's OpenMP threads (cuda/host/thread_pool.h: use_openmp).
            libraries=(["mvec", "m"] if vector_math else []) + (["dl"] if sys.platform.startswith("linux") else []),
            language="c++",
            optional=True,
        ))
    return built


class BuildExt(build_ext):
    """Builds the instruction-set variants in parallel, and never with the C compiler's -O2 overriding ours."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        # Python's own CFLAGS (-O2 -g ...) come first on the command line; ours
        # follow and win.  -g only makes the wheel bigger.
        for attribute in ("compiler_so", "compiler_so_cxx"):
            command = getattr(self.compiler, attribute, None)
            if command:
                setattr(self.compiler, attribute, [a for a in command if a not in ("-g", "-O2", "-O3")])
        super().build_extensions()


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
