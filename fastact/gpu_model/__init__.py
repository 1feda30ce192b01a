"""A static model of fastact's CUDA kernels on H100 and H200: SASS counted per element, no GPU needed.

    python -m fastact gpu-model [--arch 90] [--json FILE] [--dtype ...] [--kernel ...]
    python -m fastact.gpu_model ...   (the same)

What it does, per kernel launch the CUDA backend makes (``cases.py``: every
elementwise activation of the registry at its default parameters and with each
boolean parameter flipped, PReLU with a scalar, an NCHW and a channels-last
alpha, bias_act of every activation, softmax and log_softmax over rows of 1024
and 4096 and over the channels of an NCHW array; each in every dtype, forward
and backward, with the instantiation, vector width, index type, grid and
packed parameters that ``fastact/backends/kernels/plan.py`` picks for a
2^25-element aligned array):

1. compiles the instantiation with NVRTC for sm_<arch> through the backend's
   own ``compile_kernels`` (same source, options, name expressions) plus
   ``--ptxas-options=-v`` (registers, stack frame, spills), and disassembles the
   whole cubin (``compile_kernels`` reads all ``nvrtcGetCUBINSize`` bytes:
   CuPy's ``nvrtc.getCUBIN`` returns one byte less) with ``nvdisasm`` (PyPI
   ``nvidia-cuda-nvdisasm``).  Results are cached by a hash of the sources
   (``~/.cache/fastact/gpu-model``, ``FASTACT_GPU_MODEL_CACHE``);
2. finds the loops by back edges of the control-flow graph (an edge to a block
   that dominates its source) and takes the *steady-state loop*: among the
   loops the kernel's parameters let control reach (NVCC versions loops on
   parameters such as ``Relu::has_max``), the loop with a global load whose
   accesses are widest (the 16-byte vector loop, not its scalar tail), then
   with the most stores of that width (the compiler's 4x-unrolled grid-stride
   loop, not its remainder loop), then the innermost.  softmax takes its row
   loop; inside it, loops whose test the parameters decide (the chunk loops
   over a row of known length, the merge over a block's warps) run for their
   real trip count on the walk;
3. walks one iteration of it (``walk.walk``): branches on the kernel's
   parameters (``Relu::has_max``, ``Gelu::approximate``, the row length) are
   decided from the packed parameters in the constant bank and the integer
   arithmetic on known values (loop counters); every other branch
   inside the loop depends on the data (``isnan(x)``, the IEEE division's range
   check, ``x > 0``): it is counted as a *divergent branch* and the walk takes
   the fall-through side, except that it never takes the side of special
   operands (a test for NaN or infinity, an all-ones exponent field, FCHK: the
   side where such a test holds, e.g. log1p's fix-up for inf, laid out as the
   fall-through) nor a side calling an out-of-line routine (the division or
   reciprocal slow path, for denormal or huge operands).
   ``instructions_per_element_divergent`` adds the other sides (but the slow
   paths): what a warp issues when its lanes disagree at every such branch;
4. divides the path's instructions by the elements the iteration stores and
   classes them: fp32, fp16x2, fp64, mufu, conversion (F2F, F2FP, I2F, FRND,
   ``HADD2.F32`` from float16), integer, control (branches, BSSY/BSYNC,
   predicate logic), memory (global, shared, local and constant loads and
   stores), other (moves, constants, S2R, shuffles).  Every instruction on the
   path counts as issued once, predicated-off ones too.

The model (``hardware.py``), for each GPU:

    elements/s = min( copy_bandwidth / bytes_per_element,                     memory
                      SMs * clock * 4 * 32 * issue_efficiency / instructions,  issue
                      SMs * clock * 16 / MUFU instructions,                    MUFU pipe
                      SMs * clock * 64 / FP64 instructions,                    FP64 pipe
                      SMs * clock * 16 / 64-bit conversions )                  conversions to/from 64-bit
    predicted share of copy = min(1, elements/s / memory rate) * wave efficiency

* H100 and H200 (SXM): the same Hopper chip, 132 SMs, an SM clock of 1.98 GHz
  (the boost clock, read at 1980 MHz on a loaded H200), 4 warp instructions
  issued per clock per SM (one per scheduler), MUFU 16 lanes per clock per SM,
  FP64 64 lanes, conversions to or from 64-bit types 16 (the CUDA programming
  guide's throughput table for compute capability 9.0).
* issue efficiency 75%: the share of issue slots a streaming loop fills.
* copy bandwidth, counting bytes read plus written: 4.3 TB/s on the H200
  (a measured device-to-device copy; datasheet 4.8), 3.0 TB/s on the H100
  (assumed, not measured: 0.9 of its 3.35 TB/s datasheet figure, the ratio
  measured on the H200).
* bytes per element: the fewest the op must move (each input read once, the
  output written once): 2 x itemsize forward, 3 x itemsize backward; per-channel
  alpha and bias are not counted (they stay in cache).  softmax's second pass
  over a long row is assumed to hit L2 (a row is at most 32 KiB here), and so
  are the strided kernel's passes 2 and 3 over its tiles: the host sizes its
  grid so that the tiles resident at once take at most 36 MB of the 50 MB L2
  (plan.py: COLUMN_L2_BYTES; 34 MB for the model's rows of 256, both ways).
* wave efficiency: blocks resident per SM from registers (allocated in
  multiples of 8 per thread, 65536 per SM), 2048 threads and 32 blocks per SM;
  a grid of G equal blocks (the grid-stride loops split the work evenly) needs
  ceil(G / (resident * SMs)) waves, and the model charges G / (waves *
  resident * SMs): a kernel over 32 registers gets 6 of the 8 blocks per SM
  the launch sizes its grid for, and the last quarter of the work runs in a
  tail wave at a third of the occupancy (assumed to be at a third of the speed:
  few warps in flight cannot hide memory latency).  Likewise a grid smaller
  than one wave (the strided softmax over 2^17 rows: 512 blocks for 1056
  slots) is charged its share of the slots.

What it does not model: memory latency beyond the wave term, L1/L2 effects,
instruction latency chains (folded into the issue efficiency), the first and
last partial vectors, launch overhead.  A prediction is a lead, not a
measurement: check it on a GPU (``bench/``).
"""
