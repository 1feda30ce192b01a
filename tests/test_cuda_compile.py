"""Every kernel instantiation compiles cleanly with NVRTC for sm_80 and sm_90, without spills.

Runs without a GPU: NVRTC (from CuPy's nvidia-cuda-nvrtc) compiles and
assembles for a named architecture.  Uses the same compile function and
options as the CUDA backend (fastact/backends/cuda/compile.py).
"""
from __future__ import annotations

import pytest

from fastact import cuda_check
from fastact.backends.kernels import plan as cuda_plan
from fastact.cuda_sources import MAIN_SOURCE, main_source, source_dir


def _nvrtc_reason() -> str | None:
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as error:  # CuPy or the NVRTC library missing
        return f"NVRTC unavailable: {type(error).__name__}: {error}"
    return None


needs_nvrtc = pytest.mark.skipif(_nvrtc_reason() is not None, reason=str(_nvrtc_reason()))


@needs_nvrtc
@pytest.mark.parametrize("arch", cuda_check.DEFAULT_ARCHS)
def test_every_instantiation_compiles_without_warnings_or_spills(arch):
    result = cuda_check.check([arch])
    assert result.problems == []
    expected = sum(len(cuda_plan.module_kernels(family, cuda_check._numpy_dtype(dtype)))
                   for family in cuda_plan.MODULE_FAMILIES for dtype in cuda_check.SUPPORTED_DTYPES)
    assert len(result.resources) == expected
    engine = [r for r in result.resources if any(k in r.kernel for k in ("activation_", "prelu_forward", "rowwise"))]
    assert engine and not any(r.spills or r.stack_bytes for r in engine)


def test_ptxas_report_parsing():
    log = (
        "ptxas info    : Compiling entry function '_Zk' for 'sm_80'\n"
        "ptxas info    : Function properties for _Zk\n"
        "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
        "ptxas info    : Used 40 registers, used 1 barriers\n"
    )
    [r] = cuda_check.parse_ptxas(log, {"_Zk": "fastact::k<float>"}, 80)
    assert (r.kernel, r.registers, r.stack_bytes, r.spill_store_bytes, r.spill_load_bytes) == ("fastact::k<float>", 40, 8, 4, 12)
    assert r.spills


def test_compiler_messages_name_the_real_source_file():
    first_line = main_source().splitlines()[0]
    assert first_line == f'#line 1 "{(source_dir() / MAIN_SOURCE).as_posix()}"'


@needs_nvrtc
def test_a_compile_error_is_reported_with_the_file_and_line(tmp_path, monkeypatch):
    from fastact.backends.cuda import compile as cuda_compile

    broken = tmp_path / MAIN_SOURCE
    broken.write_text((source_dir() / MAIN_SOURCE).read_text() + "\nthis is not C++;\n")
    monkeypatch.setattr(cuda_compile, "main_source", lambda: f'#line 1 "{broken.as_posix()}"\n' + broken.read_text())
    with pytest.raises(cuda_compile.CudaCompileError, match=rf"{broken.name}\(\d+\): error"):
        cuda_compile.compile_kernels([], "-arch=sm_80", "cubin")
