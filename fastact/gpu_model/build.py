"""Compile kernel instantiations to cubin with NVRTC, disassemble them with nvdisasm, cache both.

The compile is the CUDA backend's own (``fastact.backends.cuda.compile.compile_kernels``:
the same source, options and name expressions), plus ``--ptxas-options=-v``
for the assembler's resource report, as ``fastact.cuda_check`` does.  No GPU
is needed.  Results are cached on disk by a hash of every kernel source file,
the names, the architecture and the NVRTC version, so a second run costs
only the analysis.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..cuda_sources import source_dir


class ToolMissing(RuntimeError):
    """CuPy's NVRTC or nvdisasm is not available here."""


def nvdisasm_path() -> str:
    """nvdisasm: $FASTACT_NVDISASM, the PyPI wheel nvidia-cuda-nvdisasm (nvidia/cu*/bin), or the PATH."""
    if env := os.environ.get("FASTACT_NVDISASM"):
        return env
    try:
        import nvidia  # namespace package of NVIDIA's wheels
    except ImportError:
        nvidia = None
    for root in getattr(nvidia, "__path__", []) if nvidia else []:
        for candidate in sorted(Path(root).glob("*/bin/nvdisasm"), reverse=True):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("nvdisasm")
    if found:
        return found
    raise ToolMissing("nvdisasm not found: pip install nvidia-cuda-nvdisasm (or set FASTACT_NVDISASM)")


def require_nvrtc() -> None:
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as error:  # ImportError, or CuPy without its NVRTC library
        raise ToolMissing(f"CuPy's NVRTC is not usable here ({error}): pip install cupy-cuda13x") from None


def repair_cubin(binary: bytes) -> bytes:
    """The cubin as NVRTC made it: CuPy's ``nvrtc.getCUBIN`` returns it one byte short.

    (CuPy sizes its copy as a C string, one byte less than NVRTC's
    ``nvrtcGetCUBINSize``.)  The ELF headers say where the file ends: the
    furthest end of the section headers, the program headers and every
    section's contents.  NVRTC's cubins end with the program headers, whose
    last byte is the high byte of the last ``p_align``: a zero.  Pad with
    zeros up to that end when exactly one byte is missing.
    """
    if binary[:4] != b"\x7fELF" or binary[4] != 2:
        raise ValueError("not a 64-bit ELF cubin")
    (phoff, shoff) = struct.unpack_from("<QQ", binary, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", binary, 0x36)
    end = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
    for k in range(shnum):
        header = shoff + k * shentsize
        if header + 0x28 > len(binary):
            continue
        (kind,) = struct.unpack_from("<I", binary, header + 4)
        offset, size = struct.unpack_from("<QQ", binary, header + 0x18)
        if kind != 8:  # SHT_NOBITS occupies no file bytes
            end = max(end, offset + size)
    missing = end - len(binary)
    if missing == 0:
        return binary
    if missing == 1:
        return binary + b"\x00"
    raise ValueError(f"cubin is {len(binary)} bytes, its ELF headers say {end}")


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(source_dir().rglob("*")):
        if path.suffix in (".cu", ".cuh", ".h") and "emulator" not in path.parts and "host" not in path.parts:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cache_dir() -> Path:
    root = os.environ.get("FASTACT_GPU_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fastact", "gpu-model")
    return Path(root)


@dataclass
class Built:
    names: list[str]
    lowered: dict  # name expression -> mangled symbol
    disassembly: str
    ptxas_log: str


def build(names: list[str], arch: int, use_cache: bool = True) -> Built:
    """Compile ``names`` (one module) for sm_<arch>, disassemble; cached by source hash."""
    from cupy.cuda import nvrtc

    key_text = json.dumps([_sources_digest(), sorted(names), arch, list(nvrtc.getVersion()), 1])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:32]
    path = cache_dir() / f"{key}.json"
    if use_cache and path.is_file():
        try:
            data = json.loads(path.read_text())
            return Built(data["names"], data["lowered"], data["disassembly"], data["ptxas_log"])
        except (OSError, ValueError, KeyError):
            pass
    from ..backends.cuda.compile import compile_kernels

    compiled = compile_kernels(names, f"-arch=sm_{arch}", "cubin", ["--ptxas-options=-v"])
    cubin = repair_cubin(compiled.binary)
    disassembly = disassemble(cubin)
    built = Built(list(names), dict(compiled.lowered_names), disassembly, compiled.log)
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(built.__dict__))
            tmp.replace(path)
        except OSError as error:  # a read-only home: run without the cache
            print(f"gpu-model: cannot write the cache ({error})", file=sys.stderr)
    return built


def disassemble(cubin: bytes) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".cubin") as handle:
        handle.write(cubin)
        handle.flush()
        result = subprocess.run([nvdisasm_path(), "-c", handle.name], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"nvdisasm failed: {result.stderr.strip()}")
    return result.stdout
