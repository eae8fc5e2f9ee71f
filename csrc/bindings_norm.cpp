// Bindings of batch normalization (batchnorm.h): convert and validate, allocate outputs,
// release the GIL, call, return. Arrays are (..., C): every axis but the last is a row.
#include "bindings_common.h"

#include "batchnorm.h"

namespace pycnn_py {
namespace {

struct BnShape {
  int64_t M, C;
};

BnShape bn_shape(const FArray& inp, const char* fn) {
  if (inp.ndim() < 2)
    value_error(cat(fn, "() expected 'inp' of shape (N, ..., C) with at least 2 dimensions. Received: inp.shape=",
                    shape_str(inp), "."));
  for (py::ssize_t i = 0; i < inp.ndim(); ++i)
    if (inp.shape(i) < 1)
      value_error(cat(fn, "() expected 'inp' with every dimension >= 1. Received: inp.shape=", shape_str(inp), "."));
  const int64_t C = inp.shape(inp.ndim() - 1);
  return {static_cast<int64_t>(inp.size()) / C, C};
}

// A (C,) vector, or None when `optional` (gamma, beta of a layer with scale/center off).
std::optional<FArray> channel_vector(const py::object& obj, int64_t C, bool optional, const char* fn, const char* arg) {
  if (obj.is_none()) {
    if (optional) return std::nullopt;
    type_error(cat(fn, "() expected a float32 array of shape (", C, ",) for argument '", arg, "'. Received: None."));
  }
  FArray v = as_float(obj, fn, arg);
  if (v.ndim() != 1 || v.shape(0) != C)
    value_error(cat(fn, "() expected '", arg, "' of shape (", C, ",), one value per channel of inp. Received: ", arg,
                    ".shape=", shape_str(v), "."));
  return v;
}

float checked_epsilon(double epsilon, const char* fn) {
  if (!(epsilon > 0.0) || !std::isfinite(epsilon))
    value_error(cat(fn, "() expected epsilon > 0. Received: epsilon=", epsilon, "."));
  return static_cast<float>(epsilon);
}

const float* ptr(const std::optional<FArray>& a) { return a ? a->data() : nullptr; }

py::tuple forward_train_py(const py::object& inp_obj, const py::object& gamma_obj, const py::object& beta_obj,
                           double epsilon) {
  const char* fn = "batchnorm_forward_train";
  FArray inp = as_float(inp_obj, fn, "inp");
  const BnShape s = bn_shape(inp, fn);
  auto gamma = channel_vector(gamma_obj, s.C, true, fn, "gamma");
  auto beta = channel_vector(beta_obj, s.C, true, fn, "beta");
  const float eps = checked_epsilon(epsilon, fn);
  FArray out = like(inp), mean = empty_f({s.C}), var = empty_f({s.C});
  float *po = out.mutable_data(), *pm = mean.mutable_data(), *pv = var.mutable_data();
  const float *pi = inp.data(), *pg = ptr(gamma), *pb = ptr(beta);
  release_and_run([&] { pycnn::batchnorm_forward_train(po, pm, pv, pi, pg, pb, s.M, s.C, eps); });
  return py::make_tuple(out, mean, var);
}

py::tuple backward_py(const py::object& dout_obj, const py::object& inp_obj, const py::object& gamma_obj,
                      const py::object& mean_obj, const py::object& var_obj, double epsilon, bool has_beta,
                      bool need_dinp, bool training) {
  const char* fn = training ? "batchnorm_backward_train" : "batchnorm_backward_infer";
  FArray inp = as_float(inp_obj, fn, "inp");
  const BnShape s = bn_shape(inp, fn);
  FArray dout = as_float(dout_obj, fn, "dout");
  expect_same_shape(dout, inp, fn, "dout", "inp");
  auto gamma = channel_vector(gamma_obj, s.C, true, fn, "gamma");
  auto mean = channel_vector(mean_obj, s.C, false, fn, training ? "mean" : "moving_mean");
  auto var = channel_vector(var_obj, s.C, false, fn, training ? "var" : "moving_var");
  const float eps = checked_epsilon(epsilon, fn);
  std::optional<FArray> dinp, dgamma, dbeta;
  if (need_dinp) dinp = like(inp);
  if (gamma) dgamma = empty_f({s.C});
  if (has_beta) dbeta = empty_f({s.C});
  float* pdi = dinp ? dinp->mutable_data() : nullptr;
  float* pdg = dgamma ? dgamma->mutable_data() : nullptr;
  float* pdb = dbeta ? dbeta->mutable_data() : nullptr;
  const float *pdo = dout.data(), *pi = inp.data(), *pg = ptr(gamma), *pm = ptr(mean), *pv = ptr(var);
  release_and_run([&] {
    if (training)
      pycnn::batchnorm_backward_train(pdi, pdg, pdb, pdo, pi, pg, pm, pv, s.M, s.C, eps);
    else
      pycnn::batchnorm_backward_infer(pdi, pdg, pdb, pdo, pi, pg, pm, pv, s.M, s.C, eps);
  });
  auto obj = [](const std::optional<FArray>& a) { return a ? py::object(*a) : py::object(py::none()); };
  return py::make_tuple(obj(dinp), obj(dgamma), obj(dbeta));
}

FArray forward_infer_py(const py::object& inp_obj, const py::object& gamma_obj, const py::object& beta_obj,
                        const py::object& mean_obj, const py::object& var_obj, double epsilon) {
  const char* fn = "batchnorm_forward_infer";
  FArray inp = as_float(inp_obj, fn, "inp");
  const BnShape s = bn_shape(inp, fn);
  auto gamma = channel_vector(gamma_obj, s.C, true, fn, "gamma");
  auto beta = channel_vector(beta_obj, s.C, true, fn, "beta");
  auto mean = channel_vector(mean_obj, s.C, false, fn, "moving_mean");
  auto var = channel_vector(var_obj, s.C, false, fn, "moving_var");
  const float eps = checked_epsilon(epsilon, fn);
  FArray out = like(inp);
  float* po = out.mutable_data();
  const float *pi = inp.data(), *pg = ptr(gamma), *pb = ptr(beta), *pm = ptr(mean), *pv = ptr(var);
  release_and_run([&] { pycnn::batchnorm_forward_infer(po, pi, pg, pb, pm, pv, s.M, s.C, eps); });
  return out;
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("batchnorm_forward_train", &forward_train_py, py::arg("inp"), py::arg("gamma") = py::none(),
        py::arg("beta") = py::none(), py::arg("epsilon") = 1e-3,
        "inp (..., C), gamma/beta (C,) or None -> (out, batch mean (C,), batch variance (C,), biased).");
  m.def("batchnorm_backward_train",
        [](const py::object& dout, const py::object& inp, const py::object& gamma, const py::object& mean,
           const py::object& var, double epsilon, bool has_beta, bool need_dinp) {
          return backward_py(dout, inp, gamma, mean, var, epsilon, has_beta, need_dinp, true);
        },
        py::arg("dout"), py::arg("inp"), py::arg("gamma"), py::arg("mean"), py::arg("var"), py::arg("epsilon") = 1e-3,
        py::arg("has_beta").noconvert() = true, py::arg("need_dinp").noconvert() = true,
        "Through the batch statistics the forward wrote -> (dinp or None, dgamma or None, dbeta or None).");
  m.def("batchnorm_forward_infer", &forward_infer_py, py::arg("inp"), py::arg("gamma"), py::arg("beta"),
        py::arg("moving_mean"), py::arg("moving_var"), py::arg("epsilon") = 1e-3,
        "out = gamma * (inp - moving_mean) / sqrt(moving_var + epsilon) + beta.");
  m.def("batchnorm_backward_infer",
        [](const py::object& dout, const py::object& inp, const py::object& gamma, const py::object& mean,
           const py::object& var, double epsilon, bool has_beta, bool need_dinp) {
          return backward_py(dout, inp, gamma, mean, var, epsilon, has_beta, need_dinp, false);
        },
        py::arg("dout"), py::arg("inp"), py::arg("gamma"), py::arg("moving_mean"), py::arg("moving_var"),
        py::arg("epsilon") = 1e-3, py::arg("has_beta").noconvert() = true, py::arg("need_dinp").noconvert() = true,
        "With the moving statistics as constants -> (dinp or None, dgamma or None, dbeta or None).");
}

}  // namespace pycnn_py
