// The only file that knows about Python. Each wrapper: accepts arrays (converting
// numeric dtypes to C-contiguous float32, refusing others), validates every shape
// relation, allocates outputs, releases the GIL around exactly one kernel call, returns.
//
// dtype policy: float inputs accept any real numeric dtype (bool, int, uint, float16/32/64)
// and convert it to float32 (a copy when needed); complex, object and string arrays are a
// TypeError. Label arrays accept integer dtypes only. Non-contiguous arrays are copied,
// never read through wrong strides.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <mutex>
#include <cctype>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "activation.h"
#include "conv2d.h"
#include "dense.h"
#include "network.h"
#include "optimizer.h"
#include "pool2d.h"
#include "runtime.h"
#include "softmax.h"

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;
using pycnn::Activation;

namespace {

using FArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

std::string shape_str(const py::array& a) {
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
std::string cat(const Parts&... parts) {
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

[[noreturn]] void value_error(const std::string& msg) { throw py::value_error(msg); }
[[noreturn]] void type_error(const std::string& msg) { throw py::type_error(msg); }

// Any array-like -> C-contiguous float32 array. `fn` and `arg` name the caller in errors.
FArray as_float(const py::handle& obj, const char* fn, const char* arg) {
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
IArray as_labels(const py::handle& obj, const char* fn, const char* arg, const char* what = "an integer array",
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

void expect_ndim(const py::array& a, py::ssize_t ndim, const char* fn, const char* arg, const char* layout) {
  if (a.ndim() != ndim)
    value_error(cat(fn, "() expected '", arg, "' to be a ", ndim, "-D array ", layout,
                    ". Received: ", arg, ".shape=", shape_str(a), "."));
}

void expect_same_shape(const py::array& a, const py::array& b, const char* fn, const char* an, const char* bn) {
  bool same = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
  if (!same)
    value_error(cat(fn, "() expected '", an, "' and '", bn, "' to have the same shape. Received: ",
                    an, ".shape=", shape_str(a), ", ", bn, ".shape=", shape_str(b), "."));
}

std::pair<int64_t, int64_t> positive_pair(const py::handle& obj, const char* fn, const char* arg) {
  std::vector<int64_t> v;
  try {
    if (py::isinstance<py::int_>(obj) && !py::isinstance<py::bool_>(obj)) {
      int64_t x = obj.cast<int64_t>();
      v = {x, x};
    } else {
      v = obj.cast<std::vector<int64_t>>();
    }
  } catch (const py::cast_error&) {
    type_error(cat(fn, "() expected '", arg, "' to be an int or a tuple of 2 ints. Received: ", arg, "=",
                   std::string(py::repr(obj)), "."));
  }
  if (v.size() != 2 || v[0] < 1 || v[1] < 1)
    value_error(cat(fn, "() expected '", arg, "' to be a tuple of 2 positive integers. Received: ", arg, "=",
                    std::string(py::repr(obj)), "."));
  return {v[0], v[1]};
}

bool parse_padding(const std::string& padding, const char* fn) {
  std::string p = padding;
  std::transform(p.begin(), p.end(), p.begin(), [](unsigned char c) { return std::tolower(c); });
  if (p == "same") return true;
  if (p == "valid") return false;
  value_error(cat(fn, "() expected padding 'valid' or 'same'. Received: padding='", padding, "'."));
}

Activation parse_activation(const std::string& name, const char* fn) {
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
Window window_geometry(int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t SH, int64_t SW, bool same,
                       const char* fn, const std::string& received) {
  Window w{};
  bool ok_h = pycnn::window_output_size(H, KH, SH, same, &w.OH, &w.PT, &w.PB);
  bool ok_w = pycnn::window_output_size(W, KW, SW, same, &w.OW, &w.PL, &w.PR);
  if (!ok_h || !ok_w)
    value_error(cat(fn, "(): computed output size would be zero or negative. Received: ", received,
                    ". Use a smaller window, padding='same' or a larger input."));
  return w;
}

std::string geometry_text(const py::array& inp, int64_t KH, int64_t KW, int64_t SH, int64_t SW, bool same,
                          const char* kname) {
  return cat("input shape=", shape_str(inp), ", ", kname, "=(", KH, ", ", KW, "), strides=(", SH, ", ", SW,
             "), padding='", same ? "same" : "valid", "'");
}

FArray empty_f(std::vector<py::ssize_t> shape) { return FArray(shape); }

// ---------------------------------------------------------------------------- conv2d

pycnn::ConvShape conv_shape(const FArray& inp, const FArray& weight, const py::handle& strides,
                            const std::string& padding, const char* fn) {
  expect_ndim(inp, 4, fn, "inp", "(N, H, W, C)");
  expect_ndim(weight, 4, fn, "weight", "(KH, KW, C, F)");
  pycnn::ConvShape s{};
  s.N = inp.shape(0); s.H = inp.shape(1); s.W = inp.shape(2); s.C = inp.shape(3);
  s.KH = weight.shape(0); s.KW = weight.shape(1); s.F = weight.shape(3);
  if (s.N < 1 || s.H < 1 || s.W < 1 || s.C < 1)
    value_error(cat(fn, "() expected 'inp' with every dimension >= 1. Received: inp.shape=", shape_str(inp), "."));
  if (s.KH < 1 || s.KW < 1 || s.F < 1)
    value_error(cat(fn, "() expected 'weight' with every dimension >= 1. Received: weight.shape=", shape_str(weight), "."));
  if (weight.shape(2) != s.C)
    value_error(cat(fn, "() expected weight.shape[2] to equal the input channels inp.shape[3]=", s.C,
                    ". Received: inp.shape=", shape_str(inp), ", weight.shape=", shape_str(weight), "."));
  auto st = positive_pair(strides, fn, "strides");
  s.SH = st.first; s.SW = st.second;
  bool same = parse_padding(padding, fn);
  Window w = window_geometry(s.H, s.W, s.KH, s.KW, s.SH, s.SW, same, fn,
                             geometry_text(inp, s.KH, s.KW, s.SH, s.SW, same, "kernel_size"));
  s.OH = w.OH; s.OW = w.OW; s.PT = w.PT; s.PL = w.PL;
  return s;
}

std::optional<FArray> optional_bias(const py::object& bias, int64_t F, const char* fn) {
  if (bias.is_none()) return std::nullopt;
  FArray b = as_float(bias, fn, "bias");
  if (b.ndim() != 1 || b.shape(0) != F)
    value_error(cat(fn, "() expected 'bias' of shape (", F, ",), one value per output channel. Received: bias.shape=",
                    shape_str(b), "."));
  return b;
}

// Validates dout (and out, when the activation needs it) against the forward output shape.
void check_grad_shape(const py::array& dout, const std::vector<int64_t>& expect, const char* fn, const char* arg) {
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

std::optional<FArray> activation_output(const py::object& out, Activation act, const std::vector<int64_t>& expect,
                                        const char* fn) {
  if (act == Activation::linear) return std::nullopt;
  if (out.is_none())
    value_error(cat(fn, "() needs the forward output 'out' to differentiate a non-linear activation. Received: out=None."));
  FArray o = as_float(out, fn, "out");
  check_grad_shape(o, expect, fn, "out");
  return o;
}

FArray conv2d_forward_py(const py::object& inp_obj, const py::object& weight_obj, const py::object& bias_obj,
                         const py::object& strides, const std::string& padding, const std::string& activation) {
  const char* fn = "conv2d_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray weight = as_float(weight_obj, fn, "weight");
  pycnn::ConvShape s = conv_shape(inp, weight, strides, padding, fn);
  auto bias = optional_bias(bias_obj, s.F, fn);
  Activation act = parse_activation(activation, fn);
  FArray out = empty_f({s.N, s.OH, s.OW, s.F});
  float* po = out.mutable_data();
  const float* pi = inp.data();
  const float* pw = weight.data();
  const float* pb = bias ? bias->data() : nullptr;
  {
    py::gil_scoped_release release;
    KernelLock lock;
    pycnn::conv2d_forward(po, pi, pw, pb, s, act);
  }
  return out;
}

py::tuple conv2d_backward_py(const py::object& dout_obj, const py::object& inp_obj, const py::object& weight_obj,
                             const py::object& out_obj, const py::object& strides, const std::string& padding,
                             const std::string& activation, bool has_bias, bool need_dinp) {
  const char* fn = "conv2d_backward";
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray weight = as_float(weight_obj, fn, "weight");
  pycnn::ConvShape s = conv_shape(inp, weight, strides, padding, fn);
  Activation act = parse_activation(activation, fn);
  std::vector<int64_t> oshape{s.N, s.OH, s.OW, s.F};
  FArray dout = as_float(dout_obj, fn, "dout");
  check_grad_shape(dout, oshape, fn, "dout");
  auto out = activation_output(out_obj, act, oshape, fn);
  FArray dweight = empty_f({s.KH, s.KW, s.C, s.F});
  std::optional<FArray> dinp, dbias;
  if (need_dinp) dinp = empty_f({s.N, s.H, s.W, s.C});
  if (has_bias) dbias = empty_f({s.F});
  float* pdi = dinp ? dinp->mutable_data() : nullptr;
  float* pdw = dweight.mutable_data();
  float* pdb = dbias ? dbias->mutable_data() : nullptr;
  const float *pdo = dout.data(), *pi = inp.data(), *pw = weight.data(), *po = out ? out->data() : nullptr;
  {
    py::gil_scoped_release release;
    KernelLock lock;
    pycnn::conv2d_backward(pdi, pdw, pdb, pdo, pi, pw, po, s, act);
  }
  py::object di = dinp ? py::object(*dinp) : py::none();
  py::object db = dbias ? py::object(*dbias) : py::none();
  return py::make_tuple(di, dweight, db);
}

// ---------------------------------------------------------------------------- pooling

pycnn::PoolShape pool_shape(const FArray& inp, const py::handle& pool_size, const py::handle& strides,
                            const std::string& padding, const char* fn) {
  expect_ndim(inp, 4, fn, "inp", "(N, H, W, C)");
  pycnn::PoolShape s{};
  s.N = inp.shape(0); s.H = inp.shape(1); s.W = inp.shape(2); s.C = inp.shape(3);
  if (s.N < 1 || s.H < 1 || s.W < 1 || s.C < 1)
    value_error(cat(fn, "() expected 'inp' with every dimension >= 1. Received: inp.shape=", shape_str(inp), "."));
  auto ps = positive_pair(pool_size, fn, "pool_size");
  s.KH = ps.first; s.KW = ps.second;
  auto st = strides.is_none() ? ps : positive_pair(strides, fn, "strides");
  s.SH = st.first; s.SW = st.second;
  bool same = parse_padding(padding, fn);
  Window w = window_geometry(s.H, s.W, s.KH, s.KW, s.SH, s.SW, same, fn,
                             geometry_text(inp, s.KH, s.KW, s.SH, s.SW, same, "pool_size"));
  s.OH = w.OH; s.OW = w.OW; s.PT = w.PT; s.PL = w.PL;
  if (s.H * s.W * s.C > INT32_MAX)
    value_error(cat(fn, "() supports at most 2**31-1 elements per sample. Received: inp.shape=", shape_str(inp), "."));
  return s;
}

// input_shape given to a backward: a 4-tuple (N, H, W, C).
FArray shape_placeholder(const py::handle& input_shape, const char* fn) {
  std::vector<int64_t> v;
  try {
    v = input_shape.cast<std::vector<int64_t>>();
  } catch (const py::cast_error&) {
    type_error(cat(fn, "() expected 'input_shape' to be a tuple of 4 ints (N, H, W, C). Received: input_shape=",
                   std::string(py::repr(input_shape)), "."));
  }
  if (v.size() != 4 || *std::min_element(v.begin(), v.end()) < 1)
    value_error(cat(fn, "() expected 'input_shape' to be 4 positive ints (N, H, W, C). Received: input_shape=",
                    std::string(py::repr(input_shape)), "."));
  // A zero-stride view: carries the shape for pool_shape() without allocating the input.
  static float dummy = 0.f;
  return FArray({v[0], v[1], v[2], v[3]}, {0, 0, 0, 0}, &dummy, py::none());
}

py::tuple maxpool2d_forward_py(const py::object& inp_obj, const py::object& pool_size, const py::object& strides,
                               const std::string& padding) {
  const char* fn = "maxpool2d_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  pycnn::PoolShape s = pool_shape(inp, pool_size, strides, padding, fn);
  FArray out = empty_f({s.N, s.OH, s.OW, s.C});
  py::array_t<int32_t> argmax({s.N, s.OH, s.OW, s.C});
  float* po = out.mutable_data();
  int32_t* pa = argmax.mutable_data();
  const float* pi = inp.data();
  {
    py::gil_scoped_release release;
    KernelLock lock;
    pycnn::maxpool2d_forward(po, pa, pi, s);
  }
  return py::make_tuple(out, argmax);
}

FArray maxpool2d_backward_py(const py::object& dout_obj, const py::object& argmax_obj, const py::object& input_shape,
                             const py::object& pool_size, const py::object& strides, const std::string& padding) {
  const char* fn = "maxpool2d_backward";
  pycnn::PoolShape s = pool_shape(shape_placeholder(input_shape, fn), pool_size, strides, padding, fn);
  std::vector<int64_t> oshape{s.N, s.OH, s.OW, s.C};
  FArray dout = as_float(dout_obj, fn, "dout");
  check_grad_shape(dout, oshape, fn, "dout");
  // Checked as int64 before narrowing, so an out-of-range int64 index cannot wrap into range.
  py::array given = py::array::ensure(argmax_obj);
  if (!given || given.dtype().kind() != 'i')
    type_error(cat(fn, "() expected 'argmax' to be the int32 array returned by maxpool2d_forward. Received: dtype=",
                   given ? std::string(py::str(given.dtype())) : std::string("not an array"), "."));
  IArray wide = as_labels(given, fn, "argmax");
  check_grad_shape(wide, oshape, fn, "argmax");
  const int64_t* pw = wide.data();
  const int64_t plane = s.H * s.W * s.C, count = s.N * s.OH * s.OW * s.C;
  for (int64_t i = 0; i < count; ++i)
    if (pw[i] < 0 || pw[i] >= plane)
      value_error(cat(fn, "() received an 'argmax' entry that is not a valid input index for input_shape (", s.N,
                      ", ", s.H, ", ", s.W, ", ", s.C, "): argmax.flat[", i, "]=", pw[i],
                      ". Pass the argmax returned by maxpool2d_forward for the same input."));
  auto argmax = py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(wide);
  const int32_t* pa = argmax.data();
  FArray dinp = empty_f({s.N, s.H, s.W, s.C});
  float* pdi = dinp.mutable_data();
  const float* pdo = dout.data();
  {
    py::gil_scoped_release release;
    KernelLock lock;
    pycnn::maxpool2d_backward(pdi, pdo, pa, s);
  }
  return dinp;
}

FArray avgpool2d_forward_py(const py::object& inp_obj, const py::object& pool_size, const py::object& strides,
                            const std::string& padding) {
  const char* fn = "avgpool2d_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  pycnn::PoolShape s = pool_shape(inp, pool_size, strides, padding, fn);
  FArray out = empty_f({s.N, s.OH, s.OW, s.C});
  float* po = out.mutable_data();
  const float* pi = inp.data();
  {
    py::gil_scoped_release release;
    KernelLock lock;
    pycnn::avgpool2d_forward(po, pi, s);
  }
  return out;
}

FArray avgpool2d_backward_py(const py::object& dout_obj, const py::object& input_shape, const py::object& pool_size,
                             const py::object& strides, const std::string& padding) {
  const char* fn = "avgpool2d_backward";
  pycnn::PoolShape s = pool_shape(shape_placeholder(input_shape, fn), pool_size, strides, padding, fn);
  FArray dout = as_float(dout_obj, fn, "dout");
  check_grad_shape(dout, {s.N, s.OH, s.OW, s.C}, fn, "dout");
  FArray dinp = empty_f({s.N, s.H, s.W, s.C});
  float* pdi = dinp.mutable_data();
  const float* pdo = dout.data();
  {
    py::gil_scoped_release release;
    KernelLock lock;
    pycnn::avgpool2d_backward(pdi, pdo, s);
  }
  return dinp;
}

// ---------------------------------------------------------------------------- softmax

std::pair<int64_t, int64_t> rows_cols(const py::array& a, const char* fn, const char* arg) {
  if (a.ndim() < 1)
    value_error(cat(fn, "() expected '", arg, "' with at least 1 dimension (softmax runs over the last axis). Received: ",
                    arg, ".shape=()."));
  int64_t cols = a.shape(a.ndim() - 1);
  if (cols < 1) value_error(cat(fn, "() expected a non-empty last axis. Received: ", arg, ".shape=", shape_str(a), "."));
  return {a.size() / cols, cols};
}

FArray like(const py::array& a) {
  std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
  return FArray(shape);
}

FArray softmax_forward_py(const py::object& inp_obj) {
  const char* fn = "softmax_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  auto rc = rows_cols(inp, fn, "inp");
  FArray out = like(inp);
  float* po = out.mutable_data();
  const float* pi = inp.data();
  {
    py::gil_scoped_release release;
    KernelLock lock;
    pycnn::softmax_forward(po, pi, rc.first, rc.second);
  }
  return out;
}

FArray softmax_backward_py(const py::object& dout_obj, const py::object& out_obj) {
  const char* fn = "softmax_backward";
  FArray dout = as_float(dout_obj, fn, "dout");
  FArray out = as_float(out_obj, fn, "out");
  expect_same_shape(dout, out, fn, "dout", "out");
  auto rc = rows_cols(out, fn, "out");
  FArray dinp = like(out);
  float* pdi = dinp.mutable_data();
  const float *pdo = dout.data(), *po = out.data();
  {
    py::gil_scoped_release release;
    KernelLock lock;
    pycnn::softmax_backward(pdi, pdo, po, rc.first, rc.second);
  }
  return dinp;
}

IArray checked_labels(const py::object& labels_obj, int64_t rows, int64_t cols, const char* fn) {
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

py::tuple softmax_crossentropy_forward_py(const py::object& logits_obj, const py::object& labels_obj) {
  const char* fn = "softmax_crossentropy_forward";
  FArray logits = as_float(logits_obj, fn, "logits");
  expect_ndim(logits, 2, fn, "logits", "(N, classes)");
  int64_t rows = logits.shape(0), cols = logits.shape(1);
  if (rows < 1 || cols < 1)
    value_error(cat(fn, "() expected non-empty logits. Received: logits.shape=", shape_str(logits), "."));
  IArray labels = checked_labels(labels_obj, rows, cols, fn);
  FArray probs = like(logits);
  double loss;
  float* pp = probs.mutable_data();
  const float* pz = logits.data();
  const int64_t* pl = labels.data();
  {
    py::gil_scoped_release release;
    KernelLock lock;
    loss = pycnn::softmax_crossentropy_forward(pp, pz, pl, rows, cols);
  }
  return py::make_tuple(loss, probs);
}

FArray softmax_crossentropy_backward_py(const py::object& probs_obj, const py::object& labels_obj,
                                        const py::object& scale_obj) {
  const char* fn = "softmax_crossentropy_backward";
  FArray probs = as_float(probs_obj, fn, "probs");
  expect_ndim(probs, 2, fn, "probs", "(N, classes)");
  int64_t rows = probs.shape(0), cols = probs.shape(1);
  if (rows < 1 || cols < 1)
    value_error(cat(fn, "() expected non-empty probs. Received: probs.shape=", shape_str(probs), "."));
  IArray labels = checked_labels(labels_obj, rows, cols, fn);
  float scale = 1.0f / static_cast<float>(rows);
  if (!scale_obj.is_none()) {
    try {
      scale = scale_obj.cast<float>();
    } catch (const py::cast_error&) {
      type_error(cat(fn, "() expected 'scale' to be a number or None. Received: scale=", std::string(py::repr(scale_obj)), "."));
    }
  }
  FArray dlogits = like(probs);
  float* pd = dlogits.mutable_data();
  const float* pp = probs.data();
  const int64_t* pl = labels.data();
  {
    py::gil_scoped_release release;
    KernelLock lock;
    pycnn::softmax_crossentropy_backward(pd, pp, pl, rows, cols, scale);
  }
  return dlogits;
}

// ---------------------------------------------------------------------------- dense

void dense_shape(const FArray& inp, const FArray& weight, const char* fn, int64_t* N, int64_t* IN, int64_t* OUT) {
  expect_ndim(inp, 2, fn, "inp", "(N, in)");
  expect_ndim(weight, 2, fn, "weight", "(in, out)");
  *N = inp.shape(0); *IN = inp.shape(1); *OUT = weight.shape(1);
  if (*N < 1 || *IN < 1 || *OUT < 1)
    value_error(cat(fn, "() expected non-empty arrays. Received: inp.shape=", shape_str(inp), ", weight.shape=",
                    shape_str(weight), "."));
  if (weight.shape(0) != *IN)
    value_error(cat(fn, "() expected weight.shape[0] to equal the input features inp.shape[1]=", *IN,
                    ". Received: inp.shape=", shape_str(inp), ", weight.shape=", shape_str(weight), "."));
}

FArray dense_forward_py(const py::object& inp_obj, const py::object& weight_obj, const py::object& bias_obj,
                        const std::string& activation) {
  const char* fn = "dense_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray weight = as_float(weight_obj, fn, "weight");
  int64_t N, IN, OUT;
  dense_shape(inp, weight, fn, &N, &IN, &OUT);
  auto bias = optional_bias(bias_obj, OUT, fn);
  Activation act = parse_activation(activation, fn);
  FArray out = empty_f({N, OUT});
  float* po = out.mutable_data();
  const float *pi = inp.data(), *pw = weight.data(), *pb = bias ? bias->data() : nullptr;
  {
    py::gil_scoped_release release;
    KernelLock lock;
    pycnn::dense_forward(po, pi, pw, pb, N, IN, OUT, act);
  }
  return out;
}

py::tuple dense_backward_py(const py::object& dout_obj, const py::object& inp_obj, const py::object& weight_obj,
                            const py::object& out_obj, const std::string& activation, bool has_bias, bool need_dinp) {
  const char* fn = "dense_backward";
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray weight = as_float(weight_obj, fn, "weight");
  int64_t N, IN, OUT;
  dense_shape(inp, weight, fn, &N, &IN, &OUT);
  Activation act = parse_activation(activation, fn);
  FArray dout = as_float(dout_obj, fn, "dout");
  check_grad_shape(dout, {N, OUT}, fn, "dout");
  auto out = activation_output(out_obj, act, {N, OUT}, fn);
  FArray dweight = empty_f({IN, OUT});
  std::optional<FArray> dinp, dbias;
  if (need_dinp) dinp = empty_f({N, IN});
  if (has_bias) dbias = empty_f({OUT});
  float* pdi = dinp ? dinp->mutable_data() : nullptr;
  float* pdw = dweight.mutable_data();
  float* pdb = dbias ? dbias->mutable_data() : nullptr;
  const float *pdo = dout.data(), *pi = inp.data(), *pw = weight.data(), *po = out ? out->data() : nullptr;
  {
    py::gil_scoped_release release;
    KernelLock lock;
    pycnn::dense_backward(pdi, pdw, pdb, pdo, pi, pw, po, N, IN, OUT, act);
  }
  py::object di = dinp ? py::object(*dinp) : py::none();
  py::object db = dbias ? py::object(*dbias) : py::none();
  return py::make_tuple(di, dweight, db);
}

// ---------------------------------------------------------------------------- activations

using UnaryKernel = void (*)(float*, const float*, int64_t);
using GradKernel = void (*)(float*, const float*, const float*, int64_t);

FArray unary(const py::object& inp_obj, UnaryKernel kernel, const char* fn) {
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray out = like(inp);
  float* po = out.mutable_data();
  const float* pi = inp.data();
  int64_t n = inp.size();
  {
    py::gil_scoped_release release;
    KernelLock lock;
    kernel(po, pi, n);
  }
  return out;
}

FArray unary_grad(const py::object& dout_obj, const py::object& out_obj, GradKernel kernel, const char* fn) {
  FArray dout = as_float(dout_obj, fn, "dout");
  FArray out = as_float(out_obj, fn, "out");
  expect_same_shape(dout, out, fn, "dout", "out");
  FArray dinp = like(out);
  float* pdi = dinp.mutable_data();
  const float *pdo = dout.data(), *po = out.data();
  int64_t n = out.size();
  {
    py::gil_scoped_release release;
    KernelLock lock;
    kernel(pdi, pdo, po, n);
  }
  return dinp;
}

// ---------------------------------------------------------------------------- optimizers

// A variable updated in place must already be a writeable, C-contiguous float32 array:
// converting it would update a copy and silently lose the step.
py::array_t<float> inplace_float(const py::handle& obj, const char* fn, const char* arg, size_t i) {
  if (!py::isinstance<py::array>(obj))
    type_error(cat(fn, "() expected ", arg, "[", i, "] to be a NumPy float32 array (updated in place). Received: ",
                   std::string(py::str(py::type::of(obj).attr("__name__"))), "."));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (a.dtype().kind() != 'f' || a.itemsize() != 4)
    type_error(cat(fn, "() expected ", arg, "[", i, "] to be float32 (updated in place). Received: dtype=",
                   std::string(py::str(a.dtype())), "."));
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    value_error(cat(fn, "() expected ", arg, "[", i, "] to be a writeable C-contiguous array (updated in place)."));
  return py::reinterpret_borrow<py::array_t<float>>(a);
}

void adam_update_py(const py::list& weights, const py::list& grads, const py::list& ms, const py::list& vs,
                    float alpha, float beta_1, float beta_2, float epsilon) {
  const char* fn = "adam_update";
  const size_t count = weights.size();
  if (grads.size() != count || ms.size() != count || vs.size() != count)
    value_error(cat(fn, "() expected lists of equal length. Received: len(weights)=", count, ", len(grads)=",
                    grads.size(), ", len(m)=", ms.size(), ", len(v)=", vs.size(), "."));
  struct Job {
    float *w, *m, *v;
    const float* g;
    int64_t n;
  };
  std::vector<Job> jobs;
  std::vector<FArray> keep;  // converted gradients stay alive until the kernels ran
  for (size_t i = 0; i < count; ++i) {
    auto w = inplace_float(weights[i], fn, "weights", i);
    auto m = inplace_float(ms[i], fn, "m", i);
    auto v = inplace_float(vs[i], fn, "v", i);
    FArray g = as_float(grads[i], fn, "grads");
    if (m.size() != w.size() || v.size() != w.size() || g.size() != w.size())
      value_error(cat(fn, "() expected weights[", i, "], grads[", i, "], m[", i, "] and v[", i,
                      "] to have the same size. Received: ", w.size(), ", ", g.size(), ", ", m.size(), ", ", v.size(), "."));
    jobs.push_back({w.mutable_data(), m.mutable_data(), v.mutable_data(), g.data(), static_cast<int64_t>(w.size())});
    keep.push_back(g);
  }
  py::gil_scoped_release release;
  KernelLock lock;
  for (const Job& j : jobs) pycnn::adam_update(j.w, j.m, j.v, j.g, j.n, alpha, beta_1, beta_2, epsilon);
}

// ---------------------------------------------------------------------------- whole network

// Layers are tuples, validated against the shape flowing through them:
//   ("conv2d", weight, bias|None, dweight|None, dbias|None, strides, padding, activation)
//   ("maxpool2d", pool_size, strides|None, padding)      ("avgpool2d", pool_size, strides|None, padding)
//   ("flatten",)     ("dense", weight, bias|None, dweight|None, dbias|None, activation)
//   ("activation", name)
// dweight/dbias are writeable float32 arrays of the parameters' shapes (training), or None.
struct ParsedNetwork {
  std::vector<pycnn::NetLayer> layers;
  std::vector<py::object> keep;  // converted arrays referenced by raw pointers
  std::vector<int64_t> out_shape;  // per sample
};

std::string dims_str(const std::vector<int64_t>& d) {
  std::ostringstream os;
  os << "(None";
  for (int64_t v : d) os << ", " << v;
  os << ")";
  return os.str();
}

ParsedNetwork parse_network(const py::list& layers, std::vector<int64_t> shape, bool train, const char* fn) {
  ParsedNetwork net;
  if (layers.size() == 0) value_error(cat(fn, "() expected at least one layer."));
  for (size_t i = 0; i < layers.size(); ++i) {
    py::tuple spec;
    try {
      spec = layers[i].cast<py::tuple>();
    } catch (const py::cast_error&) {
      type_error(cat(fn, "() expected layers[", i, "] to be a tuple."));
    }
    if (spec.size() == 0) value_error(cat(fn, "() received an empty tuple for layers[", i, "]."));
    const std::string kind = spec[0].cast<std::string>();
    auto need = [&](size_t n) {
      if (spec.size() != n)
        value_error(cat(fn, "() expected layers[", i, "] ('", kind, "') to have ", n, " items. Received: ", spec.size(), "."));
    };
    pycnn::NetLayer L{};
    FArray weight_array;  // the layer's weight, once params() has read it
    int64_t in_size = 1;
    for (int64_t v : shape) in_size *= v;
    L.in_size = in_size;
    auto params = [&](size_t wi, std::vector<int64_t> wshape, int64_t bias_len) {
      FArray w = as_float(spec[wi], fn, "weight");
      bool ok = w.ndim() == static_cast<py::ssize_t>(wshape.size());
      for (size_t k = 0; ok && k < wshape.size(); ++k) ok = wshape[k] < 0 || w.shape(k) == wshape[k];
      if (!ok)
        value_error(cat(fn, "() layers[", i, "] ('", kind, "') has a weight of shape ", shape_str(w),
                        " that does not fit its input of shape ", dims_str(shape), "."));
      L.weight = w.data();
      L.weight_size = w.size();
      net.keep.push_back(w);
      weight_array = w;
      int64_t out_len = w.shape(w.ndim() - 1);
      if (!spec[wi + 1].is_none()) {
        auto b = optional_bias(spec[wi + 1], out_len, fn);
        L.bias = b->data();
        L.bias_size = b->size();
        net.keep.push_back(*b);
      }
      if (train && !spec[wi + 2].is_none()) {
        auto dw = inplace_float(spec[wi + 2], fn, "dweight", i);
        if (dw.size() != L.weight_size) value_error(cat(fn, "() layers[", i, "]: dweight must match the weight's size."));
        L.dweight = dw.mutable_data();
        net.keep.push_back(dw);
        if (L.bias) {
          if (spec[wi + 3].is_none()) value_error(cat(fn, "() layers[", i, "]: dbias is required with a bias."));
          auto db = inplace_float(spec[wi + 3], fn, "dbias", i);
          if (db.size() != L.bias_size) value_error(cat(fn, "() layers[", i, "]: dbias must match the bias's size."));
          L.dbias = db.mutable_data();
          net.keep.push_back(db);
        }
      }
      return out_len;
    };
    if (kind == "conv2d") {
      need(8);
      if (shape.size() != 3) value_error(cat(fn, "() layers[", i, "] ('conv2d') needs (H, W, C) input. Received: ", dims_str(shape), "."));
      const int64_t F = params(1, {-1, -1, shape[2], -1}, 0);
      pycnn::ConvShape& c = L.conv;
      c.N = 1; c.H = shape[0]; c.W = shape[1]; c.C = shape[2]; c.F = F;
      c.KH = weight_array.shape(0); c.KW = weight_array.shape(1);
      auto st = positive_pair(spec[5], fn, "strides");
      c.SH = st.first; c.SW = st.second;
      bool same = parse_padding(spec[6].cast<std::string>(), fn);
      Window win = window_geometry(c.H, c.W, c.KH, c.KW, c.SH, c.SW, same, fn,
                                   cat("layers[", i, "] input shape=", dims_str(shape)));
      c.OH = win.OH; c.OW = win.OW; c.PT = win.PT; c.PL = win.PL;
      L.kind = pycnn::NetKind::conv2d;
      L.act = parse_activation(spec[7].cast<std::string>(), fn);
      shape = {c.OH, c.OW, F};
    } else if (kind == "maxpool2d" || kind == "avgpool2d") {
      need(4);
      if (shape.size() != 3) value_error(cat(fn, "() layers[", i, "] ('", kind, "') needs (H, W, C) input. Received: ", dims_str(shape), "."));
      pycnn::PoolShape& p = L.pool;
      p.N = 1; p.H = shape[0]; p.W = shape[1]; p.C = shape[2];
      auto ps = positive_pair(spec[1], fn, "pool_size");
      p.KH = ps.first; p.KW = ps.second;
      auto st = spec[2].is_none() ? ps : positive_pair(spec[2], fn, "strides");
      p.SH = st.first; p.SW = st.second;
      bool same = parse_padding(spec[3].cast<std::string>(), fn);
      Window win = window_geometry(p.H, p.W, p.KH, p.KW, p.SH, p.SW, same, fn,
                                   cat("layers[", i, "] input shape=", dims_str(shape)));
      p.OH = win.OH; p.OW = win.OW; p.PT = win.PT; p.PL = win.PL;
      L.kind = kind == "maxpool2d" ? pycnn::NetKind::maxpool2d : pycnn::NetKind::avgpool2d;
      shape = {p.OH, p.OW, p.C};
    } else if (kind == "flatten") {
      need(1);
      L.kind = pycnn::NetKind::flatten;
      shape = {in_size};
    } else if (kind == "dense") {
      need(6);
      if (shape.size() != 1) value_error(cat(fn, "() layers[", i, "] ('dense') needs flat input. Received: ", dims_str(shape), "."));
      const int64_t OUT = params(1, {shape[0], -1}, 0);
      L.kind = pycnn::NetKind::dense;
      L.act = parse_activation(spec[5].cast<std::string>(), fn);
      shape = {OUT};
    } else if (kind == "activation") {
      need(2);
      L.kind = pycnn::NetKind::activation;
      L.act = parse_activation(spec[1].cast<std::string>(), fn);
    } else {
      value_error(cat(fn, "() does not know layer kind '", kind, "' (layers[", i, "])."));
    }
    L.out_size = 1;
    for (int64_t v : shape) L.out_size *= v;
    net.layers.push_back(L);
  }
  net.out_shape = shape;
  return net;
}

std::vector<int64_t> sample_shape(const FArray& x, const char* fn) {
  if (x.ndim() < 2 || x.shape(0) < 1)
    value_error(cat(fn, "() expected a non-empty batch 'x' of shape (N, ...). Received: x.shape=", shape_str(x), "."));
  return std::vector<int64_t>(x.shape() + 1, x.shape() + x.ndim());
}

// adam = (alpha, beta_1, beta_2, epsilon, weights, m, v): flat lists over the trainable
// parameters in layer order (kernel, then bias), updated in place in the same native call.
void attach_adam(ParsedNetwork* net, const py::tuple& adam, pycnn::AdamStep* step, const char* fn) {
  if (adam.size() != 7)
    value_error(cat(fn, "() expected adam=(alpha, beta_1, beta_2, epsilon, weights, m, v). Received a tuple of ",
                    adam.size(), " items."));
  *step = {adam[0].cast<float>(), adam[1].cast<float>(), adam[2].cast<float>(), adam[3].cast<float>()};
  py::list ws = adam[4].cast<py::list>(), ms = adam[5].cast<py::list>(), vs = adam[6].cast<py::list>();
  size_t k = 0;
  for (pycnn::NetLayer& L : net->layers) {
    if (!L.dweight) continue;
    for (int part = 0; part < 2; ++part) {
      if (part == 1 && !L.bias) continue;
      if (k >= ws.size() || k >= ms.size() || k >= vs.size())
        value_error(cat(fn, "() expected one adam weight, m and v per trainable parameter. Received: ", ws.size(),
                        ", ", ms.size(), " and ", vs.size(), "."));
      auto w = inplace_float(ws[k], fn, "adam weights", k);
      auto m = inplace_float(ms[k], fn, "adam m", k);
      auto v = inplace_float(vs[k], fn, "adam v", k);
      const float* expected = part == 0 ? L.weight : L.bias;
      const int64_t size = part == 0 ? L.weight_size : L.bias_size;
      if (w.data() != expected)
        value_error(cat(fn, "() expected adam weights[", k, "] to be the same array as the layer's parameter."));
      if (m.size() != size || v.size() != size)
        value_error(cat(fn, "() expected adam m[", k, "] and v[", k, "] of ", size, " values. Received: ", m.size(),
                        " and ", v.size(), "."));
      (part == 0 ? L.weight_rw : L.bias_rw) = w.mutable_data();
      (part == 0 ? L.m_weight : L.m_bias) = m.mutable_data();
      (part == 0 ? L.v_weight : L.v_bias) = v.mutable_data();
      net->keep.push_back(w);
      net->keep.push_back(m);
      net->keep.push_back(v);
      ++k;
    }
  }
  if (k != ws.size())
    value_error(cat(fn, "() expected ", k, " adam parameters (one per trainable kernel and bias). Received: ",
                    ws.size(), "."));
}

py::tuple network_train_step_py(const py::object& x_obj, const py::object& labels_obj, const py::list& layers,
                                const py::object& adam) {
  const char* fn = "network_train_step";
  FArray x = as_float(x_obj, fn, "x");
  ParsedNetwork net = parse_network(layers, sample_shape(x, fn), true, fn);
  pycnn::AdamStep step{};
  if (!adam.is_none()) attach_adam(&net, adam.cast<py::tuple>(), &step, fn);
  if (net.out_shape.size() != 1)
    value_error(cat(fn, "() expected the network to end in (N, classes) logits. Received output shape ",
                    dims_str(net.out_shape), "."));
  const int64_t N = x.shape(0), classes = net.out_shape[0];
  IArray labels = checked_labels(labels_obj, N, classes, fn);
  const float* px = x.data();
  const int64_t* pl = labels.data();
  double loss;
  int64_t correct = 0;
  {
    py::gil_scoped_release release;
    KernelLock lock;
    loss = pycnn::network_train_step(net.layers, px, pl, N, classes, &correct, adam.is_none() ? nullptr : &step);
  }
  return py::make_tuple(loss, correct);
}

FArray network_predict_py(const py::object& x_obj, const py::list& layers, bool softmax) {
  const char* fn = "network_predict";
  FArray x = as_float(x_obj, fn, "x");
  ParsedNetwork net = parse_network(layers, sample_shape(x, fn), false, fn);
  std::vector<py::ssize_t> oshape{x.shape(0)};
  for (int64_t v : net.out_shape) oshape.push_back(v);
  if (softmax && net.out_shape.back() < 1) value_error(cat(fn, "() needs a non-empty last axis for softmax."));
  FArray out(oshape);
  float* po = out.mutable_data();
  const float* px = x.data();
  const int64_t N = x.shape(0);
  {
    py::gil_scoped_release release;
    KernelLock lock;
    pycnn::network_predict(net.layers, px, N, po, softmax ? net.out_shape.back() : 0);
  }
  return out;
}

// ---------------------------------------------------------------------------- runtime

py::dict build_info() {
  py::dict d;
  d["version"] = PYCNN_VERSION;
  d["compiler"] = PYCNN_COMPILER;
  d["build_type"] = PYCNN_BUILD_TYPE;
  d["openmp"] = pycnn::openmp_enabled();
  d["openmp_version"] = pycnn::openmp_version();
  d["cuda"] = false;
#ifdef PYCNN_NATIVE_BUILD
  d["native_arch"] = true;
#else
  d["native_arch"] = false;
#endif
  d["isa_detected"] = pycnn::isa_name(pycnn::detected_isa());
  d["isa_active"] = pycnn::isa_name(pycnn::active_isa());
  d["isa_compiled"] = py::make_tuple("baseline", "avx2", "avx512");
  d["num_threads"] = pycnn::get_num_threads();
  return d;
}

void set_num_threads_py(int n) {
  if (n < 1) value_error(cat("set_num_threads() expected a positive integer. Received: n=", n, "."));
  pycnn::set_num_threads(n);
}

void set_isa_py(const std::string& name) {
  pycnn::Isa isa;
  if (name == "baseline") isa = pycnn::Isa::baseline;
  else if (name == "avx2") isa = pycnn::Isa::avx2;
  else if (name == "avx512") isa = pycnn::Isa::avx512;
  else value_error(cat("set_isa() expected 'baseline', 'avx2' or 'avx512'. Received: name='", name, "'."));
  pycnn::set_isa_cap(isa);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  // PYCNN_NO_MALLOC_TUNING=1 leaves the C allocator's settings alone.
  const char* no_tuning = std::getenv("PYCNN_NO_MALLOC_TUNING");
  if (!no_tuning || std::string(no_tuning) != "1") pycnn::tune_allocator();
  m.doc() = "pycnn native kernels (NHWC float32). See pycnn.ops for the documented Python surface.";
  m.def("build_info", &build_info, "What was compiled in: version, compiler, OpenMP, ISA levels, CUDA.");
  m.def("set_num_threads", &set_num_threads_py, py::arg("n"), "Threads used by every kernel.");
  m.def("get_num_threads", &pycnn::get_num_threads);
  m.def("set_isa", &set_isa_py, py::arg("name"),
        "Cap the SIMD level ('baseline', 'avx2', 'avx512'); the CPU's best level is used when the cap is higher.");
  m.def("get_isa", [] { return std::string(pycnn::isa_name(pycnn::active_isa())); });

  m.def("conv2d_forward", &conv2d_forward_py, py::arg("inp"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("strides") = py::make_tuple(1, 1), py::arg("padding") = "valid", py::arg("activation") = "linear",
        "inp (N, H, W, C), weight (KH, KW, C, F), bias (F,) or None -> out (N, OH, OW, F) = act(conv + bias).");
  m.def("conv2d_backward", &conv2d_backward_py, py::arg("dout"), py::arg("inp"), py::arg("weight"),
        py::arg("out") = py::none(), py::arg("strides") = py::make_tuple(1, 1), py::arg("padding") = "valid",
        py::arg("activation") = "linear", py::arg("has_bias") = true, py::arg("need_dinp") = true,
        "dout (N, OH, OW, F) w.r.t. the activation's output; out is that output (needed unless linear) -> "
        "(dinp (N, H, W, C) or None, dweight (KH, KW, C, F), dbias (F,) or None).");
  m.def("maxpool2d_forward", &maxpool2d_forward_py, py::arg("inp"), py::arg("pool_size"),
        py::arg("strides") = py::none(), py::arg("padding") = "valid",
        "inp (N, H, W, C) -> (out (N, OH, OW, C), argmax int32 (N, OH, OW, C): (ih * W + iw) * C + c in the sample).");
  m.def("maxpool2d_backward", &maxpool2d_backward_py, py::arg("dout"), py::arg("argmax"), py::arg("input_shape"),
        py::arg("pool_size"), py::arg("strides") = py::none(), py::arg("padding") = "valid",
        "dout (N, OH, OW, C), argmax from forward -> dinp (N, H, W, C).");
  m.def("avgpool2d_forward", &avgpool2d_forward_py, py::arg("inp"), py::arg("pool_size"),
        py::arg("strides") = py::none(), py::arg("padding") = "valid",
        "inp (N, H, W, C) -> out (N, OH, OW, C), mean over the real (unpadded) elements of each window.");
  m.def("avgpool2d_backward", &avgpool2d_backward_py, py::arg("dout"), py::arg("input_shape"), py::arg("pool_size"),
        py::arg("strides") = py::none(), py::arg("padding") = "valid", "dout (N, OH, OW, C) -> dinp (N, H, W, C).");
  m.def("softmax_forward", &softmax_forward_py, py::arg("inp"), "Softmax over the last axis; same shape.");
  m.def("softmax_backward", &softmax_backward_py, py::arg("dout"), py::arg("out"),
        "dout and out (the softmax output), same shape -> dinp.");
  m.def("softmax_crossentropy_forward", &softmax_crossentropy_forward_py, py::arg("logits"), py::arg("labels"),
        "logits (N, K), integer labels (N,) -> (mean loss as float, probs (N, K)).");
  m.def("softmax_crossentropy_backward", &softmax_crossentropy_backward_py, py::arg("probs"), py::arg("labels"),
        py::arg("scale") = py::none(), "(probs - onehot(labels)) * scale (default 1/N) -> dlogits (N, K).");
  m.def("dense_forward", &dense_forward_py, py::arg("inp"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("activation") = "linear", "inp (N, in), weight (in, out), bias (out,) or None -> out (N, out).");
  m.def("dense_backward", &dense_backward_py, py::arg("dout"), py::arg("inp"), py::arg("weight"),
        py::arg("out") = py::none(), py::arg("activation") = "linear", py::arg("has_bias") = true,
        py::arg("need_dinp") = true, "-> (dinp (N, in) or None, dweight (in, out), dbias (out,) or None).");
  m.def("adam_update", &adam_update_py, py::arg("weights"), py::arg("grads"), py::arg("m"), py::arg("v"),
        py::arg("alpha"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"),
        "In place, for each i: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w -= alpha m / (sqrt(v) + eps).");
  m.def("network_train_step", &network_train_step_py, py::arg("x"), py::arg("labels"), py::arg("layers"),
        py::arg("adam") = py::none(),
        "Forward, mean softmax cross-entropy against integer labels, and backward of a whole network in one "
        "call; writes every dweight/dbias. adam=(alpha, beta_1, beta_2, epsilon, weights, m, v) also applies "
        "that Adam step in place. Returns (mean loss, number of correct argmax predictions).");
  m.def("network_predict", &network_predict_py, py::arg("x"), py::arg("layers"), py::arg("softmax") = false,
        "Forward of a whole network; softmax over the last axis of the output when asked.");
  m.def("relu_forward", [](const py::object& x) { return unary(x, pycnn::relu_forward, "relu_forward"); }, py::arg("inp"));
  m.def("relu_backward", [](const py::object& d, const py::object& y) { return unary_grad(d, y, pycnn::relu_backward, "relu_backward"); },
        py::arg("dout"), py::arg("out"));
  m.def("sigmoid_forward", [](const py::object& x) { return unary(x, pycnn::sigmoid_forward, "sigmoid_forward"); }, py::arg("inp"));
  m.def("sigmoid_backward", [](const py::object& d, const py::object& y) { return unary_grad(d, y, pycnn::sigmoid_backward, "sigmoid_backward"); },
        py::arg("dout"), py::arg("out"));
  m.def("tanh_forward", [](const py::object& x) { return unary(x, pycnn::tanh_forward, "tanh_forward"); }, py::arg("inp"));
  m.def("tanh_backward", [](const py::object& d, const py::object& y) { return unary_grad(d, y, pycnn::tanh_backward, "tanh_backward"); },
        py::arg("dout"), py::arg("out"));
}
