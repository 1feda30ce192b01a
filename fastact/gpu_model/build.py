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
    from ..backends.cuda.compile import compile_kernels, elf_size

    compiled = compile_kernels(names, f"-arch=sm_{arch}", "cubin", ["--ptxas-options=-v"])
    cubin = compiled.binary  # whole: compile_kernels reads it with nvrtcGetCUBINSize (see its cubin())
    if elf_size(cubin) != len(cubin):
        raise RuntimeError(f"the cubin is {len(cubin)} bytes, its ELF headers say {elf_size(cubin)}")
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
