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

import ctypes
import functools
import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
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
    """Compile kernels.cu with the named template instantiations for one architecture.

    Without ``extra_options`` the result is kept in the disk cache
    (:func:`cache_dir`) and read back from it by the next process that asks
    for the same module: a module takes seconds to compile.
    """
    options = [*base_options(), arch, *extra_options]
    path = None if extra_options else _cache_path(kernels, options, kind)
    if path is not None:
        cached = _read_cached(path, kind)
        if cached is not None:
            return cached
    compiled = _compile(kernels, options, kind)
    if path is not None:
        _write_cached(path, compiled)
    return compiled


def cache_dir() -> Path | None:
    """Where compiled modules are kept: ``$FASTACT_CUDA_CACHE``, by default ``~/.cache/fastact/cuda``;
    None (no disk cache) when that variable is set but empty."""
    configured = os.environ.get("FASTACT_CUDA_CACHE")
    if configured is not None:
        return Path(configured) if configured.strip() else None
    return Path.home() / ".cache" / "fastact" / "cuda"


def _cache_path(kernels: Sequence[str], options: Sequence[str], kind: str) -> Path | None:
    """The cache file of a module: named by a hash of every source file, the instantiations, the options
    (CuPy's include paths among them) and NVRTC's version, so any change compiles afresh."""
    from cupy.cuda import nvrtc

    directory = cache_dir()
    if directory is None:
        return None
    digest = hashlib.sha256()
    root = source_dir()
    for source in sorted([*root.glob("*.cu*"), *root.glob("*.h")]):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    for part in (main_source(), *kernels, "\0", *options, kind, repr(nvrtc.getVersion())):
        digest.update(part.encode() + b"\0")
    return directory / f"fastact_{digest.hexdigest()[:32]}.{kind}"


def _read_cached(path: Path, kind: str) -> CompiledModule | None:
    try:
        binary = path.read_bytes()
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    if not binary or meta.get("kind") != kind:
        return None
    return CompiledModule(binary, kind, meta["lowered_names"], meta.get("log", ""))


def _write_cached(path: Path, compiled: CompiledModule) -> None:
    """Binary then names, each written whole (another process may read or write the same module)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, data in ((path, compiled.binary), (path.with_suffix(".json"), json.dumps(
                {"kind": compiled.kind, "lowered_names": compiled.lowered_names, "log": compiled.log}).encode())):
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, target)
    except OSError:
        pass  # a read-only or full disk: the module is still compiled, just not kept


def _compile(kernels: Sequence[str], options: Sequence[str], kind: str) -> CompiledModule:
    from cupy.cuda import nvrtc

    program = nvrtc.createProgram(main_source(), str(source_dir() / MAIN_SOURCE), [], [])
    try:
        for name in kernels:
            nvrtc.addNameExpression(program, name)
        try:
            nvrtc.compileProgram(program, options)
        except nvrtc.NVRTCError as error:
            raise CudaCompileError(f"{error}\noptions: {' '.join(options)}\n{nvrtc.getProgramLog(program)}") from None
        lowered = {name: nvrtc.getLoweredName(program, name) for name in kernels}
        binary = cubin(program) if kind == "cubin" else bytes(nvrtc.getPTX(program))
        log = nvrtc.getProgramLog(program).strip().strip("\x00")
        return CompiledModule(binary, kind, lowered, log)
    finally:
        nvrtc.destroyProgram(program)


def cubin(program: int) -> bytes:
    """The CUBIN of a compiled NVRTC program, all ``nvrtcGetCUBINSize`` bytes of it.

    CuPy's ``nvrtc.getCUBIN`` returns one byte less than NVRTC's size (it drops
    the last byte, as if it were a string's terminating NUL), which cuts the
    ELF file short: its program header table ends on that byte.  Loading
    works only because that byte is a zero and Python's bytes end in a NUL.
    So the CUBIN is read here from the NVRTC library CuPy itself loaded,
    through ctypes; CuPy's bytes, padded with that zero, where that library
    cannot be found.
    """
    library = _nvrtc_library()
    if library is None:
        from cupy.cuda import nvrtc

        binary = bytes(nvrtc.getCUBIN(program))
        return binary + b"\x00" * (elf_size(binary) - len(binary))
    size = ctypes.c_size_t()
    _check(library, library.nvrtcGetCUBINSize(ctypes.c_void_p(program), ctypes.byref(size)))
    buffer = ctypes.create_string_buffer(size.value)
    _check(library, library.nvrtcGetCUBIN(ctypes.c_void_p(program), buffer))
    return buffer.raw


def elf_size(binary: bytes) -> int:
    """The size a 64-bit little-endian ELF file's headers say it has: the furthest end of its section
    header table, program header table and sections' contents (``len(binary)`` if not an ELF file)."""
    if len(binary) < 64 or binary[:6] != b"\x7fELF\x02\x01":
        return len(binary)
    phoff, shoff = struct.unpack_from("<QQ", binary, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", binary, 0x36)
    end = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
    for i in range(shnum):
        at = shoff + i * shentsize
        if at + 40 > len(binary):
            break
        _, kind, _, _, offset, size = struct.unpack_from("<IIQQQQ", binary, at)  # name, type, flags, addr, ...
        if kind != 8:  # SHT_NOBITS (.bss) takes no room in the file
            end = max(end, offset + size)
    return end


@functools.lru_cache(maxsize=None)
def _nvrtc_library():
    """The NVRTC shared library CuPy loaded (the same copy: program handles are its pointers), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "/libnvrtc.so" in line})
    except OSError:
        paths = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
            library.nvrtcGetCUBINSize, library.nvrtcGetCUBIN  # noqa: B018 (both must exist)
        except (OSError, AttributeError):
            continue
        library.nvrtcGetErrorString.restype = ctypes.c_char_p
        return library
    return None


def _check(library, status: int) -> None:
    if status != 0:
        raise CudaCompileError(f"NVRTC error {status}: {library.nvrtcGetErrorString(status).decode()}")
