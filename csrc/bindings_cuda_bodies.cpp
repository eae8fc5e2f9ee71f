// Test-only bindings `pycnn._core._bodies_*`: the per-element bodies of the CUDA kernels
// (csrc/cuda/bodies.h), compiled for the host and looped over every output element, so
// that CPU-only tests (tests/test_cuda_bodies.py) check the arithmetic the GPU runs
// against the CPU kernels and tests/reference.py. Serial and slow on purpose; not API.
// Arguments, validation and return values are those of the matching single-op bindings.
#include "bindings_common.h"

#include "cuda/bodies.h"

namespace pycnn_py {
namespace {

namespace bodies = pycnn::bodies;

FArray bodies_activation_forward(const py::object& inp_obj, const std::string& activation) {
  const char* fn = "_bodies_activation_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  Activation act = parse_activation(activation, fn);
  FArray out = like(inp);
  float* po = out.mutable_data();
  const float* pi = inp.data();
  const int64_t n = inp.size();
  release_and_run([&] {
    for (int64_t i = 0; i < n; ++i) po[i] = bodies::activation_forward_at(pi[i], act);
  });
  return out;
}

FArray bodies_activation_backward(const py::object& dout_obj, const py::object& out_obj, const std::string& activation) {
  const char* fn = "_bodies_activation_backward";
  FArray dout = as_float(dout_obj, fn, "dout");
  FArray out = as_float(out_obj, fn, "out");
  expect_same_shape(dout, out, fn, "dout", "out");
  Activation act = parse_activation(activation, fn);
  FArray dinp = like(out);
  float* pdi = dinp.mutable_data();
  const float *pdo = dout.data(), *po = out.data();
  const int64_t n = out.size();
  release_and_run([&] {
    for (int64_t i = 0; i < n; ++i) pdi[i] = bodies::activation_backward_at(pdo[i], po[i], act);
  });
  return dinp;
}

FArray bodies_conv2d_forward(const py::object& inp_obj, const py::object& weight_obj, const py::object& bias_obj,
                             const py::object& strides, const std::string& padding, const std::string& activation) {
  const char* fn = "_bodies_conv2d_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray weight = as_float(weight_obj, fn, "weight");
  pycnn::ConvShape s = conv_shape(inp, weight, strides, padding, fn);
  auto bias = optional_bias(bias_obj, s.F, fn);
  Activation act = parse_activation(activation, fn);
  FArray out = empty_f({s.N, s.OH, s.OW, s.F});
  float* po = out.mutable_data();
  const float *pi = inp.data(), *pw = weight.data(), *pb = bias ? bias->data() : nullptr;
  release_and_run([&] {
    const int64_t n = s.N * s.OH * s.OW * s.F;
    for (int64_t i = 0; i < n; ++i) po[i] = bodies::conv2d_forward_at(pi, pw, pb, s, act, i);
  });
  return out;
}

// As conv2d.cu: dz = dout * act'(out) first, then the three gathers.
py::tuple bodies_conv2d_backward(const py::object& dout_obj, const py::object& inp_obj, const py::object& weight_obj,
                                 const py::object& out_obj, const py::object& strides, const std::string& padding,
                                 const std::string& activation) {
  const char* fn = "_bodies_conv2d_backward";
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray weight = as_float(weight_obj, fn, "weight");
  pycnn::ConvShape s = conv_shape(inp, weight, strides, padding, fn);
  Activation act = parse_activation(activation, fn);
  std::vector<int64_t> oshape{s.N, s.OH, s.OW, s.F};
  FArray dout = as_float(dout_obj, fn, "dout");
  check_grad_shape(dout, oshape, fn, "dout");
  auto out = activation_output(out_obj, act, oshape, fn);
  FArray dz = empty_f({s.N, s.OH, s.OW, s.F});
  FArray dinp = empty_f({s.N, s.H, s.W, s.C});
  FArray dweight = empty_f({s.KH, s.KW, s.C, s.F});
  FArray dbias = empty_f({s.F});
  float *pz = dz.mutable_data(), *pdi = dinp.mutable_data(), *pdw = dweight.mutable_data(), *pdb = dbias.mutable_data();
  const float *pdo = dout.data(), *pi = inp.data(), *pw = weight.data(), *po = out ? out->data() : nullptr;
  release_and_run([&] {
    const int64_t rows = s.N * s.OH * s.OW;
    for (int64_t i = 0; i < rows * s.F; ++i) pz[i] = bodies::activation_backward_at(pdo[i], po ? po[i] : 0.f, act);
    for (int64_t i = 0; i < s.N * s.H * s.W * s.C; ++i) pdi[i] = bodies::conv2d_backward_input_at(pz, pw, s, i);
    for (int64_t i = 0; i < s.KH * s.KW * s.C * s.F; ++i) pdw[i] = bodies::conv2d_backward_weight_at(pz, pi, s, i);
    for (int64_t f = 0; f < s.F; ++f) pdb[f] = bodies::column_sum_at(pz, rows, s.F, f);
  });
  return py::make_tuple(dinp, dweight, dbias);
}

py::tuple bodies_maxpool2d_forward(const py::object& inp_obj, const py::object& pool_size, const py::object& strides,
                                   const std::string& padding) {
  const char* fn = "_bodies_maxpool2d_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  pycnn::PoolShape s = pool_shape(inp, pool_size, strides, padding, fn);
  FArray out = empty_f({s.N, s.OH, s.OW, s.C});
  py::array_t<int32_t> argmax({s.N, s.OH, s.OW, s.C});
  float* po = out.mutable_data();
  int32_t* pa = argmax.mutable_data();
  const float* pi = inp.data();
  release_and_run([&] {
    for (int64_t i = 0; i < s.N * s.OH * s.OW * s.C; ++i) po[i] = bodies::maxpool2d_forward_at(pa + i, pi, s, i);
  });
  return py::make_tuple(out, argmax);
}

// An out-of-range argmax entry matches no input element (the body compares, never indexes
// through it), so only dtype and shape are checked here.
FArray bodies_maxpool2d_backward(const py::object& dout_obj, const py::object& argmax_obj, const py::object& input_shape,
                                 const py::object& pool_size, const py::object& strides, const std::string& padding) {
  const char* fn = "_bodies_maxpool2d_backward";
  pycnn::PoolShape s = pool_shape(shape_placeholder(input_shape, fn), pool_size, strides, padding, fn);
  std::vector<int64_t> oshape{s.N, s.OH, s.OW, s.C};
  FArray dout = as_float(dout_obj, fn, "dout");
  check_grad_shape(dout, oshape, fn, "dout");
  py::array given = py::array::ensure(argmax_obj);
  if (!given || given.dtype().kind() != 'i' || given.itemsize() != 4)
    type_error(cat(fn, "() expected 'argmax' to be the int32 array returned by _bodies_maxpool2d_forward."));
  auto argmax = py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(given);
  check_grad_shape(argmax, oshape, fn, "argmax");
  FArray dinp = empty_f({s.N, s.H, s.W, s.C});
  float* pdi = dinp.mutable_data();
  const float* pdo = dout.data();
  const int32_t* pa = argmax.data();
  release_and_run([&] {
    for (int64_t i = 0; i < s.N * s.H * s.W * s.C; ++i) pdi[i] = bodies::maxpool2d_backward_at(pdo, pa, s, i);
  });
  return dinp;
}

FArray bodies_avgpool2d_forward(const py::object& inp_obj, const py::object& pool_size, const py::object& strides,
                                const std::string& padding) {
  const char* fn = "_bodies_avgpool2d_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  pycnn::PoolShape s = pool_shape(inp, pool_size, strides, padding, fn);
  FArray out = empty_f({s.N, s.OH, s.OW, s.C});
  float* po = out.mutable_data();
  const float* pi = inp.data();
  release_and_run([&] {
    for (int64_t i = 0; i < s.N * s.OH * s.OW * s.C; ++i) po[i] = bodies::avgpool2d_forward_at(pi, s, i);
  });
  return out;
}

FArray bodies_avgpool2d_backward(const py::object& dout_obj, const py::object& input_shape, const py::object& pool_size,
                                 const py::object& strides, const std::string& padding) {
  const char* fn = "_bodies_avgpool2d_backward";
  pycnn::PoolShape s = pool_shape(shape_placeholder(input_shape, fn), pool_size, strides, padding, fn);
  FArray dout = as_float(dout_obj, fn, "dout");
  check_grad_shape(dout, {s.N, s.OH, s.OW, s.C}, fn, "dout");
  FArray dinp = empty_f({s.N, s.H, s.W, s.C});
  float* pdi = dinp.mutable_data();
  const float* pdo = dout.data();
  release_and_run([&] {
    for (int64_t i = 0; i < s.N * s.H * s.W * s.C; ++i) pdi[i] = bodies::avgpool2d_backward_at(pdo, s, i);
  });
  return dinp;
}

// -> (mean loss, probs); the per-row losses are summed in double, as the CPU kernel does.
py::tuple bodies_softmax_crossentropy_forward(const py::object& logits_obj, const py::object& labels_obj) {
  const char* fn = "_bodies_softmax_crossentropy_forward";
  FArray logits = as_float(logits_obj, fn, "logits");
  expect_ndim(logits, 2, fn, "logits", "(N, K)");
  auto rc = rows_cols(logits, fn, "logits");
  IArray labels = checked_labels(labels_obj, rc.first, rc.second, fn);
  FArray probs = like(logits);
  float* pp = probs.mutable_data();
  const float* pz = logits.data();
  const int64_t* pl = labels.data();
  double total = 0.0;
  release_and_run([&] {
    for (int64_t r = 0; r < rc.first; ++r)
      total += bodies::softmax_crossentropy_forward_row(pp, pz, pl[r], rc.second, r);
  });
  return py::make_tuple(total / static_cast<double>(rc.first), probs);
}

FArray bodies_softmax_crossentropy_backward(const py::object& probs_obj, const py::object& labels_obj,
                                            const py::object& scale_obj) {
  const char* fn = "_bodies_softmax_crossentropy_backward";
  FArray probs = as_float(probs_obj, fn, "probs");
  expect_ndim(probs, 2, fn, "probs", "(N, K)");
  auto rc = rows_cols(probs, fn, "probs");
  IArray labels = checked_labels(labels_obj, rc.first, rc.second, fn);
  const float scale = scale_obj.is_none() ? 1.f / static_cast<float>(rc.first) : scale_obj.cast<float>();
  FArray dlogits = like(probs);
  float* pd = dlogits.mutable_data();
  const float* pp = probs.data();
  const int64_t* pl = labels.data();
  release_and_run([&] {
    for (int64_t i = 0; i < rc.first * rc.second; ++i)
      pd[i] = bodies::softmax_crossentropy_backward_at(pp, pl, rc.second, scale, i);
  });
  return dlogits;
}

FArray bodies_dense_forward(const py::object& inp_obj, const py::object& weight_obj, const py::object& bias_obj,
                            const std::string& activation) {
  const char* fn = "_bodies_dense_forward";
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
    for (int64_t i = 0; i < N * OUT; ++i) po[i] = bodies::dense_forward_at(pi, pw, pb, IN, OUT, act, i);
  });
  return out;
}

py::tuple bodies_dense_backward(const py::object& dout_obj, const py::object& inp_obj, const py::object& weight_obj,
                                const py::object& out_obj, const std::string& activation) {
  const char* fn = "_bodies_dense_backward";
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray weight = as_float(weight_obj, fn, "weight");
  int64_t N, IN, OUT;
  dense_shape(inp, weight, fn, &N, &IN, &OUT);
  Activation act = parse_activation(activation, fn);
  FArray dout = as_float(dout_obj, fn, "dout");
  check_grad_shape(dout, {N, OUT}, fn, "dout");
  auto out = activation_output(out_obj, act, {N, OUT}, fn);
  FArray dz = empty_f({N, OUT});
  FArray dinp = empty_f({N, IN});
  FArray dweight = empty_f({IN, OUT});
  FArray dbias = empty_f({OUT});
  float *pz = dz.mutable_data(), *pdi = dinp.mutable_data(), *pdw = dweight.mutable_data(), *pdb = dbias.mutable_data();
  const float *pdo = dout.data(), *pi = inp.data(), *pw = weight.data(), *po = out ? out->data() : nullptr;
  release_and_run([&] {
    for (int64_t i = 0; i < N * OUT; ++i) pz[i] = bodies::activation_backward_at(pdo[i], po ? po[i] : 0.f, act);
    for (int64_t i = 0; i < N * IN; ++i) pdi[i] = bodies::dense_backward_input_at(pz, pw, IN, OUT, i);
    for (int64_t i = 0; i < IN * OUT; ++i) pdw[i] = bodies::dense_backward_weight_at(pz, pi, N, IN, OUT, i);
    for (int64_t j = 0; j < OUT; ++j) pdb[j] = bodies::column_sum_at(pz, N, OUT, j);
  });
  return py::make_tuple(dinp, dweight, dbias);
}

}  // namespace

void bind_cuda_bodies(py::module_& m) {
  const char* note = " Test-only: the CUDA kernels' per-element body (csrc/cuda/bodies.h) looped on the CPU.";
  m.def("_bodies_activation_forward", &bodies_activation_forward, py::arg("inp"), py::arg("activation"),
        (std::string("act(inp), same shape.") + note).c_str());
  m.def("_bodies_activation_backward", &bodies_activation_backward, py::arg("dout"), py::arg("out"),
        py::arg("activation"), (std::string("dout * act'(out), same shape.") + note).c_str());
  m.def("_bodies_conv2d_forward", &bodies_conv2d_forward, py::arg("inp"), py::arg("weight"),
        py::arg("bias") = py::none(), py::arg("strides") = py::make_tuple(1, 1), py::arg("padding") = "valid",
        py::arg("activation") = "linear", (std::string("As conv2d_forward.") + note).c_str());
  m.def("_bodies_conv2d_backward", &bodies_conv2d_backward, py::arg("dout"), py::arg("inp"), py::arg("weight"),
        py::arg("out") = py::none(), py::arg("strides") = py::make_tuple(1, 1), py::arg("padding") = "valid",
        py::arg("activation") = "linear",
        (std::string("-> (dinp (N, H, W, C), dweight (KH, KW, C, F), dbias (F,)).") + note).c_str());
  m.def("_bodies_maxpool2d_forward", &bodies_maxpool2d_forward, py::arg("inp"), py::arg("pool_size"),
        py::arg("strides") = py::none(), py::arg("padding") = "valid",
        (std::string("As maxpool2d_forward: -> (out, argmax int32).") + note).c_str());
  m.def("_bodies_maxpool2d_backward", &bodies_maxpool2d_backward, py::arg("dout"), py::arg("argmax"),
        py::arg("input_shape"), py::arg("pool_size"), py::arg("strides") = py::none(), py::arg("padding") = "valid",
        (std::string("As maxpool2d_backward.") + note).c_str());
  m.def("_bodies_avgpool2d_forward", &bodies_avgpool2d_forward, py::arg("inp"), py::arg("pool_size"),
        py::arg("strides") = py::none(), py::arg("padding") = "valid",
        (std::string("As avgpool2d_forward.") + note).c_str());
  m.def("_bodies_avgpool2d_backward", &bodies_avgpool2d_backward, py::arg("dout"), py::arg("input_shape"),
        py::arg("pool_size"), py::arg("strides") = py::none(), py::arg("padding") = "valid",
        (std::string("As avgpool2d_backward.") + note).c_str());
  m.def("_bodies_softmax_crossentropy_forward", &bodies_softmax_crossentropy_forward, py::arg("logits"),
        py::arg("labels"), (std::string("logits (N, K), labels (N,) -> (mean loss, probs).") + note).c_str());
  m.def("_bodies_softmax_crossentropy_backward", &bodies_softmax_crossentropy_backward, py::arg("probs"),
        py::arg("labels"), py::arg("scale") = py::none(),
        (std::string("(probs - onehot(labels)) * scale (default 1/N).") + note).c_str());
  m.def("_bodies_dense_forward", &bodies_dense_forward, py::arg("inp"), py::arg("weight"),
        py::arg("bias") = py::none(), py::arg("activation") = "linear",
        (std::string("As dense_forward.") + note).c_str());
  m.def("_bodies_dense_backward", &bodies_dense_backward, py::arg("dout"), py::arg("inp"), py::arg("weight"),
        py::arg("out") = py::none(), py::arg("activation") = "linear",
        (std::string("-> (dinp (N, in), dweight (in, out), dbias (out,)).") + note).c_str());
}

}  // namespace pycnn_py
