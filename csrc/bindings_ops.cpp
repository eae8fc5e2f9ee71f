// Bindings of the single ops (conv2d, pooling, softmax, dense, activations, Adam): one thin
// wrapper per kernel: convert and validate, allocate outputs, release the GIL, call, return.
#include "bindings_common.h"

#include "activation.h"
#include "conv2d.h"
#include "dense.h"
#include "image.h"
#include "optimizer.h"
#include "pool2d.h"
#include "softmax.h"

namespace pycnn_py {
// Shared with bindings_cuda_bodies.cpp (declared in bindings_common.h): conv_shape,
// optional_bias, activation_output, pool_shape, shape_placeholder, rows_cols, dense_shape;
// the wrappers themselves are file-local.

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

std::optional<FArray> activation_output(const py::object& out, Activation act, const std::vector<int64_t>& expect,
                                        const char* fn) {
  if (act == Activation::linear) return std::nullopt;
  if (out.is_none())
    value_error(cat(fn, "() needs the forward output 'out' to differentiate a non-linear activation. Received: out=None."));
  FArray o = as_float(out, fn, "out");
  check_grad_shape(o, expect, fn, "out");
  return o;
}
namespace {

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
  release_and_run([&] {
  pycnn::conv2d_forward(po, pi, pw, pb, s, act);
  });
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
  release_and_run([&] {
  pycnn::conv2d_backward(pdi, pdw, pdb, pdo, pi, pw, po, s, act);
  });
  py::object di = dinp ? py::object(*dinp) : py::none();
  py::object db = dbias ? py::object(*dbias) : py::none();
  return py::make_tuple(di, dweight, db);
}

// ---------------------------------------------------------------------------- pooling

}  // namespace

// Shared with bindings_cuda_bodies.cpp (declared in bindings_common.h).
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
namespace {

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
  release_and_run([&] {
  pycnn::maxpool2d_forward(po, pa, pi, s);
  });
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
  release_and_run([&] {
  pycnn::maxpool2d_backward(pdi, pdo, pa, s);
  });
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
  release_and_run([&] {
  pycnn::avgpool2d_forward(po, pi, s);
  });
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
  release_and_run([&] {
  pycnn::avgpool2d_backward(pdi, pdo, s);
  });
  return dinp;
}

// ---------------------------------------------------------------------------- softmax

}  // namespace

// Shared with bindings_cuda_bodies.cpp (declared in bindings_common.h).
std::pair<int64_t, int64_t> rows_cols(const py::array& a, const char* fn, const char* arg) {
  if (a.ndim() < 1)
    value_error(cat(fn, "() expected '", arg, "' with at least 1 dimension (softmax runs over the last axis). Received: ",
                    arg, ".shape=()."));
  int64_t cols = a.shape(a.ndim() - 1);
  if (cols < 1) value_error(cat(fn, "() expected a non-empty last axis. Received: ", arg, ".shape=", shape_str(a), "."));
  return {a.size() / cols, cols};
}
namespace {

FArray softmax_forward_py(const py::object& inp_obj) {
  const char* fn = "softmax_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  auto rc = rows_cols(inp, fn, "inp");
  FArray out = like(inp);
  float* po = out.mutable_data();
  const float* pi = inp.data();
  release_and_run([&] {
  pycnn::softmax_forward(po, pi, rc.first, rc.second);
  });
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
  release_and_run([&] {
  pycnn::softmax_backward(pdi, pdo, po, rc.first, rc.second);
  });
  return dinp;
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
  release_and_run([&] {
  loss = pycnn::softmax_crossentropy_forward(pp, pz, pl, rows, cols);
  });
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
    if (!std::isfinite(scale))
      value_error(cat(fn, "() expected 'scale' to be a finite float32 number. Received: scale=",
                      std::string(py::repr(scale_obj)), "."));
  }
  FArray dlogits = like(probs);
  float* pd = dlogits.mutable_data();
  const float* pp = probs.data();
  const int64_t* pl = labels.data();
  release_and_run([&] {
  pycnn::softmax_crossentropy_backward(pd, pp, pl, rows, cols, scale);
  });
  return dlogits;
}

// ---------------------------------------------------------------------------- dense

}  // namespace

// Shared with bindings_cuda_bodies.cpp (declared in bindings_common.h).
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
namespace {

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
  release_and_run([&] {
  pycnn::dense_forward(po, pi, pw, pb, N, IN, OUT, act);
  });
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
  release_and_run([&] {
  pycnn::dense_backward(pdi, pdw, pdb, pdo, pi, pw, po, N, IN, OUT, act);
  });
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
  release_and_run([&] {
  kernel(po, pi, n);
  });
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
  release_and_run([&] {
  kernel(pdi, pdo, po, n);
  });
  return dinp;
}

// ---------------------------------------------------------------------------- optimizers

void adam_update_py(const py::list& weights, const py::list& grads, const py::list& ms, const py::list& vs,
                    float alpha, float beta_1, float beta_2, float epsilon) {
  const char* fn = "adam_update";
  check_adam_hyper(alpha, beta_1, beta_2, epsilon, fn);
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
  // Every array whose pointer a job keeps stays referenced until the kernels ran: converting
  // a later argument may run Python code (__array__) that drops the caller's references.
  std::vector<FArray> keep;
  for (size_t i = 0; i < count; ++i) {
    auto w = inplace_float(weights[i], fn, "weights", i);
    auto m = inplace_float(ms[i], fn, "m", i);
    auto v = inplace_float(vs[i], fn, "v", i);
    FArray g = as_float(grads[i], fn, "grads");
    if (m.size() != w.size() || v.size() != w.size() || g.size() != w.size())
      value_error(cat(fn, "() expected weights[", i, "], grads[", i, "], m[", i, "] and v[", i,
                      "] to have the same size. Received: ", w.size(), ", ", g.size(), ", ", m.size(), ", ", v.size(), "."));
    jobs.push_back({w.mutable_data(), m.mutable_data(), v.mutable_data(), g.data(), static_cast<int64_t>(w.size())});
    keep.insert(keep.end(), {FArray(w), FArray(m), FArray(v), g});
  }
  py::gil_scoped_release release;
  KernelLock lock;
  for (const Job& j : jobs) pycnn::adam_update(j.w, j.m, j.v, j.g, j.n, alpha, beta_1, beta_2, epsilon);
}

// ---------------------------------------------------------------------------- images

struct ImageDims {
  int64_t N, H, W, C;
};

ImageDims image_dims(const FArray& a, const char* fn, const char* arg, bool five_d) {
  expect_ndim(a, five_d ? 5 : 4, fn, arg, five_d ? "(N, H, W, C, 2)" : "(N, H, W, C)");
  ImageDims d{a.shape(0), a.shape(1), a.shape(2), a.shape(3)};
  if (d.N < 1 || d.H < 1 || d.W < 1 || d.C < 1 || (five_d && a.shape(4) != 2))
    value_error(cat(fn, "() expected '", arg, "' with every dimension >= 1", five_d ? " and a last axis of 2" : "",
                    ". Received: ", arg, ".shape=", shape_str(a), "."));
  return d;
}

void require_sobel_size(const ImageDims& d, const FArray& a, const char* fn, const char* arg) {
  if (d.H < 2 || d.W < 2)
    value_error(cat(fn, "() needs images of at least 2x2 pixels (the reflect padding mirrors one pixel). Received: ",
                    arg, ".shape=", shape_str(a), "."));
}

int image_axis(int axis, const char* fn) {
  if (axis != 0 && axis != 1)
    value_error(cat(fn, "() expected axis 0 (dy, along H) or 1 (dx, along W). Received: axis=", axis, "."));
  return axis;
}

// Forward (N, H, W, C) -> (N, H, W, C, 2) and backward (N, H, W, C, 2) -> (N, H, W, C).
FArray sobel_edges_py(const py::object& x_obj, bool backward) {
  const char* fn = backward ? "sobel_edges_backward" : "sobel_edges_forward";
  const char* arg = backward ? "dout" : "inp";
  FArray x = as_float(x_obj, fn, arg);
  ImageDims d = image_dims(x, fn, arg, backward);
  require_sobel_size(d, x, fn, arg);
  FArray out = backward ? empty_f({d.N, d.H, d.W, d.C}) : empty_f({d.N, d.H, d.W, d.C, 2});
  float* po = out.mutable_data();
  const float* px = x.data();
  release_and_run([&] {
    if (backward)
      pycnn::sobel_edges_backward(po, px, d.N, d.H, d.W, d.C);
    else
      pycnn::sobel_edges_forward(po, px, d.N, d.H, d.W, d.C);
  });
  return out;
}

FArray image_gradient_py(const py::object& x_obj, int axis, bool backward) {
  const char* fn = backward ? "image_gradient_backward" : "image_gradient_forward";
  const char* arg = backward ? "dout" : "inp";
  FArray x = as_float(x_obj, fn, arg);
  ImageDims d = image_dims(x, fn, arg, false);
  axis = image_axis(axis, fn);
  FArray out = empty_f({d.N, d.H, d.W, d.C});
  float* po = out.mutable_data();
  const float* px = x.data();
  release_and_run([&] {
    if (backward)
      pycnn::image_gradient_backward(po, px, d.N, d.H, d.W, d.C, axis);
    else
      pycnn::image_gradient_forward(po, px, d.N, d.H, d.W, d.C, axis);
  });
  return out;
}

}  // namespace

void bind_ops(py::module_& m) {
  m.def("sobel_edges_forward", [](const py::object& x) { return sobel_edges_py(x, false); }, py::arg("inp"),
        "inp (N, H, W, C), H, W >= 2 -> (N, H, W, C, 2): [dy, dx] Sobel responses on the REFLECT-padded image "
        "(tf.image.sobel_edges).");
  m.def("sobel_edges_backward", [](const py::object& d) { return sobel_edges_py(d, true); }, py::arg("dout"), "dout (N, H, W, C, 2) -> dinp (N, H, W, C).");
  m.def("image_gradient_forward", [](const py::object& x, int axis) { return image_gradient_py(x, axis, false); },
        py::arg("inp"), py::arg("axis"),
        "inp (N, H, W, C) -> forward differences along H (axis 0, dy) or W (axis 1, dx), 0 in the last row / column.");
  m.def("image_gradient_backward", [](const py::object& d, int axis) { return image_gradient_py(d, axis, true); },
        py::arg("dout"), py::arg("axis"), "dout (N, H, W, C) -> dinp (N, H, W, C).");
  m.def("conv2d_forward", &conv2d_forward_py, py::arg("inp"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("strides") = py::make_tuple(1, 1), py::arg("padding") = "valid", py::arg("activation") = "linear",
        "inp (N, H, W, C), weight (KH, KW, C, F), bias (F,) or None -> out (N, OH, OW, F) = act(conv + bias).");
  m.def("conv2d_backward", &conv2d_backward_py, py::arg("dout"), py::arg("inp"), py::arg("weight"),
        py::arg("out") = py::none(), py::arg("strides") = py::make_tuple(1, 1), py::arg("padding") = "valid",
        py::arg("activation") = "linear", py::arg("has_bias").noconvert() = true, py::arg("need_dinp").noconvert() = true,
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
        py::arg("out") = py::none(), py::arg("activation") = "linear", py::arg("has_bias").noconvert() = true,
        py::arg("need_dinp").noconvert() = true, "-> (dinp (N, in) or None, dweight (in, out), dbias (out,) or None).");
  m.def("adam_update", &adam_update_py, py::arg("weights"), py::arg("grads"), py::arg("m"), py::arg("v"),
        py::arg("alpha"), py::arg("beta_1"), py::arg("beta_2"), py::arg("epsilon"),
        "In place, for each i: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w -= alpha m / (sqrt(v) + eps).");
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

}  // namespace pycnn_py
