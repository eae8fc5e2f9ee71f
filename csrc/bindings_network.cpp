// Bindings of the whole-network step (network.h): Python's node tuples -> pycnn::Network.
//
// A network is a list of node tuples in topological order:
//   (kind, inputs, params, grads, ints, strs[, floats[, state]])
// kind names an op family's NetOp ('conv2d', 'dense', 'concatenate', ...); inputs are value
// indices (0 .. K-1 the network's inputs, K + i node i's output); params are float32 arrays
// or None (an absent bias); grads, used only by network_train_step, are None or writeable
// float32 arrays of the params' sizes that receive the gradients (None: frozen); ints and
// strs (and floats) are the op's hyper-parameters, checked by the op's own parse (in its
// kernel file); state, used only by network_train_step, holds None or writeable float32
// arrays the op fills for the caller (batch normalization's batch moments).
// The binding converts and keeps every array, then hands plain C++ to the op.
#include "bindings_common.h"

#include "network.h"

namespace pycnn_py {
namespace {

struct ParsedNetwork {
  pycnn::Network net;
  std::vector<py::object> keep;  // every array whose pointer the network holds
};

std::vector<int64_t> array_dims(const py::array& a, py::ssize_t from = 0) {
  return std::vector<int64_t>(a.shape() + from, a.shape() + a.ndim());
}

template <class T>
std::vector<T> cast_items(const py::handle& obj, const char* fn, size_t i, const char* field, const char* what) {
  std::vector<T> out;
  if (!py::isinstance<py::tuple>(obj) && !py::isinstance<py::list>(obj))
    type_error(cat(fn, "() expected layers[", i, "]'s ", field, " to be a tuple of ", what, ". Received: ",
                   std::string(py::repr(obj)), "."));
  for (const py::handle& item : obj) {
    if (std::is_same<T, int64_t>::value && (py::isinstance<py::bool_>(item) || !py::isinstance<py::int_>(item)))
      type_error(cat(fn, "() expected layers[", i, "]'s ", field, " to hold ", what, ". Received: ",
                     std::string(py::repr(obj)), "."));
    if (std::is_same<T, std::string>::value && !py::isinstance<py::str>(item))
      type_error(cat(fn, "() expected layers[", i, "]'s ", field, " to hold ", what, ". Received: ",
                     std::string(py::repr(obj)), "."));
    try {
      out.push_back(item.cast<T>());
    } catch (const py::cast_error&) {
      value_error(cat(fn, "() could not read layers[", i, "]'s ", field, ": ", std::string(py::repr(obj)), "."));
    }
  }
  return out;
}

ParsedNetwork parse_network(const py::list& layers, const std::vector<FArray>& inputs, bool train, const char* fn) {
  ParsedNetwork parsed;
  pycnn::Network& net = parsed.net;
  if (layers.size() == 0) value_error(cat(fn, "() expected at least one layer."));
  std::vector<std::vector<int64_t>> value_shapes;
  for (const FArray& x : inputs) {
    value_shapes.push_back(array_dims(x, 1));
    net.input_sizes.push_back(pycnn::net_size(value_shapes.back()));
  }
  net.num_inputs = static_cast<int>(inputs.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    py::tuple spec;
    if (!py::isinstance<py::tuple>(layers[i])) type_error(cat(fn, "() expected layers[", i, "] to be a tuple."));
    spec = layers[i].cast<py::tuple>();
    if (spec.size() < 6 || spec.size() > 8)
      value_error(cat(fn, "() expected layers[", i, "] to be (kind, inputs, params, grads, ints, strs[, floats[, state]]). "
                      "Received a tuple of ", spec.size(), " items."));
    if (!py::isinstance<py::str>(spec[0]))
      type_error(cat(fn, "() expected layers[", i, "][0] (the kind) to be a string. Received: ",
                     std::string(py::repr(spec[0])), "."));
    const std::string kind = spec[0].cast<std::string>();
    pycnn::NetNode node;
    node.op = pycnn::find_net_op(kind);
    if (!node.op) value_error(cat(fn, "() does not know layer kind '", kind, "' (layers[", i, "])."));
    pycnn::NetArgs args;
    args.where = cat(fn, "() layers[", i, "] ('", kind, "')");
    for (int64_t v : cast_items<int64_t>(spec[1], fn, i, "inputs", "value indices")) {
      if (v < 0 || v >= static_cast<int64_t>(value_shapes.size()))
        value_error(cat(args.where, " reads value ", v, ", but only values 0 .. ", value_shapes.size() - 1,
                        " exist before it (the inputs, then earlier layers)."));
      node.inputs.push_back(static_cast<int>(v));
      args.in_shapes.push_back(value_shapes[v]);
      node.in_sizes.push_back(pycnn::net_size(value_shapes[v]));
    }
    if (node.inputs.empty()) value_error(cat(args.where, " expected at least one input."));
    py::list params = py::list(spec[2]);
    if (params.size() > static_cast<size_t>(pycnn::kMaxNodeParams))
      value_error(cat(args.where, " has ", params.size(), " parameters; at most ", pycnn::kMaxNodeParams, "."));
    node.nparams = static_cast<int>(params.size());
    for (size_t k = 0; k < params.size(); ++k) {
      if (params[k].is_none()) {
        args.params.push_back(nullptr);
        args.param_shapes.push_back({});
        continue;
      }
      FArray p = as_float(params[k], fn, "params");
      node.param[k] = p.data();
      node.param_size[k] = p.size();
      args.params.push_back(p.data());
      args.param_shapes.push_back(array_dims(p));
      parsed.keep.push_back(p);
    }
    args.ints = cast_items<int64_t>(spec[4], fn, i, "ints", "integers");
    args.strs = cast_items<std::string>(spec[5], fn, i, "strs", "strings");
    if (spec.size() > 6) args.floats = cast_items<double>(spec[6], fn, i, "floats", "numbers");
    if (train && spec.size() > 7) {
      py::list state = py::list(spec[7]);
      if (state.size() > static_cast<size_t>(pycnn::kMaxNodeParams))
        value_error(cat(args.where, " has ", state.size(), " state arrays; at most ", pycnn::kMaxNodeParams, "."));
      for (size_t k = 0; k < state.size(); ++k) {
        if (state[k].is_none()) {
          args.state.push_back(nullptr);
          args.state_shapes.push_back({});
          continue;
        }
        auto a = inplace_float(state[k], fn, "state", i);
        node.state[k] = a.mutable_data();
        args.state.push_back(a.mutable_data());
        args.state_shapes.push_back(array_dims(a));
        parsed.keep.push_back(a);
      }
    }
    std::vector<int64_t> out_shape;
    try {
      out_shape = node.op->parse(node, args);
    } catch (const std::invalid_argument& err) {
      value_error(err.what());
    }
    if (train && !spec[3].is_none()) {
      py::list grads = py::list(spec[3]);
      if (grads.size() != params.size())
        value_error(cat(args.where, " expected one gradient buffer (or None) per parameter: ", params.size(),
                        ". Received: ", grads.size(), "."));
      for (size_t k = 0; k < grads.size(); ++k) {
        if (grads[k].is_none()) continue;
        if (!node.param[k]) value_error(cat(args.where, " has a gradient buffer for the absent parameter ", k, "."));
        auto g = inplace_float(grads[k], fn, "dweight", i);
        if (g.size() != node.param_size[k])
          value_error(cat(args.where, " expected its gradient buffer ", k, " to have the parameter's ",
                          node.param_size[k], " values. Received: ", g.size(), "."));
        node.dparam[k] = g.mutable_data();
        parsed.keep.push_back(g);
      }
    }
    node.out_size = pycnn::net_size(out_shape);
    value_shapes.push_back(out_shape);
    net.nodes.push_back(std::move(node));
  }
  net.out_shape = value_shapes.back();
  net.finalize();
  return parsed;
}

// x: one array (N, ...) or a list of them, one per network input, with equal N.
std::vector<FArray> network_inputs(const py::object& x_obj, const char* fn) {
  std::vector<FArray> xs;
  if (py::isinstance<py::list>(x_obj) || py::isinstance<py::tuple>(x_obj)) {
    for (const py::handle& item : x_obj) xs.push_back(as_float(item, fn, "x"));
    if (xs.empty()) value_error(cat(fn, "() expected at least one input array. Received: an empty list."));
  } else {
    xs.push_back(as_float(x_obj, fn, "x"));
  }
  for (const FArray& a : xs)
    if (a.ndim() < 2 || a.shape(0) < 1 || a.shape(0) != xs[0].shape(0))
      value_error(cat(fn, "() expected non-empty batches of shape (N, ...) with the same N for every input. "
                      "Received: x.shape=", shape_str(a), " (first input: ", shape_str(xs[0]), ")."));
  return xs;
}

std::vector<const float*> input_pointers(const std::vector<FArray>& xs) {
  std::vector<const float*> p;
  for (const FArray& a : xs) p.push_back(a.data());
  return p;
}

// adam = (alpha, beta_1, beta_2, epsilon, weights, m, v): flat lists over the trained
// parameters in node order, updated in place in the same native call.
void attach_adam(ParsedNetwork* parsed, const py::tuple& adam, pycnn::AdamStep* step, const char* fn) {
  if (adam.size() != 7)
    value_error(cat(fn, "() expected adam=(alpha, beta_1, beta_2, epsilon, weights, m, v). Received a tuple of ",
                    adam.size(), " items."));
  *step = {adam[0].cast<float>(), adam[1].cast<float>(), adam[2].cast<float>(), adam[3].cast<float>()};
  check_adam_hyper(step->alpha, step->beta_1, step->beta_2, step->epsilon, fn);
  py::list ws = adam[4].cast<py::list>(), ms = adam[5].cast<py::list>(), vs = adam[6].cast<py::list>();
  size_t k = 0;
  for (pycnn::NetNode& node : parsed->net.nodes) {
    for (int p = 0; p < node.nparams; ++p) {
      if (!node.dparam[p]) continue;
      if (k >= ws.size() || k >= ms.size() || k >= vs.size())
        value_error(cat(fn, "() expected one adam weight, m and v per trained parameter. Received: ", ws.size(),
                        ", ", ms.size(), " and ", vs.size(), "."));
      auto w = inplace_float(ws[k], fn, "adam weights", k);
      auto m = inplace_float(ms[k], fn, "adam m", k);
      auto v = inplace_float(vs[k], fn, "adam v", k);
      if (w.data() != node.param[p])
        value_error(cat(fn, "() expected adam weights[", k, "] to be the same array as the layer's parameter."));
      if (m.size() != node.param_size[p] || v.size() != node.param_size[p])
        value_error(cat(fn, "() expected adam m[", k, "] and v[", k, "] of ", node.param_size[p], " values. Received: ",
                        m.size(), " and ", v.size(), "."));
      node.param_rw[p] = w.mutable_data();
      node.adam_m[p] = m.mutable_data();
      node.adam_v[p] = v.mutable_data();
      parsed->keep.push_back(w);
      parsed->keep.push_back(m);
      parsed->keep.push_back(v);
      ++k;
    }
  }
  if (k != ws.size())
    value_error(cat(fn, "() expected ", k, " adam parameters (one per trained parameter). Received: ", ws.size(), "."));
}

py::tuple network_train_step_py(const py::object& x_obj, const py::object& labels_obj, const py::list& layers,
                                const py::object& adam, const py::object& sample_weight_obj,
                                const py::object& logits_out_obj) {
  const char* fn = "network_train_step";
  std::vector<FArray> xs = network_inputs(x_obj, fn);
  ParsedNetwork parsed = parse_network(layers, xs, true, fn);
  pycnn::AdamStep step{};
  if (!adam.is_none()) attach_adam(&parsed, adam.cast<py::tuple>(), &step, fn);
  if (parsed.net.out_shape.size() != 1)
    value_error(cat(fn, "() expected the network to end in (N, classes) logits. Received output shape ",
                    pycnn::net_dims_str(parsed.net.out_shape), "."));
  const int64_t N = xs[0].shape(0), classes = parsed.net.out_shape[0];
  IArray labels = checked_labels(labels_obj, N, classes, fn);
  std::vector<const float*> px = input_pointers(xs);
  const int64_t* pl = labels.data();
  double loss = 0.0;
  int64_t correct = 0;
  pycnn::StepExtras extras;
  std::optional<FArray> sample_weight;
  if (!sample_weight_obj.is_none()) {
    sample_weight = as_float(sample_weight_obj, fn, "sample_weight");
    if (sample_weight->ndim() != 1 || sample_weight->shape(0) != N)
      value_error(cat(fn, "() expected 'sample_weight' of shape (", N, ",), one weight per sample. Received: "
                      "sample_weight.shape=", shape_str(*sample_weight), "."));
    const float* pw = sample_weight->data();
    for (int64_t r = 0; r < N; ++r)
      if (!(pw[r] >= 0.f) || !std::isfinite(pw[r]))
        value_error(cat(fn, "() expected finite sample weights >= 0. Received: sample_weight[", r, "]=", pw[r], "."));
    extras.sample_weight = pw;
  }
  std::optional<py::array_t<float>> logits_out;
  if (!logits_out_obj.is_none()) {
    logits_out = inplace_float(logits_out_obj, fn, "logits_out", 0);
    if (logits_out->ndim() != 2 || logits_out->shape(0) != N || logits_out->shape(1) != classes)
      value_error(cat(fn, "() expected 'logits_out' of shape (", N, ", ", classes, "). Received: logits_out.shape=",
                      shape_str(*logits_out), "."));
    extras.logits_out = logits_out->mutable_data();
  }
  release_and_run([&] {
    loss = pycnn::network_train_step(parsed.net, px, pl, N, classes, &correct, adam.is_none() ? nullptr : &step,
                                     &extras);
  });
  return py::make_tuple(loss, correct);
}

FArray network_predict_py(const py::object& x_obj, const py::list& layers, bool softmax) {
  const char* fn = "network_predict";
  std::vector<FArray> xs = network_inputs(x_obj, fn);
  ParsedNetwork parsed = parse_network(layers, xs, false, fn);
  const std::vector<int64_t>& shape = parsed.net.out_shape;
  std::vector<py::ssize_t> oshape{xs[0].shape(0)};
  for (int64_t v : shape) oshape.push_back(v);
  if (softmax && (shape.empty() || shape.back() < 1))
    value_error(cat(fn, "() needs a non-empty last axis for softmax. Received output shape ",
                    pycnn::net_dims_str(shape), "."));
  FArray out(oshape);
  float* po = out.mutable_data();
  std::vector<const float*> px = input_pointers(xs);
  const int64_t N = xs[0].shape(0);
  release_and_run([&] { pycnn::network_predict(parsed.net, px, N, po, softmax ? shape.back() : 0); });
  return out;
}

}  // namespace

void bind_network(py::module_& m) {
  m.def("network_train_step", &network_train_step_py, py::arg("x"), py::arg("labels"), py::arg("layers"),
        py::arg("adam") = py::none(), py::arg("sample_weight") = py::none(), py::arg("logits_out") = py::none(),
        "Forward, mean softmax cross-entropy against integer labels, and backward of a whole network (a list of "
        "(kind, inputs, params, grads, ints, strs[, floats[, state]]) node tuples in topological order) in one call; "
        "x is one array or a list, one per network input. Writes every gradient buffer. adam=(alpha, beta_1, beta_2, "
        "epsilon, weights, m, v) also applies that Adam step in place, unless the loss is not finite. sample_weight "
        "(N,) makes the loss sum(w * loss) / N; logits_out (N, classes) receives the logits. Returns (loss, number "
        "of correct argmax predictions).");
  m.def("network_predict", &network_predict_py, py::arg("x"), py::arg("layers"), py::arg("softmax") = false,
        "Forward of a whole network; softmax over the last axis of the output when asked.");
}

}  // namespace pycnn_py
