// The conversions every binding of a network shares (the CPU Network in bindings.cpp, the CUDA
// DeviceNetwork in cuda/bind_device_network.h, compiled into pycnn._core and pycnn._cuda):
// Python values to attributes, node specs, update and loss arguments, checked in the house's
// error format.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "bindings_common.h"
#include "executor.h"
#include "network.h"

namespace pycnn_py {

using pycnn::AttrType;
using pycnn::AttrValue;

// ---------------------------------------------------------------------------- conversions

// Python ints and NumPy integer scalars; not bools, not arrays (an ndarray has __index__ too).
inline bool is_int(const py::handle& v) {
  if (py::isinstance<py::bool_>(v)) return false;
  return PyLong_Check(v.ptr()) || py::isinstance(v, py::module_::import("numpy").attr("integer"));
}

inline bool is_number(const py::handle& v) {
  return py::isinstance<py::float_>(v) || is_int(v) || py::isinstance(v, py::module_::import("numpy").attr("floating"));
}

// An integer that fits in int64 (callers check their own narrower ranges).
inline int64_t to_int(const py::handle& v, const std::string& what = "an integer") {
  py::int_ i = py::reinterpret_steal<py::int_>(PyNumber_Index(v.ptr()));
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
  if (overflow) value_error(cat("expected ", what, " within 64 bits. Received: ", std::string(py::repr(v)), "."));
  return x;
}

inline std::string as_str(const py::handle& v, const std::string& what) {
  if (!py::isinstance<py::str>(v)) type_error(cat(what, " to be a string. Received: ", std::string(py::repr(v)), "."));
  return v.cast<std::string>();
}

// A value index (node input, output, weight slot): an integer within int range.
inline int as_index(const py::handle& v, const std::string& what) {
  if (!is_int(v)) type_error(cat(what, " to be an integer. Received: ", std::string(py::repr(v)), "."));
  const int64_t x = to_int(v, what);
  if (x < -1 || x > INT32_MAX) value_error(cat(what, " to be a valid index. Received: ", x, "."));
  return static_cast<int>(x);
}

inline std::vector<int> as_indices(const py::handle& v, const std::string& what) {
  if (!py::isinstance<py::sequence>(v) || py::isinstance<py::str>(v))
    type_error(cat(what, " to be a list of integers. Received: ", std::string(py::repr(v)), "."));
  std::vector<int> out;
  for (const py::handle& item : v) out.push_back(as_index(item, what + " items"));
  return out;
}

// A Python value as the declared type of attribute `name` (lists of numbers: any sequence).
inline AttrValue convert_attr(const pycnn::AttrDef& def, const py::handle& v, const std::string& where) {
  auto bad = [&](const char* want) {
    type_error(cat(where, " expected attribute '", def.name, "' to be ", want, ". Received: ", def.name, "=",
                   std::string(py::repr(v)), "."));
  };
  auto items = [&](const char* want) {
    if (!py::isinstance<py::sequence>(v) || py::isinstance<py::str>(v)) bad(want);
    return py::reinterpret_borrow<py::sequence>(v);
  };
  switch (def.type) {
    case AttrType::Int:
      if (!is_int(v)) bad("an integer");
      return to_int(v, cat(where, " attribute '", def.name, "'"));
    case AttrType::Float:
      if (!is_number(v)) bad("a number");
      return v.cast<double>();
    case AttrType::Str:
      if (!py::isinstance<py::str>(v)) bad("a string");
      return v.cast<std::string>();
    case AttrType::Ints: {
      std::vector<int64_t> out;
      for (const py::handle& item : items("a tuple of integers")) {
        if (!is_int(item)) bad("a tuple of integers");
        out.push_back(to_int(item, cat(where, " attribute '", def.name, "'")));
      }
      return out;
    }
    case AttrType::Floats: {
      if (is_number(v)) return std::vector<double>{v.cast<double>()};
      std::vector<double> out;
      for (const py::handle& item : items("a number or a tuple of numbers")) {
        if (!is_number(item)) bad("a number or a tuple of numbers");
        out.push_back(item.cast<double>());
      }
      return out;
    }
  }
  bad("a known type");
  return AttrValue{};  // not reached: bad() throws
}

inline py::object attr_to_python(const AttrValue& v) {
  return std::visit([](const auto& x) -> py::object { return py::cast(x); }, v);
}

inline std::vector<int64_t> sample_shape(const py::handle& obj, const char* fn, size_t k) {
  std::vector<int64_t> out;
  for (const py::handle& d : py::reinterpret_borrow<py::sequence>(obj)) {
    if (!is_int(d) || to_int(d, "a dimension") < 1)
      value_error(cat(fn, "() expected input_shapes[", k, "] to hold positive integers. Received: ",
                      std::string(py::repr(obj)), "."));
    out.push_back(to_int(d));
  }
  return out;
}

// A sequence of real numbers (hyper-parameters).
inline std::vector<double> numbers(const py::handle& v, const std::string& what) {
  if (!py::isinstance<py::sequence>(v) || py::isinstance<py::str>(v))
    type_error(cat(what, " expected a list of numbers. Received: ", std::string(py::repr(v)), "."));
  std::vector<double> out;
  for (const py::handle& item : v) {
    if (!is_number(item)) type_error(cat(what, " expected a list of numbers. Received: ", std::string(py::repr(v)), "."));
    out.push_back(item.cast<double>());
  }
  return out;
}

// The network description every binding of a network takes (the CPU Network and the CUDA
// DeviceNetwork): input_shapes (per input, its sample shape), nodes (kind, name, inputs, params,
// attrs, weights) and outputs, converted to compile_network's arguments. Every parameter array
// is referenced in `keep`.
struct NetworkSpecs {
  std::vector<std::vector<int64_t>> shapes;
  std::vector<pycnn::NodeSpec> specs;
  std::vector<int> outputs;
};

inline NetworkSpecs parse_network(const py::list& input_shapes, const py::list& nodes, const py::list& outputs,
                                  const char* fn, std::vector<py::object>* keep) {
  NetworkSpecs ns;
  std::vector<std::vector<int64_t>>& shapes = ns.shapes;
  std::vector<pycnn::NodeSpec>& specs = ns.specs;
  for (size_t k = 0; k < input_shapes.size(); ++k) shapes.push_back(sample_shape(input_shapes[k], fn, k));
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!py::isinstance<py::tuple>(nodes[i]) || py::len(nodes[i]) != 6)
      type_error(cat(fn, "() expected nodes[", i, "] to be (kind, name, inputs, params, attrs, weights)."));
    py::tuple t = nodes[i].cast<py::tuple>();
    pycnn::NodeSpec spec;
    spec.kind = as_str(t[0], cat(fn, "() expected nodes[", i, "] kind"));
    spec.name = t[1].is_none() ? std::string() : as_str(t[1], cat(fn, "() expected nodes[", i, "] name"));
    const pycnn::OpDef* op = pycnn::find_op(spec.kind);
    const std::string where = spec.name.empty() ? cat(fn, "(): node ", i, " (op '", spec.kind, "')")
                                                : cat(fn, "(): layer '", spec.name, "' (op '", spec.kind, "')");
    spec.inputs = as_indices(t[2], cat(fn, "() expected nodes[", i, "] inputs"));
    if (!py::isinstance<py::sequence>(t[3]) || py::isinstance<py::str>(t[3]))
      type_error(cat(fn, "() expected nodes[", i, "] params to be a list of arrays or None."));
    py::list params = py::list(t[3]);
    for (size_t k = 0; k < params.size(); ++k) {
      if (params[k].is_none()) {
        spec.params.push_back(nullptr);
        spec.param_shapes.push_back({});
        spec.writable.push_back(nullptr);
        continue;
      }
      const bool state = op && k < op->params.size() && op->params[k].state;
      auto a = exact_float(params[k], fn, cat(where.substr(std::string(fn).size() + 4), " parameter ", k), state);
      spec.params.push_back(a.data());
      spec.param_shapes.push_back(std::vector<int64_t>(a.shape(), a.shape() + a.ndim()));
      spec.writable.push_back(state ? a.mutable_data() : nullptr);
      keep->push_back(a);
    }
    if (op) {
      if (!py::isinstance<py::dict>(t[4])) type_error(cat(where, " expected attrs to be a dict."));
      for (const auto& item : t[4].cast<py::dict>()) {
        const std::string name = as_str(item.first, cat(where, " expected attribute names"));
        const pycnn::AttrDef* def = nullptr;
        for (const pycnn::AttrDef& a : op->attrs)
          if (name == a.name) def = &a;
        if (def) spec.attrs[name] = convert_attr(*def, item.second, where);
        else spec.attrs[name] = std::string();  // unknown: check_attrs names it
      }
    }
    spec.weight = as_indices(t[5], cat(where, " expected weights"));
    if (spec.weight.size() > params.size())
      value_error(cat(where, " expected at most one weight index per parameter (", params.size(),
                      "). Received: ", spec.weight.size(), "."));
    specs.push_back(std::move(spec));
  }
  ns.outputs = as_indices(outputs, cat(fn, "() expected outputs"));
  return ns;
}

// An update component's name and hyper-parameters (one list for every weight, or one list per
// weight) and its optional decay per weight, checked, for W trained weights (no arrays).
inline pycnn::StepUpdate parse_update_hyper(const py::handle& name_obj, const py::handle& hyper_obj,
                                            const py::handle& decay_obj, size_t W, const char* fn) {
  pycnn::StepUpdate u;
  const std::string name = as_str(name_obj, cat(fn, "() expected the update name"));
  u.def = pycnn::find_update(name);
  if (!u.def) value_error(cat(fn, "() has no update named '", name, "'."));
  // hyper: one list of numbers for every weight, or a list of such lists, one per weight.
  const size_t nh = u.def->hyper.size();
  py::sequence hyper = py::reinterpret_borrow<py::sequence>(hyper_obj);
  const bool per_weight = py::len(hyper) > 0 && py::isinstance<py::sequence>(hyper[0]);
  if (per_weight) {
    if (py::len(hyper) != W)
      value_error(cat(fn, "() expected one list of hyper-parameters per weight (", W, ")."));
    for (const py::handle& item : hyper) {
      std::vector<double> h = numbers(item, cat(fn, "() update '", u.def->name, "'"));
      if (h.size() != nh) value_error(cat(fn, "() expected ", nh, " hyper-parameters for update '", u.def->name, "'."));
      u.hyper.insert(u.hyper.end(), h.begin(), h.end());
    }
    u.hyper_stride = nh;
  } else {
    u.hyper = numbers(hyper, cat(fn, "() update '", u.def->name, "'"));
    if (u.hyper.size() != nh)
      value_error(cat(fn, "() expected ", nh, " hyper-parameters for update '", u.def->name, "'."));
  }
  for (double h : u.hyper)
    if (!std::isfinite(h)) value_error(cat(fn, "() expected finite hyper-parameters. Received: ", h, "."));
  for (size_t w = 0; w < (per_weight ? W : 1); ++w) {
    const std::string wrong = u.def->check(u.hyper_of(w));
    if (!wrong.empty()) value_error(cat(fn, "() update '", u.def->name, "' ", wrong));
  }
  if (!decay_obj.is_none()) {
    for (double d : numbers(decay_obj, cat(fn, "() update decay"))) {
      if (!(d >= 0.0 && d < 1.0))
        value_error(cat(fn, "() expected each weight's decay (weight_decay * learning_rate) in [0, 1). Received: ",
                        d, "."));
      u.decay.push_back(static_cast<float>(d));
    }
    if (u.decay.size() != W)
      value_error(cat(fn, "() expected one decay per weight (", W, "). Received: ", u.decay.size(), "."));
  }
  return u;
}

// Targets and weights of a loss over N rows of `cols`: class indices (N,) in [0, cols) or
// float (N, cols); sample_weight (N,) finite and >= 0.
struct LossInputs {
  pycnn::StepLoss step;
  std::vector<py::object> keep;
};

// loss: a registered loss's name (its hyper-parameters 0) or (name, [hyper-parameters]).
inline LossInputs loss_inputs(const py::object& loss, const py::object& targets, const py::object& sample_weight,
                       int64_t N, int64_t cols, const char* fn) {
  LossInputs li;
  py::object name_obj = loss, hyper_obj = py::none();
  if (py::isinstance<py::tuple>(loss)) {
    if (py::len(loss) != 2) value_error(cat(fn, "() expected loss=name or (name, hyper-parameters)."));
    name_obj = loss.cast<py::tuple>()[0];
    hyper_obj = loss.cast<py::tuple>()[1];
  }
  const std::string name = as_str(name_obj, cat(fn, "() expected the loss name"));
  li.step.def = pycnn::find_loss(name);
  if (!li.step.def) value_error(cat(fn, "() has no loss named '", name, "'."));
  const size_t nh = li.step.def->hyper.size();
  li.step.hyper.assign(nh, 0.0);
  if (!hyper_obj.is_none()) {
    li.step.hyper = numbers(hyper_obj, cat(fn, "() loss '", name, "'"));
    if (li.step.hyper.size() != nh)
      value_error(cat(fn, "() expected ", nh, " hyper-parameters for loss '", name, "'. Received: ",
                      li.step.hyper.size(), "."));
  }
  if (nh) {
    const std::string wrong = li.step.def->check(li.step.hyper.data());
    if (!wrong.empty()) value_error(cat(fn, "() loss '", name, "' ", wrong));
  }
  if (li.step.def->class_targets) {
    IArray labels = as_labels(targets, fn, "targets");
    if (labels.ndim() != 1 || labels.shape(0) != N)
      value_error(cat(fn, "() expected 'targets' of shape (", N, ",), one class index per sample. Received: ",
                      "targets.shape=", shape_str(labels), "."));
    for (int64_t r = 0; r < N; ++r)
      if (labels.data()[r] < 0 || labels.data()[r] >= cols)
        value_error(cat(fn, "() expected class indices in [0, ", cols, "). Received: targets[", r, "]=",
                        labels.data()[r], "."));
    li.step.targets = labels.data();
    li.keep.push_back(labels);
  } else {
    FArray t = as_float(targets, fn, "targets");
    if (t.size() != N * cols) value_error(cat(fn, "() expected targets of ", N, " x ", cols, " values."));
    li.step.targets = t.data();
    li.keep.push_back(t);
  }
  if (!sample_weight.is_none()) {
    FArray w = as_float(sample_weight, fn, "sample_weight");
    if (w.ndim() != 1 || w.shape(0) != N)
      value_error(cat(fn, "() expected 'sample_weight' of shape (", N, ",), one weight per sample. Received: "
                      "sample_weight.shape=", shape_str(w), "."));
    for (int64_t r = 0; r < N; ++r)
      if (!(w.data()[r] >= 0.f) || !std::isfinite(w.data()[r]))
        value_error(cat(fn, "() expected finite sample weights >= 0. Received: sample_weight[", r, "]=", w.data()[r], "."));
    li.step.sample_weight = w.data();
    li.keep.push_back(w);
  }
  return li;
}

// x: one array (N, ...) or a list, one per network input, each of its compiled shape.
inline std::vector<FArray> batch_inputs(const pycnn::Network& net, const py::object& x, const char* fn, int64_t* N) {
  std::vector<FArray> xs;
  if (py::isinstance<py::list>(x) || py::isinstance<py::tuple>(x)) {
    for (const py::handle& item : x) xs.push_back(as_float(item, fn, "x"));
  } else {
    xs.push_back(as_float(x, fn, "x"));
  }
  if (xs.size() != static_cast<size_t>(net.num_inputs))
    value_error(cat(fn, "() expected ", net.num_inputs, " input array(s). Received: ", xs.size(), "."));
  for (size_t k = 0; k < xs.size(); ++k) {
    const FArray& a = xs[k];
    std::vector<int64_t> sample(a.shape() + (a.ndim() ? 1 : 0), a.shape() + a.ndim());
    if (a.ndim() < 1 || a.shape(0) < 1 || a.shape(0) != xs[0].shape(0) || sample != net.value_shapes[k])
      value_error(cat(fn, "() expected input ", k, " of shape ", pycnn::dims_str(net.value_shapes[k]),
                      " with a non-empty batch the same for every input. Received: x.shape=", shape_str(a), "."));
  }
  *N = xs[0].shape(0);
  return xs;
}

}  // namespace pycnn_py
