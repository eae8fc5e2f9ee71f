// The compiled module pycnn._core: one generic binding for every op and network.
//
//   ops(), activations(), losses(), updates()  what the registries hold (kind, attributes,
//                                               element type read, inference only...)
//   Network(input_shapes, nodes, outputs, input_grads)   compiled once; holds its arrays
//     .train_step / .forward -> Tape / .backward / .commit / .predict   the CPU executor
//   apply_update(...), loss(...)                the update and loss components on their own
//   build_info(), set/get_num_threads(), set/get_isa()
//
// A node is (kind, name, inputs, params, attrs, weights): params are float32 arrays or None,
// attrs a dict checked against the op's declared attributes, weights the trained-weight index
// of each param (-1: not trained). Every array whose pointer the C++ keeps is referenced by
// the Network (or Tape) object; inputs are converted, never the arrays written through.
#include <new>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <stdexcept>

#include "activation.h"
#include "bindings_common.h"
#include "bindings_network.h"
#include "cuda/bind_device_network.h"
#include "executor.h"
#include "network.h"
#include "peak.h"
#include "quantized.h"
#include "runtime.h"

namespace pycnn_py {
namespace {


// ---------------------------------------------------------------------------- Network

struct PyNetwork {
  pycnn::Network net;
  std::vector<py::object> keep;  // every array whose pointer the network holds
  std::vector<std::vector<float*>> weight_params;  // per trained weight, the node params that are it
};

struct PyTape {
  pycnn::TapePtr tape;
  std::vector<py::object> keep;  // the inputs the tape reads again in backward
  std::shared_ptr<PyNetwork> owner;
};

std::shared_ptr<PyNetwork> make_network(const py::list& input_shapes, const py::list& nodes, const py::list& outputs,
                                        bool input_grads) {
  const char* fn = "Network";
  auto pn = std::make_shared<PyNetwork>();
  NetworkSpecs ns = parse_network(input_shapes, nodes, outputs, fn, &pn->keep);
  try {
    pn->net = pycnn::compile_network(ns.shapes, ns.specs, ns.outputs, input_grads, fn);
  } catch (const std::invalid_argument& err) {
    value_error(err.what());
  }
  pn->weight_params.resize(pn->net.weight_sizes.size());
  for (const pycnn::Node& n : pn->net.nodes)
    for (int p = 0; p < n.nparams; ++p)
      if (n.weight[p] >= 0) pn->weight_params[n.weight[p]].push_back(const_cast<float*>(n.param[p]));
  return pn;
}


std::vector<const float*> pointers(const std::vector<FArray>& xs) {
  std::vector<const float*> p;
  for (const FArray& a : xs) p.push_back(a.data());
  return p;
}

// A result array on a 64-byte boundary, as the executor's own buffers are (NumPy's are 16-byte
// aligned): backward writes the input gradients straight into it, in whole vectors.
FArray new_batch(int64_t N, const std::vector<int64_t>& sample) {
  std::vector<py::ssize_t> shape{N};
  shape.insert(shape.end(), sample.begin(), sample.end());
  std::size_t count = 1;
  for (py::ssize_t d : shape) count *= static_cast<std::size_t>(d);
  void* data = ::operator new(std::max<std::size_t>(count, 1) * sizeof(float), std::align_val_t(64));
  py::capsule owner(data, [](void* p) { ::operator delete(p, std::align_val_t(64)); });
  return FArray(shape, static_cast<float*>(data), owner);
}

// Arrays of one trained weight each, written by the call.
std::vector<float*> weight_arrays(const PyNetwork& pn, const py::list& arrays, const char* fn, const char* what,
                                  std::vector<py::object>* keep) {
  const auto& sizes = pn.net.weight_sizes;
  if (arrays.size() != sizes.size())
    value_error(cat(fn, "() expected ", sizes.size(), " ", what, " arrays (one per trained weight). Received: ",
                    arrays.size(), "."));
  std::vector<float*> out;
  for (size_t w = 0; w < sizes.size(); ++w) {
    auto a = exact_float(arrays[w], fn, cat(what, "[", w, "]"), true);
    if (a.size() != sizes[w])
      value_error(cat(fn, "() expected ", what, "[", w, "] of ", sizes[w], " values. Received: ", a.size(), "."));
    out.push_back(a.mutable_data());
    keep->push_back(a);
  }
  return out;
}

// update = (name, hyper, weights, slots): the registered update applied to weights (the
// network's own parameter arrays) with their slot arrays.
pycnn::StepUpdate make_update(const PyNetwork* pn, const py::tuple& spec, const py::list& grads, const char* fn,
                              std::vector<py::object>* keep) {
  if (spec.size() != 4 && spec.size() != 5)
    value_error(cat(fn, "() expected update=(name, hyper, weights, slots[, decay])."));
  py::list weights = spec[2].cast<py::list>(), slots = spec[3].cast<py::list>();
  pycnn::StepUpdate u = parse_update_hyper(spec[0], spec[1], spec.size() == 5 ? py::object(spec[4]) : py::object(py::none()), grads.size(), fn);
  if (weights.size() != grads.size() || slots.size() != grads.size())
    value_error(cat(fn, "() expected one weight and one list of slots per gradient (", grads.size(), ")."));
  for (size_t w = 0; w < weights.size(); ++w) {
    auto a = exact_float(weights[w], fn, cat("weights[", w, "]"), true);
    auto g = exact_float(grads[w], fn, cat("grads[", w, "]"), false);
    if (a.size() != g.size()) value_error(cat(fn, "() expected weights[", w, "] of its gradient's size ", g.size(), "."));
    if (pn)
      for (float* p : pn->weight_params[w])
        if (p != a.data()) value_error(cat(fn, "() expected weights[", w, "] to be the array the network reads."));
    u.weights.push_back(a.mutable_data());
    keep->push_back(a);
    py::list ws = slots[w].cast<py::list>();
    if (ws.size() != static_cast<size_t>(u.def->slots))
      value_error(cat(fn, "() expected ", u.def->slots, " slot arrays per weight for update '", u.def->name, "'."));
    u.slots.emplace_back();
    for (size_t s = 0; s < ws.size(); ++s) {
      auto sa = exact_float(ws[s], fn, cat("slots[", w, "][", s, "]"), true);
      if (sa.size() != a.size()) value_error(cat(fn, "() expected slots[", w, "][", s, "] of its weight's size."));
      u.slots.back().push_back(sa.mutable_data());
      keep->push_back(sa);
    }
  }
  return u;
}


py::tuple train_step(PyNetwork& pn, const py::object& x, const py::object& targets, const py::object& loss,
                     const py::list& grads, const py::object& sample_weight, const py::object& outputs_out,
                     const py::object& update) {
  const char* fn = "train_step";
  const pycnn::Network& net = pn.net;
  if (net.outputs.size() != 1 || net.value_shapes[net.outputs[0]].size() != 1)
    value_error(cat(fn, "() expected a network with one output of shape (N, classes)."));
  int64_t N;
  std::vector<FArray> xs = batch_inputs(pn.net, x, fn, &N);
  const int64_t cols = net.value_sizes[net.outputs[0]];
  LossInputs li = loss_inputs(loss, targets, sample_weight, N, cols, fn);
  std::vector<py::object> keep;
  std::vector<float*> g = weight_arrays(pn, grads, fn, "grads", &keep);
  if (!outputs_out.is_none()) {
    auto o = exact_float(outputs_out, fn, "outputs_out", true);
    if (o.size() != N * cols) value_error(cat(fn, "() expected outputs_out of shape (", N, ", ", cols, ")."));
    li.step.outputs_out = o.mutable_data();
    keep.push_back(o);
  }
  std::optional<pycnn::StepUpdate> u;
  if (!update.is_none()) u = make_update(&pn, update.cast<py::tuple>(), grads, fn, &keep);
  std::vector<const float*> px = pointers(xs);
  double value = 0.0;
  int64_t hits = 0;
  release_and_run([&] { value = pycnn::train_step(net, px, N, li.step, g.data(), u ? &*u : nullptr, &hits); });
  return py::make_tuple(value, hits);
}

py::tuple forward(const std::shared_ptr<PyNetwork>& pn, const py::object& x) {
  const char* fn = "forward";
  int64_t N;
  std::vector<FArray> xs = batch_inputs(pn->net, x, fn, &N);
  py::list outs;
  std::vector<float*> po;
  for (int o : pn->net.outputs) {
    FArray a = new_batch(N, pn->net.value_shapes[o]);
    po.push_back(a.mutable_data());
    outs.append(a);
  }
  auto tape = std::make_unique<PyTape>();
  tape->owner = pn;
  for (const FArray& a : xs) tape->keep.push_back(a);
  std::vector<const float*> px = pointers(xs);
  release_and_run([&] { tape->tape = pycnn::forward(pn->net, px, N, po.data()); });
  return py::make_tuple(outs, py::cast(std::move(tape)));
}

py::list backward(PyNetwork& pn, PyTape& tape, const py::list& douts, const py::list& grads) {
  const char* fn = "backward";
  if (!tape.tape || tape.owner.get() != &pn) value_error(cat(fn, "() expected a tape from this network's forward()."));
  const pycnn::Network& net = pn.net;
  const int64_t N = py::cast<FArray>(tape.keep[0]).shape(0);
  if (douts.size() != net.outputs.size())
    value_error(cat(fn, "() expected ", net.outputs.size(), " output gradients (or None). Received: ", douts.size(), "."));
  std::vector<FArray> d;
  std::vector<const float*> pd;
  for (size_t k = 0; k < douts.size(); ++k) {
    if (douts[k].is_none()) {
      pd.push_back(nullptr);
      continue;
    }
    d.push_back(as_float(douts[k], fn, cat("douts[", k, "]")));
    const std::vector<int64_t>& sample = net.value_shapes[net.outputs[k]];
    std::vector<int64_t> got(d.back().shape(), d.back().shape() + d.back().ndim());
    std::vector<int64_t> want{N};
    want.insert(want.end(), sample.begin(), sample.end());
    if (got != want)
      value_error(cat(fn, "() expected douts[", k, "] of the output's shape ", pycnn::shape_str(want),
                      ". Received: ", shape_str(d.back()), "."));
    pd.push_back(d.back().data());
  }
  std::vector<py::object> keep;
  std::vector<float*> g = weight_arrays(pn, grads, fn, "grads", &keep);
  py::list dinputs;
  std::vector<float*> pi;
  for (int k = 0; k < net.num_inputs; ++k) {
    if (!net.input_grads) {
      dinputs.append(py::none());
      pi.push_back(nullptr);
      continue;
    }
    FArray a = new_batch(N, net.value_shapes[k]);
    pi.push_back(a.mutable_data());
    dinputs.append(a);
  }
  release_and_run([&] { pycnn::backward(net, *tape.tape, pd.data(), pi.data(), g.data()); });
  return dinputs;
}

py::list predict(PyNetwork& pn, const py::object& x) {
  int64_t N;
  std::vector<FArray> xs = batch_inputs(pn.net, x, "predict", &N);
  py::list outs;
  std::vector<float*> po;
  for (int o : pn.net.outputs) {
    FArray a = new_batch(N, pn.net.value_shapes[o]);
    po.push_back(a.mutable_data());
    outs.append(a);
  }
  std::vector<const float*> px = pointers(xs);
  release_and_run([&] { pycnn::predict(pn.net, px, N, po.data()); });
  return outs;
}

// ---------------------------------------------------------------------------- components alone

// The update over lists of weights (the MPI path applies the reduced gradients this way).
void apply_update(const py::tuple& spec, const py::list& grads) {
  std::vector<py::object> keep;
  pycnn::StepUpdate u = make_update(nullptr, spec, grads, "apply_update", &keep);
  std::vector<const float*> g;
  std::vector<int64_t> n;
  for (const py::handle& a : grads) {
    auto arr = py::reinterpret_borrow<py::array_t<float>>(a);  // checked by make_update
    g.push_back(arr.data());
    n.push_back(arr.size());
  }
  release_and_run([&] {
    for (size_t w = 0; w < u.weights.size(); ++w) u.apply(w, 0, n[w], g[w], u.slots[w].data());
  });
}

// (loss, hits, gradient or None) of a registered loss on outputs (N, cols).
py::tuple loss(const py::object& name, const py::object& outputs, const py::object& targets,
               const py::object& sample_weight, bool need_grad) {
  const char* fn = "loss";
  FArray out = as_float(outputs, fn, "outputs");
  if (out.ndim() != 2 || out.shape(0) < 1 || out.shape(1) < 1)
    value_error(cat(fn, "() expected outputs of shape (N, classes). Received: outputs.shape=", shape_str(out), "."));
  const int64_t N = out.shape(0), cols = out.shape(1);
  LossInputs li = loss_inputs(name, targets, sample_weight, N, cols, fn);
  std::optional<FArray> grad;
  if (need_grad) grad = FArray({N, cols});
  float* pg = grad ? grad->mutable_data() : nullptr;
  double total = 0.0;
  int64_t hits = 0;
  release_and_run([&] {
    total = li.step.def->rows(pg, out.data(), li.step.targets, li.step.sample_weight, 0, N, cols, 1.f / static_cast<float>(N),
                 li.step.hyper.data(), &hits);
  });
  return py::make_tuple(total / static_cast<double>(N), hits, grad ? py::object(*grad) : py::none());
}

// ---------------------------------------------------------------------------- registries

py::dict ops_info() {
  py::dict out;
  for (const pycnn::OpDef* op : pycnn::registered_ops()) {
    py::list params, attrs;
    for (const pycnn::ParamDef& p : op->params)
      params.append(py::dict(py::arg("name") = p.name, py::arg("optional") = p.optional, py::arg("state") = p.state));
    for (const pycnn::AttrDef& a : op->attrs)
      attrs.append(py::dict(py::arg("name") = a.name, py::arg("type") = pycnn::attr_type_name(a.type),
                            py::arg("default") = a.required ? py::none() : attr_to_python(a.default_value),
                            py::arg("required") = a.required));
    const char* reads = op->reads == pycnn::Reads::uint8 ? "uint8" : op->reads == pycnn::Reads::any ? "any" : "float32";
    out[op->kind] = py::dict(py::arg("doc") = op->doc, py::arg("inputs") = op->inputs, py::arg("params") = params,
                             py::arg("attrs") = attrs, py::arg("reads") = reads,
                             py::arg("inference_only") = op->backward == nullptr);
  }
  return out;
}

template <class Def, class List>
py::dict docs(List&& defs) {
  py::dict out;
  for (const Def* d : defs) out[d->name] = d->doc;
  return out;
}

py::dict build_info() {
  py::dict d;
  d["version"] = PYCNN_VERSION;
  d["compiler"] = PYCNN_COMPILER;
  d["build_type"] = PYCNN_BUILD_TYPE;
  d["openmp"] = pycnn::openmp_enabled();
  d["openmp_version"] = pycnn::openmp_version();
#ifdef PYCNN_WITH_CUDA
  d["cuda"] = true;  // pycnn._cuda was built alongside; pycnn.cuda says whether it is usable
#else
  d["cuda"] = false;
#endif
#ifdef PYCNN_NATIVE_BUILD
  d["native_arch"] = true;
#else
  d["native_arch"] = false;
#endif
  d["isa_detected"] = pycnn::isa_name(pycnn::detected_isa());
  d["isa_active"] = pycnn::isa_name(pycnn::active_isa());
  d["isa_compiled"] = py::make_tuple("baseline", "avx2", "avx512");
  d["int8_kernels"] = pycnn::int8_kernel_name();  // what int8 layers run now: avx512_vnni, avx2, baseline
  d["num_threads"] = pycnn::get_num_threads();
  return d;
}

void set_num_threads(const py::object& obj) {
  if (!is_int(obj)) type_error(cat("set_num_threads() expected a positive integer. Received: n=", std::string(py::repr(obj)), "."));
  const int64_t n = to_int(obj, "n");
  if (n < 1) value_error(cat("set_num_threads() expected a positive integer. Received: n=", n, "."));
  if (n > 256)  // the per-thread scratch slots (runtime.cpp)
    value_error(cat("set_num_threads() supports at most 256 threads. Received: n=", n, "."));
  pycnn::set_num_threads(static_cast<int>(n));
}

void set_isa(const std::string& name) {
  for (pycnn::Isa isa : {pycnn::Isa::baseline, pycnn::Isa::avx2, pycnn::Isa::avx512})
    if (name == pycnn::isa_name(isa)) return pycnn::set_isa_cap(isa);
  value_error(cat("set_isa() expected 'baseline', 'avx2' or 'avx512'. Received: name='", name, "'."));
}

}  // namespace
}  // namespace pycnn_py

using namespace pycnn_py;

PYBIND11_MODULE(_core, m) {
  // PYCNN_NO_MALLOC_TUNING=1 leaves the C allocator's settings alone.
  const char* no_tuning = std::getenv("PYCNN_NO_MALLOC_TUNING");
  if (!no_tuning || std::string(no_tuning) != "1") pycnn::tune_allocator();
  m.doc() = "pycnn's native core: registered ops, compiled networks, the CPU executor. See pycnn.ops.";
  m.def("build_info", &build_info, "What was compiled in: version, compiler, OpenMP, ISA levels, CUDA.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"), "Threads used by every kernel.");
  m.def("get_num_threads", &pycnn::get_num_threads);
  m.def("set_isa", &set_isa, py::arg("name"),
        "Cap the SIMD level ('baseline', 'avx2', 'avx512'); the CPU's best level is used when the cap is higher.");
  m.def("get_isa", [] { return std::string(pycnn::isa_name(pycnn::active_isa())); });
  m.def("fma_peak", [](int64_t iters) {
        if (iters < 1) value_error(cat("fma_peak() expected a positive iteration count. Received: ", iters, "."));
        pycnn::PeakResult r;
        release_and_run([&] { r = pycnn::measure_fma_peak(iters); });
        return py::dict(py::arg("gflops") = r.gflops, py::arg("seconds") = r.seconds, py::arg("threads") = r.threads,
                        py::arg("lanes") = r.lanes);
      }, py::arg("iters"), "FP32 FMA peak of the active ISA on every thread (benchmarks): {gflops, seconds, ...}.");
  m.def("ops", &ops_info, "Every registered op: {kind: {doc, inputs (0: two or more), params, attrs}}.");
  m.def("activations", [] { return docs<pycnn::ActivationDef>(pycnn::registered_activations()); });
  m.def("losses", [] { return docs<pycnn::LossDef>(pycnn::registered_losses()); });
  m.def("updates", [] {
    py::dict out;
    for (const pycnn::UpdateDef* u : pycnn::registered_updates())
      out[u->name] = py::dict(py::arg("doc") = u->doc, py::arg("hyper") = u->hyper, py::arg("slots") = u->slots);
    return out;
  });
  m.def("apply_update", &apply_update, py::arg("update"), py::arg("grads"),
        "update=(name, hyper, weights, slots[, decay]): the registered update applied in place to every weight "
        "(hyper: one list, or one list per weight; decay: per weight, w -= w * decay first).");
  m.def("loss", &loss, py::arg("name"), py::arg("outputs"), py::arg("targets"), py::arg("sample_weight") = py::none(),
        py::arg("need_grad") = true, "(mean loss, hits, d mean loss / d outputs or None) of a registered loss.");

  py::class_<PyTape>(m, "Tape", "What a forward kept for its backward (activations, per-thread state).");
  py::class_<PyNetwork, std::shared_ptr<PyNetwork>>(m, "Network", "A network compiled once; see pycnn.ops.")
      .def(py::init(&make_network), py::arg("input_shapes"), py::arg("nodes"), py::arg("outputs"),
           py::arg("input_grads") = false)
      .def_property_readonly("value_shapes", [](const PyNetwork& pn) { return pn.net.value_shapes; })
      .def_property_readonly("output_shapes", [](const PyNetwork& pn) {
        std::vector<std::vector<int64_t>> out;
        for (int o : pn.net.outputs) out.push_back(pn.net.value_shapes[o]);
        return out;
      })
      .def_property_readonly("weight_sizes", [](const PyNetwork& pn) { return pn.net.weight_sizes; })
      .def_property_readonly("value_types", [](const PyNetwork& pn) {
        std::vector<std::string> out;
        for (pycnn::ElemType t : pn.net.value_types) out.push_back(pycnn::elem_type_name(t));
        return out;
      }, "Per value: its element type, 'float32' or 'uint8' (quantized).")
      .def_property_readonly("needs_grad", [](const PyNetwork& pn) {
        return std::vector<bool>(pn.net.needs_grad.begin(), pn.net.needs_grad.end());
      }, "Per value: whether backward computes its gradient (a trained weight lies before it).")
      .def("train_step", &train_step, py::arg("x"), py::arg("targets"), py::arg("loss"), py::arg("grads"),
           py::arg("sample_weight") = py::none(), py::arg("outputs_out") = py::none(), py::arg("update") = py::none(),
           "Forward, the loss, backward (and the update) in one call -> (mean loss, hits).")
      .def("forward", &forward, py::arg("x"), "-> (outputs, tape) for backward.")
      .def("backward", &backward, py::arg("tape"), py::arg("douts"), py::arg("grads"),
           "Writes grads (one per trained weight); returns the inputs' gradients (None without input_grads).")
      .def("commit", [](PyNetwork& pn, PyTape& t) {
             if (!t.tape || t.owner.get() != &pn) value_error("commit() expected a tape from this network's forward().");
             release_and_run([&] { pycnn::commit(pn.net, *t.tape); });
           },
           py::arg("tape"), "Write the state a training forward computed (moving statistics).")
      .def("predict", &predict, py::arg("x"), "-> outputs (inference).");

  // The CUDA executor on the host emulation of the device runtime (csrc/cuda/device_api.h):
  // the same sources as pycnn._cuda's DeviceNetwork, for tests on every machine.
  bind_device_network(m, "EmulatedDeviceNetwork", "emulated_device_ops");
  m.def("_emulated_copy_check", [](const std::string& what) {
        // One deliberate misuse of the emulated device runtime; its provenance check raises.
        namespace dev = pycnn::cuda;
        float host[8] = {};
        float* d = static_cast<float*>(dev::device_alloc(4 * sizeof(float), "check"));
        struct Free {
          float* p;
          ~Free() { dev::device_free(p); }
        } guard{d};
        if (what == "host_as_device") dev::copy_to_device(host + 4, host, sizeof(float) * 4);
        else if (what == "device_as_host") dev::copy_to_host(d, d, sizeof(float) * 2);
        else if (what == "past_end") dev::copy_to_device(d, host, sizeof(float) * 5);
        else if (what == "ok") dev::copy_to_device(d, host, sizeof(float) * 4);
        else value_error(cat("_emulated_copy_check() expected 'host_as_device', 'device_as_host', 'past_end' or "
                             "'ok'. Received: '", what, "'."));
      }, py::arg("what"), "Tests: one copy through the emulated device runtime (a misuse raises RuntimeError).");
}
