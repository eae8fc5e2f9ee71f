// The compiled module pycnn._core: runtime controls (threads, ISA, build_info) here; the
// single ops in bindings_ops.cpp (batch normalization in bindings_norm.cpp, padding, rescaling and
// leaky relu in bindings_small_ops.cpp, the dilated / grouped / depthwise convolutions in
// bindings_conv_family.cpp, the test-only bodies of the CUDA kernels
// in bindings_cuda_bodies.cpp), the whole-network step in bindings_network.cpp. Those are
// the only files that know about Python; the kernels never do.
#include "bindings_common.h"

namespace pycnn_py {
void bind_ops(py::module_& m);
void bind_network(py::module_& m);
void bind_norm(py::module_& m);
void bind_small_ops(py::module_& m);
void bind_conv_family(py::module_& m);
void bind_cuda_bodies(py::module_& m);

namespace {

// ---------------------------------------------------------------------------- runtime

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
  d["num_threads"] = pycnn::get_num_threads();
  return d;
}

void set_num_threads_py(int n) {
  if (n < 1) value_error(cat("set_num_threads() expected a positive integer. Received: n=", n, "."));
  if (n > 256)  // the per-thread scratch slots (runtime.cpp)
    value_error(cat("set_num_threads() supports at most 256 threads. Received: n=", n, "."));
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
}  // namespace pycnn_py

using namespace pycnn_py;

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

  bind_ops(m);
  bind_network(m);
  bind_norm(m);
  bind_small_ops(m);
  bind_conv_family(m);
  bind_cuda_bodies(m);  // test-only _bodies_* (bindings_cuda_bodies.cpp)
}
