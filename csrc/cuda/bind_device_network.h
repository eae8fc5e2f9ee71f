// The binding of the CUDA executor's DeviceNetwork (cuda/executor.h), one source for its two
// builds: included by bindings.cpp (pycnn._core, the host emulation: class
// EmulatedDeviceNetwork) and by cuda/bindings_cuda.cpp (pycnn._cuda, the GPU: class
// DeviceNetwork). Thin: the arguments are the CPU Network's (bindings_network.h converts and
// checks them), the arrays are referenced, the GIL is released around the executor.
//
//   DeviceNetwork(input_shapes, nodes, outputs)   compiled, every parameter uploaded
//   .train_step(x, targets, loss, sample_weight=None, outputs_out=None, update=None) -> (loss, hits)
//       update = (name, hyper[, decay]): the weights and slots are the device's own
//   .upload_weights() / .download_weights()       every parameter host -> device; trained and
//                                                 state parameters device -> host (the arrays
//                                                 the nodes were given)
//   .upload_slots(name, slots) / .download_slots(name, slots)   the update's slots, per weight
//   .download_gradients(grads) / .apply_gradients(grads, update)  the MPI path: the last step's
//                                                 gradients out, the reduced ones in and applied
//   .predict(x) -> outputs
#pragma once
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bindings_network.h"
#include "cuda/executor.h"

namespace pycnn_py {

struct PyDeviceNetwork {
  std::unique_ptr<pycnn::cuda::DeviceNetwork> net;
  std::vector<py::object> keep;  // every parameter array the device copies come from and go to
};


// One list per trained weight of `count` float32 arrays of the weight's size (written when
// `writeable`).
inline std::vector<std::vector<float*>> per_weight_arrays(const pycnn::Network& net, const py::handle& obj,
                                                          size_t count, const char* fn, const char* what,
                                                          bool writeable, std::vector<py::object>* keep) {
  const auto& sizes = net.weight_sizes;
  py::list lists = py::reinterpret_borrow<py::object>(obj).cast<py::list>();
  if (lists.size() != sizes.size())
    value_error(cat(fn, "() expected ", sizes.size(), " lists of ", what, " (one per trained weight). Received: ",
                    lists.size(), "."));
  std::vector<std::vector<float*>> out(sizes.size());
  for (size_t w = 0; w < sizes.size(); ++w) {
    py::list arrays = lists[w].cast<py::list>();
    if (arrays.size() != count)
      value_error(cat(fn, "() expected ", count, " ", what, " arrays for weight ", w, ". Received: ", arrays.size(), "."));
    for (size_t s = 0; s < count; ++s) {
      auto a = exact_float(arrays[s], fn, cat(what, "[", w, "][", s, "]"), writeable);
      if (a.size() != sizes[w])
        value_error(cat(fn, "() expected ", what, "[", w, "][", s, "] of ", sizes[w], " values. Received: ", a.size(), "."));
      out[w].push_back(a.mutable_data());
      keep->push_back(a);
    }
  }
  return out;
}

inline pycnn::cuda::DeviceStepUpdate device_update(const pycnn::Network& net, const py::handle& spec_obj,
                                                   const char* fn) {
  py::tuple spec = py::reinterpret_borrow<py::object>(spec_obj).cast<py::tuple>();
  if (spec.size() != 2 && spec.size() != 3) value_error(cat(fn, "() expected update=(name, hyper[, decay])."));
  pycnn::StepUpdate u =
      parse_update_hyper(spec[0], spec[1], spec.size() == 3 ? py::object(spec[2]) : py::object(py::none()), net.weight_sizes.size(), fn);
  pycnn::cuda::DeviceStepUpdate d;
  d.def = u.def;
  d.device = pycnn::cuda::find_device_update(u.def->name);
  if (!d.device) value_error(cat(fn, "() update '", u.def->name, "' has no CUDA kernel."));
  d.hyper = u.hyper;
  d.hyper_stride = u.hyper_stride;
  d.decay = u.decay;
  return d;
}

inline const pycnn::UpdateDef* update_named(const py::handle& name, const char* fn) {
  const std::string n = as_str(name, cat(fn, "() expected the update name"));
  const pycnn::UpdateDef* def = pycnn::find_update(n);
  if (!def) value_error(cat(fn, "() has no update named '", n, "'."));
  return def;
}

inline void bind_device_network(py::module_& m, const char* class_name, const char* ops_name) {
  using pycnn::cuda::DeviceNetwork;
  // module_local: pycnn._core (emulated) and pycnn._cuda (GPU) each bind this same C++ type.
  py::class_<PyDeviceNetwork, std::shared_ptr<PyDeviceNetwork>>(
      m, class_name, py::module_local(),
      "A network compiled for the CUDA executor (device-resident weights); see pycnn.cuda.")
      .def(py::init([class_name](const py::list& input_shapes, const py::list& nodes, const py::list& outputs) {
             auto pn = std::make_shared<PyDeviceNetwork>();
             NetworkSpecs ns = parse_network(input_shapes, nodes, outputs, class_name, &pn->keep);
             // download_weights writes the trained arrays: they must be writeable.
             for (size_t i = 0; i < ns.specs.size(); ++i)
               for (size_t k = 0; k < ns.specs[i].weight.size() && k < ns.specs[i].params.size(); ++k)
                 if (ns.specs[i].weight[k] >= 0 && ns.specs[i].params[k]) {
                   py::tuple t = nodes[i].cast<py::tuple>();
                   exact_float(py::list(t[3])[k], class_name, cat("nodes[", i, "] parameter ", k), true);
                 }
             try {
               py::gil_scoped_release release;
               std::lock_guard<std::mutex> lock(kernel_mutex());
               pn->net = std::make_unique<DeviceNetwork>(ns.shapes, ns.specs, ns.outputs, class_name);
             } catch (const std::invalid_argument& err) {
               value_error(err.what());
             }
             return pn;
           }),
           py::arg("input_shapes"), py::arg("nodes"), py::arg("outputs"))
      .def_property_readonly("weight_sizes", [](const PyDeviceNetwork& p) { return p.net->net().weight_sizes; })
      .def_property_readonly("output_shapes", [](const PyDeviceNetwork& p) {
        std::vector<std::vector<int64_t>> out;
        for (int o : p.net->net().outputs) out.push_back(p.net->net().value_shapes[o]);
        return out;
      })
      .def_property_readonly("capacity", [](const PyDeviceNetwork& p) { return p.net->capacity(); },
                             "The largest batch the device buffers hold now.")
      .def_property_readonly("device_bytes", [](const PyDeviceNetwork& p) { return p.net->device_bytes(); })
      .def("train_step",
           [](PyDeviceNetwork& p, const py::object& x, const py::object& targets, const py::object& loss,
              const py::object& sample_weight, const py::object& outputs_out, const py::object& update) {
             const char* fn = "train_step";
             const pycnn::Network& net = p.net->net();
             if (net.outputs.size() != 1 || net.value_shapes[net.outputs[0]].size() != 1)
               value_error(cat(fn, "() expected a network with one output of shape (N, classes)."));
             int64_t N;
             std::vector<FArray> xs = batch_inputs(net, x, fn, &N);
             const int64_t cols = net.value_sizes[net.outputs[0]];
             LossInputs li = loss_inputs(loss, targets, sample_weight, N, cols, fn);
             pycnn::cuda::DeviceStepLoss dl;
             dl.def = li.step.def;
             dl.device = pycnn::cuda::find_device_loss(li.step.def->name);
             if (!dl.device) value_error(cat(fn, "() loss '", li.step.def->name, "' has no CUDA kernel."));
             dl.targets = li.step.targets;
             dl.sample_weight = li.step.sample_weight;
             dl.hyper = li.step.hyper;
             std::vector<py::object> keep;
             float* out = nullptr;
             if (!outputs_out.is_none()) {
               auto o = exact_float(outputs_out, fn, "outputs_out", true);
               if (o.size() != N * cols) value_error(cat(fn, "() expected outputs_out of shape (", N, ", ", cols, ")."));
               out = o.mutable_data();
               keep.push_back(o);
             }
             std::optional<pycnn::cuda::DeviceStepUpdate> u;
             if (!update.is_none()) u = device_update(net, update, fn);
             std::vector<const float*> px;
             for (const FArray& a : xs) px.push_back(a.data());
             double value = 0.0;
             int64_t hits = 0;
             release_and_run([&] { value = p.net->train_step(px, N, dl, u ? &*u : nullptr, &hits, out); });
             return py::make_tuple(value, hits);
           },
           py::arg("x"), py::arg("targets"), py::arg("loss"), py::arg("sample_weight") = py::none(),
           py::arg("outputs_out") = py::none(), py::arg("update") = py::none(),
           "Forward, the loss, backward (and the update=(name, hyper[, decay]) with the device's slots) -> "
           "(mean loss, hits).")
      .def("upload_weights", [](PyDeviceNetwork& p) { release_and_run([&] { p.net->upload_params(); }); },
           "Every parameter array -> its device copy.")
      .def("download_weights", [](PyDeviceNetwork& p) { release_and_run([&] { p.net->download_params(); }); },
           "The device copies of the trained weights and state parameters -> their arrays.")
      .def("upload_slots",
           [](PyDeviceNetwork& p, const py::object& name, const py::object& slots) {
             const pycnn::UpdateDef* def = update_named(name, "upload_slots");
             std::vector<py::object> keep;
             auto host = per_weight_arrays(p.net->net(), slots, def->slots, "upload_slots", "slots", false, &keep);
             release_and_run([&] { p.net->upload_slots(def, host); });
           },
           py::arg("name"), py::arg("slots"), "The update's slot arrays (per trained weight) -> the device.")
      .def("download_slots",
           [](PyDeviceNetwork& p, const py::object& name, const py::object& slots) {
             const pycnn::UpdateDef* def = update_named(name, "download_slots");
             std::vector<py::object> keep;
             auto host = per_weight_arrays(p.net->net(), slots, def->slots, "download_slots", "slots", true, &keep);
             try {
               release_and_run([&] { p.net->download_slots(def, host); });
             } catch (const std::invalid_argument& err) {
               value_error(err.what());
             }
           },
           py::arg("name"), py::arg("slots"), "The device's slots -> the arrays (per trained weight).")
      .def("download_gradients",
           [](PyDeviceNetwork& p, const py::list& grads) {
             std::vector<py::object> keep;
             py::list wrapped;
             for (const py::handle& g : grads) wrapped.append(py::make_tuple(g));
             auto host = per_weight_arrays(p.net->net(), wrapped, 1, "download_gradients", "grads", true, &keep);
             std::vector<float*> h;
             for (auto& v : host) h.push_back(v[0]);
             release_and_run([&] { p.net->download_gradients(h); });
           },
           py::arg("grads"), "The last step's gradients (one array per trained weight) -> the arrays.")
      .def("apply_gradients",
           [](PyDeviceNetwork& p, const py::list& grads, const py::object& update) {
             std::vector<py::object> keep;
             py::list wrapped;
             for (const py::handle& g : grads) wrapped.append(py::make_tuple(g));
             auto host = per_weight_arrays(p.net->net(), wrapped, 1, "apply_gradients", "grads", false, &keep);
             std::vector<const float*> h;
             for (auto& v : host) h.push_back(v[0]);
             pycnn::cuda::DeviceStepUpdate u = device_update(p.net->net(), update, "apply_gradients");
             try {
               release_and_run([&] { p.net->apply_gradients(h, u); });
             } catch (const std::invalid_argument& err) {
               value_error(err.what());
             }
           },
           py::arg("grads"), py::arg("update"), "Host gradients -> the device, then the update on the device.")
      .def("predict",
           [](PyDeviceNetwork& p, const py::object& x) {
             const pycnn::Network& net = p.net->net();
             int64_t N;
             std::vector<FArray> xs = batch_inputs(net, x, "predict", &N);
             py::list outs;
             std::vector<float*> po;
             for (int o : net.outputs) {
               std::vector<py::ssize_t> shape{N};
               shape.insert(shape.end(), net.value_shapes[o].begin(), net.value_shapes[o].end());
               FArray a(shape);
               po.push_back(a.mutable_data());
               outs.append(a);
             }
             std::vector<const float*> px;
             for (const FArray& a : xs) px.push_back(a.data());
             release_and_run([&] { p.net->predict(px, N, po.data()); });
             return outs;
           },
           py::arg("x"), "-> outputs (forward on the device).");
  m.def(ops_name, [] {
    std::vector<std::string> kinds;
    for (const pycnn::cuda::DeviceOpDef* d : pycnn::cuda::registered_device_ops()) kinds.push_back(d->kind);
    return kinds;
  }, "The op kinds with CUDA kernels (views need none).");
}

}  // namespace pycnn_py
