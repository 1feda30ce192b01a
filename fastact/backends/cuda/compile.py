"""Compile fastact's kernels with NVRTC: one function for the backend and the compile check.

Why not ``cupy.RawModule(code=...)``: CuPy appends ``-ftz=true`` to every
RawModule/RawKernel compile, after the caller's options (and NVRTC honours
the last one).  Flushing subnormals to zero would make float32, float16 and
bfloat16 results differ from the NumPy backend on subnormal inputs (relu of
the smallest positive float32 would give 0), breaking the bit-for-bit
agreement the ReLU family promises.  So fastact compiles with NVRTC itself,
with CuPy's include paths and C++ standard and ``-ftz=false``, names the
template instantiations as RawModule's ``name_expressions`` do, and loads the
binary with ``cupy.cuda.function.Module``.  The compile check
(``python -m fastact.cuda_check``) calls the very same function.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ...cuda_sources import MAIN_SOURCE, main_source, source_dir


class CudaCompileError(RuntimeError):
    """NVRTC rejected the kernels; the message holds its log."""


@dataclass(frozen=True)
class CompiledModule:
    binary: bytes  # CUBIN for sm_XX, PTX for compute_XX
    kind: str  # "cubin" or "ptx"
    lowered_names: dict  # name expression -> mangled symbol
    log: str  # NVRTC's messages (warnings); empty when clean


def base_options() -> list[str]:
    """CuPy's include paths (CUDA headers for cuda_fp16.h/cuda_bf16.h) and C++17, our sources, IEEE subnormals."""
    own = ("-std=c++17", f"-I{source_dir()}")
    try:
        from cupy._core.core import assemble_cupy_compiler_options
    except ImportError:  # a CuPy without the helper: its documented CUDA_PATH layout
        import cupy

        return [*own, f"-I{cupy.cuda.get_cuda_path()}/include", "-ftz=false"]
    return [*assemble_cupy_compiler_options(own), "-ftz=false"]


def arch_option(compute_capability: int) -> tuple[str, str]:
    """(-arch option, binary kind): SASS for an arch NVRTC knows, else PTX for the newest it knows below it.

    CUBIN as CuPy does: PTX from a newer NVRTC may not load on an older driver.
    """
    from cupy.cuda import nvrtc

    supported = nvrtc.getSupportedArchs()
    if compute_capability in supported:
        return f"-arch=sm_{compute_capability}", "cubin"
    below = [a for a in supported if a <= compute_capability] or [min(supported)]
    return f"-arch=compute_{max(below)}", "ptx"


def compile_kernels(kernels: Sequence[str], arch: str, kind: str, extra_options: Sequence[str] = ()) -> CompiledModule:
    """Compile kernels.cu with the named template instantiations for one architecture."""
    from cupy.cuda import nvrtc

    options = [*base_options(), arch, *extra_options]
    program = nvrtc.createProgram(main_source(), str(source_dir() / MAIN_SOURCE), [], [])
    try:
        for name in kernels:
            nvrtc.addNameExpression(program, name)
        try:
            nvrtc.compileProgram(program, options)
        except nvrtc.NVRTCError as error:
            raise CudaCompileError(f"{error}\noptions: {' '.join(options)}\n{nvrtc.getProgramLog(program)}") from None
        lowered = {name: nvrtc.getLoweredName(program, name) for name in kernels}
        binary = nvrtc.getCUBIN(program) if kind == "cubin" else nvrtc.getPTX(program)
        log = nvrtc.getProgramLog(program).strip().strip("\x00")
        return CompiledModule(bytes(binary), kind, lowered, log)
    finally:
        nvrtc.destroyProgram(program)
