// The cpu backend's compiled module: fastact's device code built for the host.
//
// Built by setup.py once per instruction set (the module name says which:
// _engine_avx512, _engine_avx2, _engine_baseline); fastact/backends/cpu/build.py
// imports the best one this CPU runs.  The Python side
// (fastact/backends/cpu/backend.py) has already validated every call: it
// passes arrays (buffer protocol; bfloat16 viewed as uint16), the packed
// functor parameters (the same bytes the CUDA kernels receive), and plans.
// This file only checks what it needs not to crash (formats, shapes, sizes).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <type_traits>

#include "device.h"
#include "../activations.cuh"
#include "elementwise.h"
#include "channels.h"
#include "rowwise.h"
#include "conv.h"

#ifndef FASTACT_MODULE_NAME
#error "FASTACT_MODULE_NAME (the extension's name) must be defined by the build"
#endif
#define FASTACT_STRINGIFY2(x) #x
#define FASTACT_STRINGIFY(x) FASTACT_STRINGIFY2(x)
#define FASTACT_CONCAT2(a, b) a##b
#define FASTACT_CONCAT(a, b) FASTACT_CONCAT2(a, b)

namespace fastact_host {
namespace {

// ---- the functor table ---------------------------------------------------------
// Every functor of ../activations.cuh, under the C++ name the CUDA host code
// uses for it (fastact/backends/kernels/plan.py), so that Python finds each
// by the same key; a test checks that every functor it knows is here.
#define FASTACT_HOST_FUNCTORS(X) \
  X(Relu) X(Elu) X(Gelu) X(Sigmoid) X(Silu) X(Softplus) X(Tanh) X(HardSigmoid) X(HardSilu) X(Mish) X(Linear)

enum DType { kFloat16, kBFloat16, kFloat32, kFloat64, kDTypes };

template <DType D> struct StorageOf;
template <> struct StorageOf<kFloat16> { using type = __half; };
template <> struct StorageOf<kBFloat16> { using type = __nv_bfloat16; };
template <> struct StorageOf<kFloat32> { using type = float; };
template <> struct StorageOf<kFloat64> { using type = double; };

// A float buffer format -> dtype; bfloat16 arrives viewed as uint16 ('H').
int dtype_of(const Py_buffer& view) {
  const char* f = view.format ? view.format : "B";
  if (*f == '<' || *f == '=' || *f == '@') ++f;
  if (f[1] != '\0') return -1;
  switch (*f) {
    case 'e': return kFloat16;
    case 'H': return kBFloat16;
    case 'f': return kFloat32;
    case 'd': return kFloat64;
    default: return -1;
  }
}

// Buffers held for one call, released on every exit path.
struct Buffers {
  Py_buffer views[8];
  int count = 0;
  ~Buffers() {
    for (int i = 0; i < count; ++i) PyBuffer_Release(&views[i]);
  }
  // The buffer of `object`, writable or not; nullptr with a Python error set.
  Py_buffer* get(PyObject* object, bool writable) {
    Py_buffer* view = &views[count];
    const int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, view, flags) != 0) return nullptr;
    ++count;
    return view;
  }
};

// Fills `shape` and `operands` from views of one shape; false (a Python error
// set) when shapes or formats differ.
bool describe(Py_buffer* const* views, int count, int dtype, Shape& shape, Operand* operands, bool& flat, Index& n) {
  const Py_buffer& first = *views[0];
  if (first.ndim > kMaxDims) {
    PyErr_SetString(PyExc_ValueError, "too many dimensions");
    return false;
  }
  shape.ndim = first.ndim;
  n = 1;
  for (int k = 0; k < first.ndim; ++k) n *= shape.extent[k] = first.shape[k];
  bool c_order = true, f_order = true;
  for (int o = 0; o < count; ++o) {
    const Py_buffer& v = *views[o];
    if (dtype_of(v) != dtype || v.ndim != first.ndim) {
      PyErr_SetString(PyExc_ValueError, "operands differ in dtype or number of dimensions");
      return false;
    }
    for (int k = 0; k < v.ndim; ++k) {
      if (v.shape[k] != first.shape[k]) {
        PyErr_SetString(PyExc_ValueError, "operands differ in shape");
        return false;
      }
      operands[o].strides[k] = v.strides[k];
    }
    operands[o].data = static_cast<char*>(v.buf);
    c_order = c_order && PyBuffer_IsContiguous(&v, 'C');
    f_order = f_order && PyBuffer_IsContiguous(&v, 'F');
  }
  flat = c_order || f_order;
  return true;
}

// Runs `work` without the GIL when the call is big enough for that to matter.
template <typename Work>
void without_gil(Index n, const Work& work) {
  if (n < kChunk) {
    work();
    return;
  }
  Py_BEGIN_ALLOW_THREADS
  work();
  Py_END_ALLOW_THREADS
}

// ---- elementwise activations ----------------------------------------------------
using ElementwiseFn = void (*)(const char* params, Shape shape, Operand* operands, bool flat, Index n);

template <template <typename> class F, DType D, bool Backward>
void elementwise_entry(const char* params, Shape shape, Operand* operands, bool flat, Index n) {
  using T = typename StorageOf<D>::type;
  F<ComputeType<T>> activation;
  std::memcpy(static_cast<void*>(&activation), params, sizeof activation);
  with_form(activation, [&](const auto form) {
    if (Backward) {
      run_elementwise<T, 2>(shape, operands, flat, n, [form](T* out, const T* const* in, Index count) {
        backward_loop(form, out, in[0], in[1], count);
      });
    } else {
      run_elementwise<T, 1>(shape, operands, flat, n, [form](T* out, const T* const* in, Index count) {
        forward_loop(form, out, in[0], count);
      });
    }
  });
}

struct FunctorEntry {
  const char* name;
  std::size_t size[2];            // sizeof the functor for float and for double
  ElementwiseFn run[kDTypes][2];  // [dtype][backward]
};

template <template <typename> class F>
constexpr FunctorEntry functor_entry(const char* name) {
  return {name,
          {sizeof(F<float>), sizeof(F<double>)},
          {{elementwise_entry<F, kFloat16, false>, elementwise_entry<F, kFloat16, true>},
           {elementwise_entry<F, kBFloat16, false>, elementwise_entry<F, kBFloat16, true>},
           {elementwise_entry<F, kFloat32, false>, elementwise_entry<F, kFloat32, true>},
           {elementwise_entry<F, kFloat64, false>, elementwise_entry<F, kFloat64, true>}}};
}

#define FASTACT_FUNCTOR_ENTRY(F) functor_entry<fastact::F>("fastact::" #F),
const FunctorEntry kFunctors[] = {FASTACT_HOST_FUNCTORS(FASTACT_FUNCTOR_ENTRY)};
constexpr int kFunctorCount = sizeof kFunctors / sizeof kFunctors[0];

// The functor's packed parameters, checked against its C++ size; nullptr with an error set.
const char* functor_params(long index, int dtype, PyObject* params) {
  if (index < 0 || index >= kFunctorCount) {
    PyErr_SetString(PyExc_ValueError, "unknown functor index");
    return nullptr;
  }
  if (!PyBytes_Check(params)) {
    PyErr_SetString(PyExc_TypeError, "functor parameters must be bytes");
    return nullptr;
  }
  const std::size_t expected = kFunctors[index].size[dtype == kFloat64];
  if (static_cast<std::size_t>(PyBytes_GET_SIZE(params)) != expected) {
    PyErr_Format(PyExc_ValueError, "%s: %zd parameter bytes, the C++ functor has %zu", kFunctors[index].name,
                 PyBytes_GET_SIZE(params), expected);
    return nullptr;
  }
  return PyBytes_AS_STRING(params);
}

// elementwise(functor, backward, params, out, x) or (..., out, dy, x)
PyObject* elementwise(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 5 && nargs != 6) {
    PyErr_SetString(PyExc_TypeError, "elementwise(functor, backward, params, out, x) or (..., out, dy, x)");
    return nullptr;
  }
  const long index = PyLong_AsLong(args[0]);
  const int backward = PyObject_IsTrue(args[1]);
  if ((index == -1 || backward == -1) && PyErr_Occurred()) return nullptr;
  const int inputs = backward ? 2 : 1;
  if (nargs != 4 + inputs) {
    PyErr_SetString(PyExc_TypeError, "a forward takes (out, x), a backward (out, dy, x)");
    return nullptr;
  }
  Buffers buffers;
  Py_buffer* views[3];
  for (int o = 0; o <= inputs; ++o)
    if (!(views[o] = buffers.get(args[3 + o], o == 0))) return nullptr;
  const int dtype = dtype_of(*views[0]);
  if (dtype < 0) {
    PyErr_SetString(PyExc_TypeError, "unsupported buffer format");
    return nullptr;
  }
  const char* params = functor_params(index, dtype, args[2]);
  if (!params) return nullptr;
  Shape shape;
  Operand operands[3];
  bool flat;
  Index n;
  if (!describe(views, inputs + 1, dtype, shape, operands, flat, n)) return nullptr;
  if (n > 0) {
    const ElementwiseFn run = kFunctors[index].run[dtype][backward];
    without_gil(n, [&] { run(params, shape, operands, flat, n); });
  }
  Py_RETURN_NONE;
}

// The raw addresses (Python ints) args[first] ... args[first + count - 1] of the *_pointers
// calls; false with an error set.
bool addresses_of(PyObject* const* args, Py_ssize_t first, int count, void** addresses) {
  for (int o = 0; o < count; ++o) {
    addresses[o] = PyLong_AsVoidPtr(args[first + o]);
    if (!addresses[o] && PyErr_Occurred()) return false;
  }
  return true;
}

// elementwise_pointers(functor, backward, params, dtype, n, out, x) or (..., out, dy, x):
// the same computation on n contiguous elements at raw addresses (ints), for
// callers that already checked the memory (fastact/torch: contiguous CPU
// tensors of one dtype, out freshly allocated), so no buffer views are built.
PyObject* elementwise_pointers(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 7 && nargs != 8) {
    PyErr_SetString(PyExc_TypeError,
                    "elementwise_pointers(functor, backward, params, dtype, n, out, x) or (..., out, dy, x)");
    return nullptr;
  }
  const long index = PyLong_AsLong(args[0]);
  const int backward = PyObject_IsTrue(args[1]);
  const long dtype = PyLong_AsLong(args[3]);
  const long long n = PyLong_AsLongLong(args[4]);
  if ((index == -1 || backward == -1 || dtype == -1 || n == -1) && PyErr_Occurred()) return nullptr;
  const int inputs = backward ? 2 : 1;
  if (nargs != 6 + inputs) {
    PyErr_SetString(PyExc_TypeError, "a forward takes (out, x), a backward (out, dy, x)");
    return nullptr;
  }
  if (dtype < 0 || dtype >= kDTypes || n < 0) {
    PyErr_SetString(PyExc_ValueError, "elementwise_pointers: bad dtype code or element count");
    return nullptr;
  }
  const char* params = functor_params(index, static_cast<int>(dtype), args[2]);
  if (!params) return nullptr;
  static const Index kItemSize[kDTypes] = {2, 2, 4, 8};
  Shape shape;
  shape.ndim = 1;
  shape.extent[0] = static_cast<Index>(n);
  Operand operands[3];
  void* addresses[3];
  if (!addresses_of(args, 5, inputs + 1, addresses)) return nullptr;
  for (int o = 0; o <= inputs; ++o) {
    operands[o].data = static_cast<char*>(addresses[o]);
    operands[o].strides[0] = kItemSize[dtype];
  }
  if (n > 0) {
    const ElementwiseFn run = kFunctors[index].run[dtype][backward];
    without_gil(static_cast<Index>(n), [&] { run(params, shape, operands, true, static_cast<Index>(n)); });
  }
  Py_RETURN_NONE;
}

// ---- helpers for the calls on C-contiguous plans --------------------------------
template <typename T> struct Tag { using type = T; };

// visit(Tag<storage type>) for a dtype code.
template <typename Visit>
void with_storage(int dtype, const Visit& visit) {
  switch (dtype) {
    case kFloat16: visit(Tag<__half>{}); break;
    case kBFloat16: visit(Tag<__nv_bfloat16>{}); break;
    case kFloat32: visit(Tag<float>{}); break;
    default: visit(Tag<double>{}); break;
  }
}

template <template <typename> class F> struct FunctorTag {
  template <typename C> using type = F<C>;
};

// visit(FunctorTag<functor template>) for the functor numbered `index`.
template <typename Visit>
void with_functor(long index, const Visit& visit) {
  long i = 0;
#define FASTACT_VISIT_FUNCTOR(F) \
  if (index == i++) visit(FunctorTag<fastact::F>{});
  FASTACT_HOST_FUNCTORS(FASTACT_VISIT_FUNCTOR)
#undef FASTACT_VISIT_FUNCTOR
}

// Reads the integer arguments args[first ..]; false with an error set.
bool indices(PyObject* const* args, int first, int count, Index* values) {
  for (int k = 0; k < count; ++k) {
    values[k] = PyLong_AsLongLong(args[first + k]);
    if (values[k] == -1 && PyErr_Occurred()) return false;
    if (values[k] < 0) {
      PyErr_SetString(PyExc_ValueError, "negative size");
      return false;
    }
  }
  return true;
}

// C-contiguous buffers: `arrays` of the data dtype with n elements each,
// `values` of the compute type with `channels` elements, an optional float64
// `sums` of `channels` elements (view index of each given; -1: absent).
bool check_plan(Py_buffer* const* views, int arrays, int values, int sums, Index n, Index channels, int& dtype) {
  dtype = dtype_of(*views[0]);
  for (int k = 0; k < arrays; ++k) {
    const Py_buffer& v = *views[k];
    if (dtype < 0 || dtype_of(v) != dtype || !PyBuffer_IsContiguous(&v, 'C') || v.len != n * v.itemsize) {
      PyErr_SetString(PyExc_ValueError, "arrays must be C-contiguous, of one float dtype, with outer*channels*inner elements");
      return false;
    }
  }
  const int compute = dtype == kFloat64 ? kFloat64 : kFloat32;
  for (int k : {values, sums}) {
    if (k < 0) continue;
    const Py_buffer& v = *views[k];
    const int want = k == sums ? kFloat64 : compute;
    if (dtype_of(v) != want || !PyBuffer_IsContiguous(&v, 'C') || v.len != channels * v.itemsize) {
      PyErr_SetString(PyExc_ValueError, "per-channel values and sums must be C-contiguous, compute-type (sums: float64), one per channel");
      return false;
    }
  }
  return true;
}

// ---- PReLU and bias_act -------------------------------------------------------------
// prelu_forward(out, x, alpha, outer, channels, inner)
PyObject* prelu_forward(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 6) return PyErr_Format(PyExc_TypeError, "prelu_forward takes 6 arguments");
  Buffers buffers;
  Py_buffer* views[3];
  for (int k = 0; k < 3; ++k)
    if (!(views[k] = buffers.get(args[k], k == 0))) return nullptr;
  Index size[3];
  if (!indices(args, 3, 3, size)) return nullptr;
  int dtype;
  if (!check_plan(views, 2, 2, -1, size[0] * size[1] * size[2], size[1], dtype)) return nullptr;
  const ChannelGrid grid(size[0], size[1], size[2], kMaxPartials);
  with_storage(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    without_gil(size[0] * size[1] * size[2], [&] {
      channel_forward(grid, static_cast<T*>(views[0]->buf), static_cast<const T*>(views[1]->buf),
                      static_cast<const ComputeType<T>*>(views[2]->buf), PreluForward{});
    });
  });
  Py_RETURN_NONE;
}

// prelu_backward(dx, dy, x, alpha, dalpha, outer, channels, inner)
PyObject* prelu_backward(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 8) return PyErr_Format(PyExc_TypeError, "prelu_backward takes 8 arguments");
  Buffers buffers;
  Py_buffer* views[5];
  for (int k = 0; k < 5; ++k)
    if (!(views[k] = buffers.get(args[k], k == 0 || k == 4))) return nullptr;
  Index size[3];
  if (!indices(args, 5, 3, size)) return nullptr;
  int dtype;
  if (!check_plan(views, 3, 3, 4, size[0] * size[1] * size[2], size[1], dtype)) return nullptr;
  const ChannelGrid grid(size[0], size[1], size[2], kMaxPartials);
  with_storage(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    without_gil(size[0] * size[1] * size[2], [&] {
      channel_backward(grid, static_cast<T*>(views[0]->buf), static_cast<const T*>(views[1]->buf),
                       static_cast<const T*>(views[2]->buf), static_cast<const ComputeType<T>*>(views[3]->buf),
                       static_cast<double*>(views[4]->buf), PreluBackward{});
    });
  });
  Py_RETURN_NONE;
}

// bias_act_forward(functor, params, out, x, bias, outer, channels, inner)
PyObject* bias_act_forward(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 8) return PyErr_Format(PyExc_TypeError, "bias_act_forward takes 8 arguments");
  const long index = PyLong_AsLong(args[0]);
  if (index == -1 && PyErr_Occurred()) return nullptr;
  Buffers buffers;
  Py_buffer* views[3];
  for (int k = 0; k < 3; ++k)
    if (!(views[k] = buffers.get(args[2 + k], k == 0))) return nullptr;
  Index size[3];
  if (!indices(args, 5, 3, size)) return nullptr;
  int dtype;
  if (!check_plan(views, 2, 2, -1, size[0] * size[1] * size[2], size[1], dtype)) return nullptr;
  const char* params = functor_params(index, dtype, args[1]);
  if (!params) return nullptr;
  const ChannelGrid grid(size[0], size[1], size[2], kMaxPartials);
  with_storage(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_functor(index, [&](auto functor) {
      using Activation = typename decltype(functor)::template type<ComputeType<T>>;
      Activation activation;
      std::memcpy(static_cast<void*>(&activation), params, sizeof activation);
      with_form(activation, [&](const auto form) {
        const BiasActForward<std::decay_t<decltype(form)>> op{form};
        without_gil(size[0] * size[1] * size[2], [&] {
          channel_forward(grid, static_cast<T*>(views[0]->buf), static_cast<const T*>(views[1]->buf),
                          static_cast<const ComputeType<T>*>(views[2]->buf), op);
        });
      });
    });
  });
  Py_RETURN_NONE;
}

// bias_act_backward(functor, params, dx, dy, x, bias, dbias, outer, channels, inner)
PyObject* bias_act_backward(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 10) return PyErr_Format(PyExc_TypeError, "bias_act_backward takes 10 arguments");
  const long index = PyLong_AsLong(args[0]);
  if (index == -1 && PyErr_Occurred()) return nullptr;
  Buffers buffers;
  Py_buffer* views[5];
  for (int k = 0; k < 5; ++k)
    if (!(views[k] = buffers.get(args[2 + k], k == 0 || k == 4))) return nullptr;
  Index size[3];
  if (!indices(args, 7, 3, size)) return nullptr;
  int dtype;
  if (!check_plan(views, 3, 3, 4, size[0] * size[1] * size[2], size[1], dtype)) return nullptr;
  const char* params = functor_params(index, dtype, args[1]);
  if (!params) return nullptr;
  const ChannelGrid grid(size[0], size[1], size[2], kMaxPartials);
  with_storage(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_functor(index, [&](auto functor) {
      using Activation = typename decltype(functor)::template type<ComputeType<T>>;
      Activation activation;
      std::memcpy(static_cast<void*>(&activation), params, sizeof activation);
      with_form(activation, [&](const auto form) {
        const BiasActBackward<std::decay_t<decltype(form)>> op{form};
        without_gil(size[0] * size[1] * size[2], [&] {
          channel_backward(grid, static_cast<T*>(views[0]->buf), static_cast<const T*>(views[1]->buf),
                           static_cast<const T*>(views[2]->buf), static_cast<const ComputeType<T>*>(views[3]->buf),
                           static_cast<double*>(views[4]->buf), op);
        });
      });
    });
  });
  Py_RETURN_NONE;
}

// ---- softmax rows ---------------------------------------------------------------------
// op 0 (softmax) or 1 (log_softmax), forward or backward (dy), on `count` C-contiguous rows of
// `length` elements of storage type `dtype` (rowwise and rowwise_pointers).
void run_rows(int dtype, long op, bool backward, void* out_memory, const void* x_memory, const void* dy_memory,
              Index count, Index length) {
  with_storage(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = ComputeType<T>;
    T* out = static_cast<T*>(out_memory);
    const T* x = static_cast<const T*>(x_memory);
    const T* dy = static_cast<const T*>(dy_memory);
    without_gil(count * length, [&] {
      if (op == 0 && !backward) rows<fastact::SoftmaxForward<C>>(out, x, dy, count, length);
      if (op == 1 && !backward) rows<fastact::LogSoftmaxForward<C>>(out, x, dy, count, length);
      if (op == 0 && backward) rows<fastact::SoftmaxBackward<C>>(out, x, dy, count, length);
      if (op == 1 && backward) rows<fastact::LogSoftmaxBackward<C>>(out, x, dy, count, length);
    });
  });
}

// rowwise(op, backward, out, dy, x, rows, length): op 0 softmax, 1 log_softmax; dy None for a forward.
PyObject* rowwise(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 7) return PyErr_Format(PyExc_TypeError, "rowwise takes 7 arguments");
  const long op = PyLong_AsLong(args[0]);
  const int backward = PyObject_IsTrue(args[1]);
  if ((op == -1 || backward == -1) && PyErr_Occurred()) return nullptr;
  if (op != 0 && op != 1) return PyErr_Format(PyExc_ValueError, "rowwise op must be 0 (softmax) or 1 (log_softmax)");
  Buffers buffers;
  Py_buffer* views[3];
  int count = 0;
  for (int k : {2, 4, 3}) {  // out, x, then dy (backward only)
    if (k == 3 && !backward) continue;
    if (!(views[count++] = buffers.get(args[k], k == 2))) return nullptr;
  }
  Index size[2];
  if (!indices(args, 5, 2, size)) return nullptr;
  int dtype;
  if (!check_plan(views, count, -1, -1, size[0] * size[1], 0, dtype)) return nullptr;
  run_rows(dtype, op, backward, views[0]->buf, views[1]->buf, backward ? views[2]->buf : nullptr, size[0], size[1]);
  Py_RETURN_NONE;
}

// rowwise_pointers(op, backward, dtype, rows, length, out, x) or (..., out, x, dy): the same
// computation on C-contiguous rows at raw addresses (ints), for callers that checked the memory
// themselves (fastact/torch: contiguous CPU tensors of one dtype, out freshly allocated).
PyObject* rowwise_pointers(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 7 && nargs != 8) {
    PyErr_SetString(PyExc_TypeError,
                    "rowwise_pointers(op, backward, dtype, rows, length, out, x) or (..., out, x, dy)");
    return nullptr;
  }
  const long op = PyLong_AsLong(args[0]);
  const int backward = PyObject_IsTrue(args[1]);
  const long dtype = PyLong_AsLong(args[2]);
  if ((op == -1 || backward == -1 || dtype == -1) && PyErr_Occurred()) return nullptr;
  if (op != 0 && op != 1) return PyErr_Format(PyExc_ValueError, "rowwise op must be 0 (softmax) or 1 (log_softmax)");
  if (nargs != 7 + backward) {
    PyErr_SetString(PyExc_TypeError, "a forward takes (out, x), a backward (out, x, dy)");
    return nullptr;
  }
  Index size[2];
  if (!indices(args, 3, 2, size)) return nullptr;
  if (dtype < 0 || dtype >= kDTypes || size[0] < 0 || size[1] < 0) {
    PyErr_SetString(PyExc_ValueError, "rowwise_pointers: bad dtype code or sizes");
    return nullptr;
  }
  void* addresses[3] = {nullptr, nullptr, nullptr};
  if (!addresses_of(args, 5, 2 + backward, addresses)) return nullptr;
  if (size[0] * size[1] == 0) Py_RETURN_NONE;
  run_rows(static_cast<int>(dtype), op, backward, addresses[0], addresses[1], addresses[2], size[0], size[1]);
  Py_RETURN_NONE;
}

// prelu_pointers(dtype, outer, channels, inner, out, x, slopes) or
// (dtype, outer, channels, inner, dx, dy, x, slopes, dalpha): prelu_forward / prelu_backward on
// C-contiguous memory at raw addresses (slopes in the compute type, one per channel; dalpha the
// float64 sums per channel), for callers that checked the memory themselves (fastact/torch).
PyObject* prelu_pointers(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 7 && nargs != 9) {
    PyErr_SetString(PyExc_TypeError, "prelu_pointers(dtype, outer, channels, inner, out, x, slopes) or "
                                     "(dtype, outer, channels, inner, dx, dy, x, slopes, dalpha)");
    return nullptr;
  }
  const long dtype = PyLong_AsLong(args[0]);
  if (dtype == -1 && PyErr_Occurred()) return nullptr;
  Index size[3];
  if (!indices(args, 1, 3, size)) return nullptr;
  if (dtype < 0 || dtype >= kDTypes || size[0] < 0 || size[1] < 1 || size[2] < 0) {
    PyErr_SetString(PyExc_ValueError, "prelu_pointers: bad dtype code or sizes");
    return nullptr;
  }
  void* addresses[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
  if (!addresses_of(args, 4, static_cast<int>(nargs - 4), addresses)) return nullptr;
  const Index n = size[0] * size[1] * size[2];
  if (n == 0) Py_RETURN_NONE;
  const ChannelGrid grid(size[0], size[1], size[2], kMaxPartials);
  with_storage(static_cast<int>(dtype), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = ComputeType<T>;
    without_gil(n, [&] {
      if (nargs == 7)
        channel_forward(grid, static_cast<T*>(addresses[0]), static_cast<const T*>(addresses[1]),
                        static_cast<const C*>(addresses[2]), PreluForward{});
      else
        channel_backward(grid, static_cast<T*>(addresses[0]), static_cast<const T*>(addresses[1]),
                         static_cast<const T*>(addresses[2]), static_cast<const C*>(addresses[3]),
                         static_cast<double*>(addresses[4]), PreluBackward{});
    });
  });
  Py_RETURN_NONE;
}

// bias_act_pointers(functor, params, dtype, outer, channels, inner, out, x, bias) or
// (functor, params, dtype, outer, channels, inner, dx, dy, x, bias, dbias): bias_act_forward /
// bias_act_backward on C-contiguous float32/float64 memory at raw addresses (bias one value per
// channel in that dtype; dbias written in that dtype, summed in double as bias_act_backward
// sums), for callers that checked the memory themselves (fastact/torch's fused epilogue).
PyObject* bias_act_pointers(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 9 && nargs != 11) {
    PyErr_SetString(PyExc_TypeError, "bias_act_pointers(functor, params, dtype, outer, channels, inner, out, x, bias) "
                                     "or (..., dx, dy, x, bias, dbias)");
    return nullptr;
  }
  const long index = PyLong_AsLong(args[0]);
  if (index == -1 && PyErr_Occurred()) return nullptr;
  const long dtype = PyLong_AsLong(args[2]);
  if (dtype == -1 && PyErr_Occurred()) return nullptr;
  Index size[3];
  if (!indices(args, 3, 3, size)) return nullptr;
  if ((dtype != kFloat32 && dtype != kFloat64) || size[0] < 0 || size[1] < 1 || size[2] < 0) {
    PyErr_SetString(PyExc_ValueError, "bias_act_pointers: float32/float64 only, sizes >= 0 and channels >= 1");
    return nullptr;
  }
  const char* params = functor_params(index, static_cast<int>(dtype), args[1]);
  if (!params) return nullptr;
  void* addresses[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
  if (!addresses_of(args, 6, static_cast<int>(nargs - 6), addresses)) return nullptr;
  const bool backward = nargs == 11;
  const Index n = size[0] * size[1] * size[2];
  const ChannelGrid grid(size[0], size[1], size[2], kMaxPartials);
  std::vector<double> totals(backward ? size[1] : 0, 0.0);
  with_storage(static_cast<int>(dtype), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      with_functor(index, [&](auto functor) {
        using Activation = typename decltype(functor)::template type<T>;
        Activation activation;
        std::memcpy(static_cast<void*>(&activation), params, sizeof activation);
        with_form(activation, [&](const auto form) {
          without_gil(n, [&] {
            if (n == 0) return;
            if (!backward) {
              channel_forward(grid, static_cast<T*>(addresses[0]), static_cast<const T*>(addresses[1]),
                              static_cast<const T*>(addresses[2]), BiasActForward<std::decay_t<decltype(form)>>{form});
            } else {
              channel_backward(grid, static_cast<T*>(addresses[0]), static_cast<const T*>(addresses[1]),
                               static_cast<const T*>(addresses[2]), static_cast<const T*>(addresses[3]),
                               totals.data(), BiasActBackward<std::decay_t<decltype(form)>>{form});
            }
          });
        });
      });
      if (backward) {
        T* dbias = static_cast<T*>(addresses[4]);
        for (Index c = 0; c < size[1]; ++c) dbias[c] = static_cast<T>(totals[c]);
      }
    }
  });
  Py_RETURN_NONE;
}

// ---- conv2d's im2col and col2im (conv.h) ------------------------------------------------
// Reads (nhwc, n, C, H, W, groups, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w)
// from args[first ..] and checks the image (storage dtype) and column (compute
// type) buffers against them; false with an error set.
bool conv_plan(PyObject* const* args, int first, const Py_buffer& image, const Py_buffer& cols, ConvShape& s,
               bool& nhwc, int& dtype) {
  const int flag = PyObject_IsTrue(args[first]);
  if (flag < 0) return false;
  nhwc = flag;
  Index v[15];
  if (!indices(args, first + 1, 15, v)) return false;
  s = ConvShape{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14]};
  if (s.channels < 1 || s.height < 1 || s.width < 1 || s.groups < 1 || s.channels % s.groups || s.kh < 1 ||
      s.kw < 1 || s.sh < 1 || s.sw < 1 || s.dh < 1 || s.dw < 1 || s.out_h < 1 || s.out_w < 1) {
    PyErr_SetString(PyExc_ValueError, "conv plan: sizes, kernel, stride and dilation must be >= 1, groups must divide C");
    return false;
  }
  dtype = dtype_of(image);
  const int compute = dtype == kFloat64 ? kFloat64 : kFloat32;
  if (dtype < 0 || dtype_of(cols) != compute) {
    PyErr_SetString(PyExc_ValueError, "conv plan: the image must be a float array, the columns of its compute type");
    return false;
  }
  if (!PyBuffer_IsContiguous(&image, 'C') || !PyBuffer_IsContiguous(&cols, 'C') ||
      image.len != s.x_size() * image.itemsize || cols.len != s.cols_size() * cols.itemsize) {
    PyErr_SetString(PyExc_ValueError, "conv plan: image and columns must be C-contiguous, of the plan's sizes");
    return false;
  }
  return true;
}

// im2col(cols, x, nhwc, n, C, H, W, groups, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w)
PyObject* im2col(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 18) return PyErr_Format(PyExc_TypeError, "im2col takes 18 arguments");
  Buffers buffers;
  Py_buffer* cols = buffers.get(args[0], true);
  Py_buffer* x = cols ? buffers.get(args[1], false) : nullptr;
  if (!x) return nullptr;
  ConvShape s;
  bool nhwc;
  int dtype;
  if (!conv_plan(args, 2, *x, *cols, s, nhwc, dtype)) return nullptr;
  with_storage(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* image = static_cast<const T*>(x->buf);
    ComputeType<T>* columns = static_cast<ComputeType<T>*>(cols->buf);
    without_gil(s.cols_size(), [&] { nhwc ? im2col_nhwc(s, image, columns) : im2col_nchw(s, image, columns); });
  });
  Py_RETURN_NONE;
}

// col2im(dx, cols, nhwc, n, C, H, W, groups, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w)
PyObject* col2im(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 18) return PyErr_Format(PyExc_TypeError, "col2im takes 18 arguments");
  Buffers buffers;
  Py_buffer* dx = buffers.get(args[0], true);
  Py_buffer* cols = dx ? buffers.get(args[1], false) : nullptr;
  if (!cols) return nullptr;
  ConvShape s;
  bool nhwc;
  int dtype;
  if (!conv_plan(args, 2, *dx, *cols, s, nhwc, dtype)) return nullptr;
  with_storage(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* image = static_cast<T*>(dx->buf);
    const ComputeType<T>* columns = static_cast<const ComputeType<T>*>(cols->buf);
    without_gil(s.cols_size(), [&] { nhwc ? col2im_nhwc(s, columns, image) : col2im_nchw(s, columns, image); });
  });
  Py_RETURN_NONE;
}

PyObject* functors(PyObject*, PyObject*) {
  PyObject* names = PyTuple_New(kFunctorCount);
  if (!names) return nullptr;
  for (int i = 0; i < kFunctorCount; ++i) PyTuple_SET_ITEM(names, i, PyUnicode_FromString(kFunctors[i].name));
  return names;
}

PyObject* threads(PyObject*, PyObject*) { return PyLong_FromLong(ThreadPool::instance().threads()); }

PyObject* set_threads(PyObject*, PyObject* arg) {
  const long count = PyLong_AsLong(arg);
  if (count == -1 && PyErr_Occurred()) return nullptr;
  Py_BEGIN_ALLOW_THREADS
  ThreadPool::instance().set_threads(static_cast<int>(count));
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

// use_openmp(path): run later jobs on the OpenMP runtime already loaded from `path` (PyTorch's;
// fastact/torch/_threads.py); None: the module's own pool.  Returns whether it took effect.
PyObject* use_openmp(PyObject*, PyObject* arg) {
  const char* path = nullptr;
  if (arg != Py_None && !(path = PyUnicode_AsUTF8(arg))) return nullptr;
  bool done;
  Py_BEGIN_ALLOW_THREADS
  done = ThreadPool::instance().use_openmp(path);
  Py_END_ALLOW_THREADS
  return PyBool_FromLong(done);
}

PyObject* on_openmp(PyObject*, PyObject*) { return PyBool_FromLong(ThreadPool::instance().on_openmp()); }

// Whether this CPU can run the instruction set the module was built for
// (the baseline module answers for the others before they are imported).
PyObject* cpu_supports(PyObject*, PyObject* arg) {
  const char* isa = PyUnicode_AsUTF8(arg);
  if (!isa) return nullptr;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (std::strcmp(isa, "avx512") == 0)
    return PyBool_FromLong(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                           __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma"));
  if (std::strcmp(isa, "avx2") == 0)
    return PyBool_FromLong(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                           __builtin_cpu_supports("f16c"));
#endif
  return PyBool_FromLong(std::strcmp(isa, "baseline") == 0);
}

PyMethodDef kMethods[] = {
    {"elementwise", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(elementwise)), METH_FASTCALL,
     "elementwise(functor, backward, params, out, x) / (..., out, dy, x): an activation over arrays."},
    {"rowwise_pointers", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(rowwise_pointers)),
     METH_FASTCALL,
     "rowwise_pointers(op, backward, dtype, rows, length, out, x) / (..., out, x, dy): C-contiguous rows."},
    {"bias_act_pointers", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(bias_act_pointers)),
     METH_FASTCALL,
     "bias_act_pointers(functor, params, dtype, outer, channels, inner, out, x, bias) / (..., dx, dy, x, bias, dbias)."},
    {"prelu_pointers", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(prelu_pointers)), METH_FASTCALL,
     "prelu_pointers(dtype, outer, channels, inner, out, x, slopes) / (..., dx, dy, x, slopes, dalpha)."},
    {"elementwise_pointers", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(elementwise_pointers)),
     METH_FASTCALL,
     "elementwise_pointers(functor, backward, params, dtype, n, out, x) / (..., out, dy, x): contiguous memory."},
    {"prelu_forward", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(prelu_forward)), METH_FASTCALL,
     "prelu_forward(out, x, alpha, outer, channels, inner)"},
    {"prelu_backward", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(prelu_backward)), METH_FASTCALL,
     "prelu_backward(dx, dy, x, alpha, dalpha, outer, channels, inner): dalpha (float64) summed in-kernel."},
    {"bias_act_forward", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(bias_act_forward)), METH_FASTCALL,
     "bias_act_forward(functor, params, out, x, bias, outer, channels, inner)"},
    {"bias_act_backward", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(bias_act_backward)),
     METH_FASTCALL, "bias_act_backward(functor, params, dx, dy, x, bias, dbias, outer, channels, inner)"},
    {"rowwise", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(rowwise)), METH_FASTCALL,
     "rowwise(op, backward, out, dy, x, rows, length, inner): softmax/log_softmax rows."},
    {"im2col", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(im2col)), METH_FASTCALL,
     "im2col(cols, x, nhwc, n, C, H, W, groups, kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w): conv2d's columns."},
    {"col2im", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(col2im)), METH_FASTCALL,
     "col2im(dx, cols, nhwc, n, C, ...): the column gradient gathered onto the image (deterministic)."},
    {"functors", functors, METH_NOARGS, "The C++ functor names, in the order elementwise() numbers them."},
    {"threads", threads, METH_NOARGS, "Threads a call runs on (the caller included)."},
    {"set_threads", set_threads, METH_O, "set_threads(n): n threads (0: one per core)."},
    {"use_openmp", use_openmp, METH_O, "use_openmp(path or None): jobs on that loaded OpenMP runtime's threads."},
    {"on_openmp", on_openmp, METH_NOARGS, "on_openmp(): whether jobs run on an OpenMP runtime's threads."},
    {"cpu_supports", cpu_supports, METH_O, "cpu_supports(isa): whether this CPU runs 'avx512', 'avx2', 'baseline'."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, FASTACT_STRINGIFY(FASTACT_MODULE_NAME),
                       "fastact's activation functors compiled for this CPU (see fastact/backends/cpu).", -1,
                       kMethods};

}  // namespace
}  // namespace fastact_host

PyMODINIT_FUNC FASTACT_CONCAT(PyInit_, FASTACT_MODULE_NAME)(void) {
  PyObject* module = PyModule_Create(&fastact_host::kModule);
  if (module && PyModule_AddStringConstant(module, "isa", FASTACT_STRINGIFY(FASTACT_ISA)) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
