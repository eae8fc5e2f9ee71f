// Bindings of the general convolutions: dilated and/or grouped conv2d (conv2d_grouped.h) and
// depthwise conv2d (depthwise_conv2d.h). One thin wrapper per kernel: convert and
// validate, allocate outputs, release the GIL, call, return.
#include "bindings_common.h"

#include "conv2d_grouped.h"
#include "depthwise_conv2d.h"

namespace pycnn_py {
namespace {

// inp (N, H, W, C) and a 4-D weight (KH, KW, weight_c, *) with strides, dilation and padding;
// fills everything of ConvShape except F. `kname` names the weight in messages.
pycnn::ConvShape dilated_shape(const FArray& inp, const FArray& weight, int64_t weight_c, const py::handle& strides,
                               const py::handle& dilation_rate, const std::string& padding, const char* fn,
                               const char* kname, int64_t* DH, int64_t* DW) {
  expect_ndim(inp, 4, fn, "inp", "(N, H, W, C)");
  pycnn::ConvShape s{};
  s.N = inp.shape(0); s.H = inp.shape(1); s.W = inp.shape(2); s.C = inp.shape(3);
  s.KH = weight.shape(0); s.KW = weight.shape(1);
  if (s.N < 1 || s.H < 1 || s.W < 1 || s.C < 1)
    value_error(cat(fn, "() expected 'inp' with every dimension >= 1. Received: inp.shape=", shape_str(inp), "."));
  for (py::ssize_t i = 0; i < 4; ++i)
    if (weight.shape(i) < 1)
      value_error(cat(fn, "() expected '", kname, "' with every dimension >= 1. Received: ", kname, ".shape=",
                      shape_str(weight), "."));
  if (weight.shape(2) != weight_c)
    value_error(cat(fn, "() expected ", kname, ".shape[2] to be ", weight_c, " for inp.shape=", shape_str(inp),
                    ". Received: ", kname, ".shape=", shape_str(weight), "."));
  auto st = positive_pair(strides, fn, "strides");
  auto dl = positive_pair(dilation_rate, fn, "dilation_rate");
  s.SH = st.first; s.SW = st.second;
  *DH = dl.first; *DW = dl.second;
  const bool same = parse_padding(padding, fn);
  // The dilated extent (K - 1) * D + 1 fits in int64: K and D are at most 2^31 - 1.
  const int64_t EKH = (s.KH - 1) * *DH + 1, EKW = (s.KW - 1) * *DW + 1;
  Window w = window_geometry(s.H, s.W, EKH, EKW, s.SH, s.SW, same, fn,
                             cat(geometry_text(inp, s.KH, s.KW, s.SH, s.SW, same, "kernel_size"),
                                 ", dilation_rate=(", *DH, ", ", *DW, ")"));
  s.OH = w.OH; s.OW = w.OW; s.PT = w.PT; s.PL = w.PL;
  return s;
}

// ---------------------------------------------------------------------------- grouped conv2d

struct Grouped {
  pycnn::ConvShape s;
  pycnn::ConvDilation d;
};

Grouped grouped_shape(const FArray& inp, const FArray& weight, const py::handle& strides,
                      const py::handle& dilation_rate, const std::string& padding, int64_t groups, const char* fn) {
  expect_ndim(inp, 4, fn, "inp", "(N, H, W, C)");
  expect_ndim(weight, 4, fn, "weight", "(KH, KW, C // groups, F)");
  if (groups < 1) value_error(cat(fn, "() expected 'groups' to be a positive integer. Received: groups=", groups, "."));
  const int64_t C = inp.shape(3), F = weight.shape(3);
  if (C % groups != 0)
    value_error(cat(fn, "() expected the input channels to be divisible by groups. Received: inp.shape=",
                    shape_str(inp), ", groups=", groups, "."));
  if (F % groups != 0)
    value_error(cat(fn, "() expected the filters (weight.shape[3]) to be divisible by groups. Received: weight.shape=",
                    shape_str(weight), ", groups=", groups, "."));
  Grouped g{};
  g.s = dilated_shape(inp, weight, C / groups, strides, dilation_rate, padding, fn, "weight", &g.d.DH, &g.d.DW);
  g.s.F = F;
  g.d.G = groups;
  return g;
}

FArray conv2d_grouped_forward_py(const py::object& inp_obj, const py::object& weight_obj, const py::object& bias_obj,
                                 const py::object& strides, const std::string& padding,
                                 const py::object& dilation_rate, int64_t groups, const std::string& activation) {
  const char* fn = "conv2d_grouped_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray weight = as_float(weight_obj, fn, "weight");
  const Grouped g = grouped_shape(inp, weight, strides, dilation_rate, padding, groups, fn);
  auto bias = optional_bias(bias_obj, g.s.F, fn);
  Activation act = parse_activation(activation, fn);
  FArray out = empty_f({g.s.N, g.s.OH, g.s.OW, g.s.F});
  float* po = out.mutable_data();
  const float *pi = inp.data(), *pw = weight.data(), *pb = bias ? bias->data() : nullptr;
  release_and_run([&] { pycnn::conv2d_grouped_forward(po, pi, pw, pb, g.s, g.d, act); });
  return out;
}

py::tuple conv2d_grouped_backward_py(const py::object& dout_obj, const py::object& inp_obj,
                                     const py::object& weight_obj, const py::object& out_obj,
                                     const py::object& strides, const std::string& padding,
                                     const py::object& dilation_rate, int64_t groups, const std::string& activation,
                                     bool has_bias, bool need_dinp) {
  const char* fn = "conv2d_grouped_backward";
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray weight = as_float(weight_obj, fn, "weight");
  const Grouped g = grouped_shape(inp, weight, strides, dilation_rate, padding, groups, fn);
  const pycnn::ConvShape& s = g.s;
  Activation act = parse_activation(activation, fn);
  std::vector<int64_t> oshape{s.N, s.OH, s.OW, s.F};
  FArray dout = as_float(dout_obj, fn, "dout");
  check_grad_shape(dout, oshape, fn, "dout");
  auto out = activation_output(out_obj, act, oshape, fn);
  FArray dweight = like(weight);
  std::optional<FArray> dinp, dbias;
  if (need_dinp) dinp = like(inp);
  if (has_bias) dbias = empty_f({s.F});
  float* pdi = dinp ? dinp->mutable_data() : nullptr;
  float* pdw = dweight.mutable_data();
  float* pdb = dbias ? dbias->mutable_data() : nullptr;
  const float *pdo = dout.data(), *pi = inp.data(), *pw = weight.data(), *po = out ? out->data() : nullptr;
  release_and_run([&] { pycnn::conv2d_grouped_backward(pdi, pdw, pdb, pdo, pi, pw, po, s, g.d, act); });
  return py::make_tuple(dinp ? py::object(*dinp) : py::none(), dweight, dbias ? py::object(*dbias) : py::none());
}

// ---------------------------------------------------------------------------- depthwise conv2d

pycnn::DepthwiseShape depthwise_shape(const FArray& inp, const FArray& weight, const py::handle& strides,
                                      const py::handle& dilation_rate, const std::string& padding, const char* fn) {
  expect_ndim(inp, 4, fn, "inp", "(N, H, W, C)");
  expect_ndim(weight, 4, fn, "weight", "(KH, KW, C, depth_multiplier)");
  pycnn::DepthwiseShape d{};
  d.s = dilated_shape(inp, weight, inp.shape(3), strides, dilation_rate, padding, fn, "weight", &d.DH, &d.DW);
  d.M = weight.shape(3);
  d.s.F = d.s.C * d.M;
  return d;
}

FArray depthwise_conv2d_forward_py(const py::object& inp_obj, const py::object& weight_obj,
                                   const py::object& bias_obj, const py::object& strides, const std::string& padding,
                                   const py::object& dilation_rate, const std::string& activation) {
  const char* fn = "depthwise_conv2d_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray weight = as_float(weight_obj, fn, "weight");
  const pycnn::DepthwiseShape d = depthwise_shape(inp, weight, strides, dilation_rate, padding, fn);
  auto bias = optional_bias(bias_obj, d.s.F, fn);
  Activation act = parse_activation(activation, fn);
  FArray out = empty_f({d.s.N, d.s.OH, d.s.OW, d.s.F});
  float* po = out.mutable_data();
  const float *pi = inp.data(), *pw = weight.data(), *pb = bias ? bias->data() : nullptr;
  release_and_run([&] { pycnn::depthwise_conv2d_forward(po, pi, pw, pb, d, act); });
  return out;
}

py::tuple depthwise_conv2d_backward_py(const py::object& dout_obj, const py::object& inp_obj,
                                       const py::object& weight_obj, const py::object& out_obj,
                                       const py::object& strides, const std::string& padding,
                                       const py::object& dilation_rate, const std::string& activation, bool has_bias,
                                       bool need_dinp) {
  const char* fn = "depthwise_conv2d_backward";
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray weight = as_float(weight_obj, fn, "weight");
  const pycnn::DepthwiseShape d = depthwise_shape(inp, weight, strides, dilation_rate, padding, fn);
  const pycnn::ConvShape& s = d.s;
  Activation act = parse_activation(activation, fn);
  std::vector<int64_t> oshape{s.N, s.OH, s.OW, s.F};
  FArray dout = as_float(dout_obj, fn, "dout");
  check_grad_shape(dout, oshape, fn, "dout");
  auto out = activation_output(out_obj, act, oshape, fn);
  FArray dweight = like(weight);
  std::optional<FArray> dinp, dbias;
  if (need_dinp) dinp = like(inp);
  if (has_bias) dbias = empty_f({s.F});
  float* pdi = dinp ? dinp->mutable_data() : nullptr;
  float* pdw = dweight.mutable_data();
  float* pdb = dbias ? dbias->mutable_data() : nullptr;
  const float *pdo = dout.data(), *pi = inp.data(), *pw = weight.data(), *po = out ? out->data() : nullptr;
  release_and_run([&] { pycnn::depthwise_conv2d_backward(pdi, pdw, pdb, pdo, pi, pw, po, d, act); });
  return py::make_tuple(dinp ? py::object(*dinp) : py::none(), dweight, dbias ? py::object(*dbias) : py::none());
}

}  // namespace

void bind_conv_family(py::module_& m) {
  m.def("conv2d_grouped_forward", &conv2d_grouped_forward_py, py::arg("inp"), py::arg("weight"),
        py::arg("bias") = py::none(), py::arg("strides") = py::make_tuple(1, 1), py::arg("padding") = "valid",
        py::arg("dilation_rate") = py::make_tuple(1, 1), py::arg("groups") = 1, py::arg("activation") = "linear",
        "Dilated and/or grouped conv2d: inp (N, H, W, C), weight (KH, KW, C // groups, F), bias (F) or None "
        "-> out (N, OH, OW, F).");
  m.def("conv2d_grouped_backward", &conv2d_grouped_backward_py, py::arg("dout"), py::arg("inp"), py::arg("weight"),
        py::arg("out") = py::none(), py::arg("strides") = py::make_tuple(1, 1), py::arg("padding") = "valid",
        py::arg("dilation_rate") = py::make_tuple(1, 1), py::arg("groups") = 1, py::arg("activation") = "linear",
        py::arg("has_bias") = true, py::arg("need_dinp") = true,
        "-> (dinp (N, H, W, C) or None, dweight (KH, KW, C // groups, F), dbias (F) or None).");
  m.def("depthwise_conv2d_forward", &depthwise_conv2d_forward_py, py::arg("inp"), py::arg("weight"),
        py::arg("bias") = py::none(), py::arg("strides") = py::make_tuple(1, 1), py::arg("padding") = "valid",
        py::arg("dilation_rate") = py::make_tuple(1, 1), py::arg("activation") = "linear",
        "Depthwise conv2d: inp (N, H, W, C), weight (KH, KW, C, M), bias (C*M) or None -> out (N, OH, OW, C*M), "
        "output channel c*M + m.");
  m.def("depthwise_conv2d_backward", &depthwise_conv2d_backward_py, py::arg("dout"), py::arg("inp"),
        py::arg("weight"), py::arg("out") = py::none(), py::arg("strides") = py::make_tuple(1, 1),
        py::arg("padding") = "valid", py::arg("dilation_rate") = py::make_tuple(1, 1),
        py::arg("activation") = "linear", py::arg("has_bias") = true, py::arg("need_dinp") = true,
        "-> (dinp (N, H, W, C) or None, dweight (KH, KW, C, M), dbias (C*M) or None).");
}

}  // namespace pycnn_py
