// Helpers shared by the binding files (bindings*.cpp, the only files that know about Python):
// array conversion and validation in the house's error format, and the one tail every
// wrapper ends in: release the GIL, take the kernel lock, call the kernel.
//
// dtype policy: float inputs accept any real numeric dtype (bool, int, uint, float16/32/64)
// and convert it to float32 (a copy when needed); complex, object and string arrays are a
// TypeError. Label arrays accept integer dtypes only. Non-contiguous arrays are copied,
// never read through wrong strides. Arrays a kernel writes into are never converted.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "conv2d.h"
#include "pool2d.h"
#include "runtime.h"

namespace py = pybind11;

namespace pycnn_py {

using pycnn::Activation;
using FArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;


using FArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

inline std::string shape_str(const py::array& a) {
  std::ostringstream os;
  os << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    os << a.shape(i);
    if (a.ndim() == 1 || i + 1 < a.ndim()) os << (i + 1 < a.ndim() ? ", " : ",");
  }
  os << ")";
  return os.str();
}

template <class... Parts>
inline std::string cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

// Kernels share per-thread scratch arenas (runtime.h) and already use every core, so calls
// from several Python threads (the GIL is released) run one after another.
struct KernelLock {
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  std::lock_guard<std::mutex> guard{mutex()};
};

[[noreturn]] inline void value_error(const std::string& msg) { throw py::value_error(msg); }
[[noreturn]] inline void type_error(const std::string& msg) { throw py::type_error(msg); }

// Any array-like -> C-contiguous float32 array. `fn` and `arg` name the caller in errors.
inline FArray as_float(const py::handle& obj, const char* fn, const char* arg) {
  if (obj.is_none()) type_error(cat(fn, "() expected a float32 array for argument '", arg, "'. Received: None."));
  py::array a = py::array::ensure(obj);
  if (!a) type_error(cat(fn, "() expected an array-like of numbers for argument '", arg,
                         "'. Received an object of type ", std::string(py::str(py::type::of(obj).attr("__name__"))), "."));
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
    type_error(cat(fn, "() expected a real numeric array (converted to float32) for argument '", arg,
                   "'. Received: dtype=", std::string(py::str(a.dtype())), "."));
  FArray f = FArray::ensure(a);  // converts and/or makes contiguous only when needed
  if (!f) type_error(cat(fn, "() could not convert argument '", arg, "' to a float32 array."));
  return f;
}

// Integer array -> C-contiguous int64 (values are range-checked by the callers).
inline IArray as_labels(const py::handle& obj, const char* fn, const char* arg, const char* what = "an integer array",
                 const char* hint = "") {
  py::array a = py::array::ensure(obj);
  if (!a) type_error(cat(fn, "() expected an integer array for argument '", arg, "'."));
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    type_error(cat(fn, "() expected ", what, " for argument '", arg, "'. Received: dtype=",
                   std::string(py::str(a.dtype())), ".", hint));
  IArray l = IArray::ensure(a);
  if (!l) type_error(cat(fn, "() could not convert argument '", arg, "' to an int64 array."));
  return l;
}

inline void expect_ndim(const py::array& a, py::ssize_t ndim, const char* fn, const char* arg, const char* layout) {
  if (a.ndim() != ndim)
    value_error(cat(fn, "() expected '", arg, "' to be a ", ndim, "-D array ", layout,
                    ". Received: ", arg, ".shape=", shape_str(a), "."));
}

inline void expect_same_shape(const py::array& a, const py::array& b, const char* fn, const char* an, const char* bn) {
  bool same = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
  if (!same)
    value_error(cat(fn, "() expected '", an, "' and '", bn, "' to have the same shape. Received: ",
                    an, ".shape=", shape_str(a), ", ", bn, ".shape=", shape_str(b), "."));
}

// Window sizes and strides: an int or 2 ints (never bools), each in [1, 2^31 - 1], so that
// no size arithmetic downstream can overflow and the error names the argument at fault.
inline std::pair<int64_t, int64_t> positive_pair(const py::handle& obj, const char* fn, const char* arg) {
  constexpr int64_t kMax = 2147483647;
  std::vector<py::handle> items;
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    for (const py::handle& item : obj) items.push_back(item);
  } else {
    items = {obj, obj};
  }
  std::vector<int64_t> v;
  for (const py::handle& item : items) {
    // Python and NumPy integers (anything with __index__), but not bools.
    if (!PyIndex_Check(item.ptr()) || py::isinstance<py::bool_>(item) ||
        py::isinstance(item, py::module_::import("numpy").attr("bool_")))
      type_error(cat(fn, "() expected '", arg, "' to be an int or a tuple of 2 ints. Received: ", arg, "=",
                     std::string(py::repr(obj)), "."));
    const py::int_ value = py::reinterpret_steal<py::int_>(PyNumber_Index(item.ptr()));
    if (!value) throw py::error_already_set();
    if (!(value <= py::int_(kMax) && value >= py::int_(1)))
      value_error(cat(fn, "() expected '", arg, "' to be positive integers of at most ", kMax, ". Received: ", arg, "=",
                      std::string(py::repr(obj)), "."));
    v.push_back(value.cast<int64_t>());
  }
  if (v.size() != 2)
    value_error(cat(fn, "() expected '", arg, "' to be a tuple of 2 positive integers. Received: ", arg, "=",
                    std::string(py::repr(obj)), "."));
  return {v[0], v[1]};
}

inline bool parse_padding(const std::string& padding, const char* fn) {
  std::string p = padding;
  std::transform(p.begin(), p.end(), p.begin(), [](unsigned char c) { return std::tolower(c); });
  if (p == "same") return true;
  if (p == "valid") return false;
  value_error(cat(fn, "() expected padding 'valid' or 'same'. Received: padding='", padding, "'."));
}

inline Activation parse_activation(const std::string& name, const char* fn) {
  std::string a = name;
  std::transform(a.begin(), a.end(), a.begin(), [](unsigned char c) { return std::tolower(c); });
  if (a == "linear" || a.empty()) return Activation::linear;
  if (a == "relu") return Activation::relu;
  if (a == "sigmoid") return Activation::sigmoid;
  if (a == "tanh") return Activation::tanh;
  value_error(cat(fn, "() expected activation 'linear', 'relu', 'sigmoid' or 'tanh'. Received: activation='", name, "'."));
}

// Output size and padding of both spatial axes; raises if either output would be < 1.
struct Window {
  int64_t OH, OW, PT, PB, PL, PR;
};
inline Window window_geometry(int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, bool same,
                       const char* fn, const std::string& received) {
  Window w{};
  bool ok_h = pycnn::window_output_size(H, KH, SH, same, &w.OH, &w.PT, &w.PB);
  bool ok_w = pycnn::window_output_size(W, KW, SW, same, &w.OW, &w.PL, &w.PR);
  if (!ok_h || !ok_w)
    value_error(cat(fn, "(): computed output size would be zero or negative. Received: ", received,
                    ". Use a smaller window, padding='same' or a larger input."));
  return w;
}

inline std::string geometry_text(const py::array& inp, int64_t KH, int64_t KW, int64_t SH, int64_t SW, bool same,
                          const char* kname) {
  return cat("input shape=", shape_str(inp), ", ", kname, "=(", KH, ", ", KW, "), strides=(", SH, ", ", SW,
             "), padding='", same ? "same" : "valid", "'");
}

inline FArray empty_f(std::vector<py::ssize_t> shape) { return FArray(shape); }



inline FArray like(const py::array& a) {
  std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
  return FArray(shape);
}

// Validates dout (and out, when the activation needs it) against the forward output shape.
inline void check_grad_shape(const py::array& dout, const std::vector<int64_t>& expect, const char* fn, const char* arg) {
  bool ok = dout.ndim() == static_cast<py::ssize_t>(expect.size());
  for (size_t i = 0; ok && i < expect.size(); ++i) ok = dout.shape(i) == expect[i];
  if (!ok) {
    std::ostringstream os;
    os << "(";
    for (size_t i = 0; i < expect.size(); ++i) os << expect[i] << (i + 1 < expect.size() ? ", " : "");
    os << ")";
    value_error(cat(fn, "() expected '", arg, "' to have the forward output's shape ", os.str(), ". Received: ", arg,
                    ".shape=", shape_str(dout), "."));
  }
}

inline IArray checked_labels(const py::object& labels_obj, int64_t rows, int64_t cols, const char* fn) {
  IArray labels = as_labels(labels_obj, fn, "labels", "integer class indices", " Convert class indices with y.astype('int64') if they are whole numbers.");
  if (labels.ndim() != 1 || labels.shape(0) != rows)
    value_error(cat(fn, "() expected 'labels' of shape (", rows, ",), one class index per row of logits. Received: labels.shape=",
                    shape_str(labels), "."));
  const int64_t* pl = labels.data();
  for (int64_t i = 0; i < rows; ++i)
    if (pl[i] < 0 || pl[i] >= cols)
      value_error(cat(fn, "() expected class indices in [0, ", cols, "). Received: labels[", i, "]=", pl[i], "."));
  return labels;
}

// A variable updated in place must already be a writeable, C-contiguous float32 array:
// converting it would update a copy and silently lose the step.
inline py::array_t<float> inplace_float(const py::handle& obj, const char* fn, const char* arg, size_t i) {
  if (!py::isinstance<py::array>(obj))
    type_error(cat(fn, "() expected ", arg, "[", i, "] to be a NumPy float32 array (updated in place). Received: ",
                   std::string(py::str(py::type::of(obj).attr("__name__"))), "."));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (a.dtype().kind() != 'f' || a.itemsize() != 4)
    type_error(cat(fn, "() expected ", arg, "[", i, "] to be float32 (updated in place). Received: dtype=",
                   std::string(py::str(a.dtype())), "."));
  if (a.dtype().byteorder() == '>')  // '=' native, '<' little (this build), '|' n/a
    type_error(cat(fn, "() expected ", arg, "[", i, "] in native byte order (updated in place). Received: dtype=",
                   std::string(py::str(a.dtype())), "; convert it with .astype(np.float32)."));
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    value_error(cat(fn, "() expected ", arg, "[", i, "] to be a writeable C-contiguous array (updated in place)."));
  return py::reinterpret_borrow<py::array_t<float>>(a);
}

// Adam's hyper-parameters as the kernel receives them (alpha already bias-corrected): a
// negative or non-finite value, or a beta outside [0, 1), would silently wreck the weights.
inline void check_adam_hyper(double alpha, double beta_1, double beta_2, double epsilon, const char* fn) {
  auto bad = [&](const char* name, double v, const char* want) {
    value_error(cat(fn, "() expected ", name, " ", want, ". Received: ", name, "=", v, "."));
  };
  if (!std::isfinite(alpha) || alpha < 0) bad("alpha", alpha, "to be a finite number >= 0");
  if (!(beta_1 >= 0 && beta_1 < 1)) bad("beta_1", beta_1, "in [0, 1)");
  if (!(beta_2 >= 0 && beta_2 < 1)) bad("beta_2", beta_2, "in [0, 1)");
  if (!std::isfinite(epsilon) || epsilon < 0) bad("epsilon", epsilon, "to be a finite number >= 0");
}

// Validation shared by the single-op bindings (defined in bindings_ops.cpp) and the
// test-only bindings of the CUDA bodies (bindings_cuda_bodies.cpp), so both check alike.
pycnn::ConvShape conv_shape(const FArray& inp, const FArray& weight, const py::handle& strides,
                            const std::string& padding, const char* fn);
std::optional<FArray> optional_bias(const py::object& bias, int64_t F, const char* fn);
std::optional<FArray> activation_output(const py::object& out, Activation act, const std::vector<int64_t>& expect,
                                        const char* fn);
pycnn::PoolShape pool_shape(const FArray& inp, const py::handle& pool_size, const py::handle& strides,
                            const std::string& padding, const char* fn);
FArray shape_placeholder(const py::handle& input_shape, const char* fn);
std::pair<int64_t, int64_t> rows_cols(const py::array& a, const char* fn, const char* arg);
void dense_shape(const FArray& inp, const FArray& weight, const char* fn, int64_t* N, int64_t* IN, int64_t* OUT);

// The tail of every wrapper: everything Python-side has been read; run `kernel` without the
// GIL, one kernel sequence at a time (KernelLock).
template <class Kernel>
void release_and_run(Kernel&& kernel) {
  py::gil_scoped_release release;
  KernelLock lock;
  kernel();
}

}  // namespace pycnn_py
