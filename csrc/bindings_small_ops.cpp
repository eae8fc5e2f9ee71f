// Bindings of zero padding / cropping, rescaling and leaky ReLU (padding.h, rescaling.h,
// activation.h): convert and validate, allocate outputs, release the GIL, call, return.
#include "bindings_common.h"

#include "activation.h"
#include "padding.h"
#include "rescaling.h"

namespace pycnn_py {
namespace {

// ---------------------------------------------------------------------------- padding, cropping

struct Sides {
  int64_t T, B, L, R;
};

// (top, bottom, left, right): 4 integers >= 0 (never bools).
Sides four_sides(const py::handle& obj, const char* fn, const char* arg) {
  constexpr int64_t kMax = 2147483647;
  std::vector<int64_t> v;
  bool ok = py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj);
  if (ok) {
    for (const py::handle& item : obj) {
      if (!PyIndex_Check(item.ptr()) || py::isinstance<py::bool_>(item) ||
          py::isinstance(item, py::module_::import("numpy").attr("bool_"))) {
        ok = false;
        break;
      }
      const py::int_ value = py::reinterpret_steal<py::int_>(PyNumber_Index(item.ptr()));
      if (!value) throw py::error_already_set();
      if (!(value <= py::int_(kMax) && value >= py::int_(0))) {
        ok = false;
        break;
      }
      v.push_back(value.cast<int64_t>());
    }
  }
  if (!ok || v.size() != 4)
    value_error(cat(fn, "() expected '", arg, "' to be 4 integers >= 0 (top, bottom, left, right). Received: ", arg,
                    "=", std::string(py::repr(obj)), "."));
  return {v[0], v[1], v[2], v[3]};
}

void expect_image(const FArray& a, const char* fn, const char* arg) {
  expect_ndim(a, 4, fn, arg, "(N, H, W, C)");
  for (py::ssize_t i = 0; i < 4; ++i)
    if (a.shape(i) < 1)
      value_error(cat(fn, "() expected '", arg, "' with every dimension >= 1. Received: ", arg, ".shape=", shape_str(a),
                      "."));
}

// The four copies. `grow`: the output is the larger image (padding forward, cropping
// backward), else the smaller one, which must not be empty. Padding's kernels take the
// small image's H and W, cropping's the large image's (`sizes_of_large`).
template <class Kernel>
FArray pad_or_crop(const py::object& x_obj, const py::handle& sides, bool grow, bool sizes_of_large, const char* fn,
                   const char* arg, const char* sides_arg, Kernel kernel) {
  FArray x = as_float(x_obj, fn, arg);
  expect_image(x, fn, arg);
  const Sides s = four_sides(sides, fn, sides_arg);
  const int64_t N = x.shape(0), XH = x.shape(1), XW = x.shape(2), C = x.shape(3);
  const int64_t OH = grow ? XH + s.T + s.B : XH - s.T - s.B;
  const int64_t OW = grow ? XW + s.L + s.R : XW - s.L - s.R;
  if (OH < 1 || OW < 1)
    value_error(cat(fn, "(): computed output size would be zero or negative. Received: ", arg, ".shape=", shape_str(x),
                    ", ", sides_arg, "=", std::string(py::repr(sides)), "."));
  FArray out = empty_f({N, OH, OW, C});
  float* po = out.mutable_data();
  const float* px = x.data();
  const bool out_is_large = grow;
  const int64_t H = (sizes_of_large == out_is_large) ? OH : XH, W = (sizes_of_large == out_is_large) ? OW : XW;
  release_and_run([&] { kernel(po, px, N, H, W, C, s.T, s.B, s.L, s.R); });
  return out;
}

// ---------------------------------------------------------------------------- rescaling

// scale / offset: a number or a 0-D / 1-D array of 1 or C values.
FArray scale_vector(const py::object& obj, int64_t C, const char* fn, const char* arg) {
  FArray a = as_float(obj, fn, arg);
  if (a.ndim() > 1 || (a.size() != 1 && a.size() != C))
    value_error(cat(fn, "() expected '", arg, "' to be a number or a 1-D array of 1 or ", C,
                    " values (one per channel of the last axis). Received: ", arg, ".shape=", shape_str(a), "."));
  return a;
}

// Both as K values: K = 1 when both are single numbers, else C (a single number repeated).
std::pair<FArray, FArray> scale_offset(const FArray& scale, const FArray& offset, int64_t C, int64_t* K) {
  *K = (scale.size() == 1 && offset.size() == 1) ? 1 : C;
  auto expand = [&](const FArray& a) {  // a copy of K values (small: at most C)
    FArray e = empty_f({*K});
    for (int64_t k = 0; k < *K; ++k) e.mutable_data()[k] = a.data()[a.size() == 1 ? 0 : k];
    return e;
  };
  return {expand(scale), expand(offset)};
}

FArray rescaling_forward_py(const py::object& inp_obj, const py::object& scale_obj, const py::object& offset_obj) {
  const char* fn = "rescaling_forward";
  FArray inp = as_float(inp_obj, fn, "inp");
  if (inp.ndim() < 1) value_error(cat(fn, "() expected 'inp' with at least one axis. Received: a 0-D array."));
  const int64_t C = inp.shape(inp.ndim() - 1);
  FArray scale = scale_vector(scale_obj, C, fn, "scale"), offset = scale_vector(offset_obj, C, fn, "offset");
  int64_t K = 1;
  auto so = scale_offset(scale, offset, C, &K);
  FArray out = like(inp);
  const int64_t M = K > 0 ? static_cast<int64_t>(inp.size()) / K : 0;
  float* po = out.mutable_data();
  const float *pi = inp.data(), *ps = so.first.data(), *pof = so.second.data();
  if (inp.size() > 0) release_and_run([&] { pycnn::rescaling_forward(po, pi, ps, pof, M, K); });
  return out;
}

FArray rescaling_backward_py(const py::object& dout_obj, const py::object& scale_obj) {
  const char* fn = "rescaling_backward";
  FArray dout = as_float(dout_obj, fn, "dout");
  if (dout.ndim() < 1) value_error(cat(fn, "() expected 'dout' with at least one axis. Received: a 0-D array."));
  const int64_t C = dout.shape(dout.ndim() - 1);
  FArray scale = scale_vector(scale_obj, C, fn, "scale");
  int64_t K = 1;
  FArray zero = empty_f({1});
  zero.mutable_data()[0] = 0.f;
  auto so = scale_offset(scale, zero, C, &K);
  FArray dinp = like(dout);
  const int64_t M = K > 0 ? static_cast<int64_t>(dout.size()) / K : 0;
  float* pd = dinp.mutable_data();
  const float *pg = dout.data(), *ps = so.first.data();
  if (dout.size() > 0) release_and_run([&] { pycnn::rescaling_backward(pd, pg, ps, M, K); });
  return dinp;
}

// ---------------------------------------------------------------------------- leaky relu

float check_slope(double negative_slope, const char* fn) {
  if (!(negative_slope >= 0) || !std::isfinite(negative_slope))
    value_error(cat(fn, "() expected negative_slope to be a finite number >= 0. Received: negative_slope=",
                    negative_slope, "."));
  return static_cast<float>(negative_slope);
}

FArray leaky_relu_forward_py(const py::object& inp_obj, double negative_slope) {
  const char* fn = "leaky_relu_forward";
  const float a = check_slope(negative_slope, fn);
  FArray inp = as_float(inp_obj, fn, "inp");
  FArray out = like(inp);
  float* po = out.mutable_data();
  const float* pi = inp.data();
  const int64_t n = inp.size();
  release_and_run([&] { pycnn::leaky_relu_forward(po, pi, n, a); });
  return out;
}

FArray leaky_relu_backward_py(const py::object& dout_obj, const py::object& out_obj, double negative_slope) {
  const char* fn = "leaky_relu_backward";
  const float a = check_slope(negative_slope, fn);
  FArray dout = as_float(dout_obj, fn, "dout");
  FArray out = as_float(out_obj, fn, "out");
  expect_same_shape(dout, out, fn, "dout", "out");
  FArray dinp = like(out);
  float* pd = dinp.mutable_data();
  const float *pg = dout.data(), *po = out.data();
  const int64_t n = out.size();
  release_and_run([&] { pycnn::leaky_relu_backward(pd, pg, po, n, a); });
  return dinp;
}

}  // namespace

void bind_small_ops(py::module_& m) {
  m.def("zero_padding2d_forward",
        [](const py::object& x, const py::object& padding) {
          return pad_or_crop(x, padding, true, false, "zero_padding2d_forward", "inp", "padding",
                             pycnn::zero_padding2d_forward);
        },
        py::arg("inp"), py::arg("padding"),
        "inp (N, H, W, C), padding (top, bottom, left, right) -> (N, top + H + bottom, left + W + right, C), "
        "zeros around inp.");
  m.def("zero_padding2d_backward",
        [](const py::object& d, const py::object& padding) {
          return pad_or_crop(d, padding, false, false, "zero_padding2d_backward", "dout", "padding",
                             pycnn::zero_padding2d_backward);
        },
        py::arg("dout"), py::arg("padding"), "dout (N, OH, OW, C) -> dinp: the crop of dout without the padding.");
  m.def("cropping2d_forward",
        [](const py::object& x, const py::object& cropping) {
          return pad_or_crop(x, cropping, false, true, "cropping2d_forward", "inp", "cropping",
                             pycnn::cropping2d_forward);
        },
        py::arg("inp"), py::arg("cropping"),
        "inp (N, H, W, C), cropping (top, bottom, left, right) -> (N, H - top - bottom, W - left - right, C).");
  m.def("cropping2d_backward",
        [](const py::object& d, const py::object& cropping) {
          return pad_or_crop(d, cropping, true, true, "cropping2d_backward", "dout", "cropping",
                             pycnn::cropping2d_backward);
        },
        py::arg("dout"), py::arg("cropping"), "dout (N, OH, OW, C) -> dinp: dout in a zero frame of the input's size.");
  m.def("rescaling_forward", &rescaling_forward_py, py::arg("inp"), py::arg("scale"), py::arg("offset"),
        "inp * scale + offset; scale and offset are numbers or (C,) arrays over the last axis. Same shape.");
  m.def("rescaling_backward", &rescaling_backward_py, py::arg("dout"), py::arg("scale"), "dout * scale.");
  m.def("leaky_relu_forward", &leaky_relu_forward_py, py::arg("inp"), py::arg("negative_slope"),
        "x > 0 ? x : negative_slope * x (negative_slope >= 0). Same shape.");
  m.def("leaky_relu_backward", &leaky_relu_backward_py, py::arg("dout"), py::arg("out"), py::arg("negative_slope"),
        "(dout, forward output) -> dinp = out > 0 ? dout : negative_slope * dout.");
}

}  // namespace pycnn_py
