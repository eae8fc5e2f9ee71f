// Helpers of the binding files (the only files that know about Python): array conversion and
// validation in the house's error format, and the tail every entry ends in: release the GIL,
// take the kernel lock, run.
//
// dtype policy: data inputs accept any real numeric dtype (bool, int, uint, float16/32/64)
// and convert it to float32 (a copy when needed); complex, object and string arrays are a
// TypeError. Label arrays accept integer dtypes only. Non-contiguous inputs are copied, never
// read through wrong strides. Arrays the C++ keeps a pointer to across calls (parameters) or
// writes into are never converted: they must already be C-contiguous float32.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace py = pybind11;

namespace pycnn_py {

using FArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

inline std::string shape_str(const py::array& a) {
  std::ostringstream os;
  os << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    os << a.shape(i);
    if (a.ndim() == 1 || i + 1 < a.ndim()) os << (i + 1 < a.ndim() ? ", " : ",");
  }
  os << ")";
  return os.str();
}

template <class... Parts>
inline std::string cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

[[noreturn]] inline void value_error(const std::string& msg) { throw py::value_error(msg); }
[[noreturn]] inline void type_error(const std::string& msg) { throw py::type_error(msg); }

inline std::string type_name(const py::handle& obj) { return py::str(py::type::of(obj).attr("__name__")); }

// Any array-like -> C-contiguous float32 array. `fn` and `arg` name the caller in errors.
inline FArray as_float(const py::handle& obj, const char* fn, const std::string& arg) {
  if (obj.is_none()) type_error(cat(fn, "() expected a float32 array for argument '", arg, "'. Received: None."));
  py::array a = py::array::ensure(obj);
  if (!a)
    type_error(cat(fn, "() expected an array-like of numbers for argument '", arg, "'. Received an object of type ",
                   type_name(obj), "."));
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
    type_error(cat(fn, "() expected a real numeric array (converted to float32) for argument '", arg,
                   "'. Received: dtype=", std::string(py::str(a.dtype())), "."));
  FArray f = FArray::ensure(a);  // converts and/or makes contiguous only when needed
  if (!f) type_error(cat(fn, "() could not convert argument '", arg, "' to a float32 array."));
  return f;
}

// Integer array -> C-contiguous int64 (values are range-checked by the callers).
inline IArray as_labels(const py::handle& obj, const char* fn, const std::string& arg) {
  py::array a = py::array::ensure(obj);
  const char kind = a ? a.dtype().kind() : '?';
  if (kind != 'i' && kind != 'u')
    type_error(cat(fn, "() expected integer class indices for argument '", arg, "'. Received: ",
                   a ? "dtype=" + std::string(py::str(a.dtype())) : "an object of type " + type_name(obj),
                   ". Convert class indices with y.astype('int64') if they are whole numbers."));
  IArray l = IArray::ensure(a);
  if (!l) type_error(cat(fn, "() could not convert argument '", arg, "' to an int64 array."));
  return l;
}

// An array the C++ keeps or writes through: already a C-contiguous float32 NumPy array in
// native byte order (converting it would hand over a copy and silently lose the writes), and
// writeable when `writeable`.
inline py::array_t<float> exact_float(const py::handle& obj, const char* fn, const std::string& arg, bool writeable) {
  const char* why = writeable ? "updated in place" : "read by later calls";
  if (!py::isinstance<py::array>(obj))
    type_error(cat(fn, "() expected ", arg, " to be a NumPy float32 array (", why, "). Received: ", type_name(obj), "."));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (a.dtype().kind() != 'f' || a.itemsize() != 4 || a.dtype().byteorder() == '>')
    type_error(cat(fn, "() expected ", arg, " to be float32 in native byte order (", why, "). Received: dtype=",
                   std::string(py::str(a.dtype())), "; convert it with np.ascontiguousarray(a, np.float32)."));
  if (!(a.flags() & py::array::c_style)) value_error(cat(fn, "() expected ", arg, " to be C-contiguous (", why, ")."));
  if (writeable && !a.writeable()) value_error(cat(fn, "() expected ", arg, " to be writeable (", why, ")."));
  return py::reinterpret_borrow<py::array_t<float>>(a);
}

// Kernels share per-thread scratch arenas (runtime.h) and already use every core, so calls
// from several Python threads (the GIL is released) run one after another.
inline std::mutex& kernel_mutex() {
  static std::mutex m;
  return m;
}

// The tail of every entry: everything Python-side has been read; run `work` without the GIL,
// one at a time.
template <class Work>
void release_and_run(Work&& work) {
  py::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(kernel_mutex());
  work();
}

}  // namespace pycnn_py
