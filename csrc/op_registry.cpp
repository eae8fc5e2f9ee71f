// The op registry and the helpers parse functions share (op_registry.h).
#include "op_registry.h"

#include <cstdint>

#include <algorithm>
#include <new>
#include <sstream>
#include <stdexcept>

namespace pycnn {
namespace {

using OpRegistry = Registry<OpDef, &OpDef::kind>;

template <class T>
const T& attr_of(const std::map<std::string, AttrValue>& values, const char* name, const char* type) {
  auto it = values.find(name);
  if (it == values.end() || !std::holds_alternative<T>(it->second))
    throw std::logic_error(std::string("op attribute '") + name + "' of type " + type + " was not declared");
  return std::get<T>(it->second);
}

}  // namespace

bool register_op(const OpDef* op) { return OpRegistry::add(op, "op"); }
const OpDef* find_op(const std::string& kind) { return OpRegistry::find(kind); }
std::vector<const OpDef*> registered_ops() { return OpRegistry::all(); }

int64_t Attrs::i(const char* name) const { return attr_of<int64_t>(values, name, "int"); }
const std::vector<int64_t>& Attrs::ints(const char* name) const {
  return attr_of<std::vector<int64_t>>(values, name, "ints");
}
double Attrs::f(const char* name) const { return attr_of<double>(values, name, "float"); }
const std::vector<double>& Attrs::floats(const char* name) const {
  return attr_of<std::vector<double>>(values, name, "floats");
}
const std::string& Attrs::s(const char* name) const { return attr_of<std::string>(values, name, "str"); }

void OpArgs::fail(const std::string& what) const { throw std::invalid_argument(where + " " + what); }

std::string dims_str(const std::vector<int64_t>& dims) {
  std::ostringstream os;
  os << "(None";
  for (int64_t v : dims) os << ", " << v;
  os << ")";
  return os.str();
}

std::string shape_str(const std::vector<int64_t>& dims) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < dims.size(); ++i) os << dims[i] << (i + 1 < dims.size() ? ", " : dims.size() == 1 ? "," : "");
  os << ")";
  return os.str();
}

int64_t size_of(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t v : dims)
    if (__builtin_mul_overflow(n, v, &n)) return INT64_MAX;  // saturates: the compiler refuses such sizes
  return n;
}

std::vector<int64_t> window_pair(const OpArgs& args, const char* name) {
  const std::vector<int64_t>& v = args.attrs.ints(name);
  if (v.size() != 2 || v[0] < 1 || v[1] < 1 || v[0] > kMaxWindow || v[1] > kMaxWindow)
    args.fail(std::string("expected ") + name + " of 2 integers in [1, " + std::to_string(kMaxWindow) +
              "]. Received: " + name + "=" + shape_str(v) + ".");
  return v;
}

void expect_input_rank(const OpArgs& args, size_t rank, const char* layout) {
  if (args.in_shapes[0].size() != rank)
    args.fail(std::string("needs ") + layout + " input. Received: input shape " + dims_str(args.in_shapes[0]) + ".");
}

void expect_param_shape(const OpArgs& args, int k, const std::vector<int64_t>& shape) {
  if (!args.params[k]) return;  // absent optional parameters are checked by the binding
  if (args.param_shapes[k] != shape)
    args.fail("expected parameter " + std::to_string(k) + " of shape " + shape_str(shape) +
              ". Received: " + shape_str(args.param_shapes[k]) + ".");
}

bool padding_is_same(const OpArgs& args, const char* attr) {
  const std::string& padding = args.attrs.s(attr);
  if (padding == "same") return true;
  if (padding == "valid") return false;
  args.fail(std::string("expected ") + attr + " 'valid' or 'same'. Received: " + attr + "='" + padding + "'.");
}

const char* elem_type_name(ElemType type) { return type == ElemType::uint8 ? "uint8" : "float32"; }

// ---------------------------------------------------------------------------- NodeBytes

NodeBytes& NodeBytes::operator=(NodeBytes&& other) noexcept {
  if (this != &other) {
    release();
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

NodeBytes::~NodeBytes() { release(); }

void NodeBytes::release() {
  if (data_) ::operator delete(data_, std::align_val_t(64));
  data_ = nullptr;
  size_ = 0;
}

unsigned char* NodeBytes::reset(size_t size) {
  release();
  if (size == 0) return nullptr;
  const size_t rounded = (size + 63) / 64 * 64;  // whole cache lines: SIMD loads may read a line's end
  data_ = static_cast<unsigned char*>(::operator new(rounded, std::align_val_t(64)));
  std::memset(data_, 0, rounded);
  size_ = size;
  return data_;
}

void NodeBytes::assign(const NodeBytes& other) {
  reset(other.size_);
  if (other.size_) std::memcpy(data_, other.data_, other.size_);
}

const char* attr_type_name(AttrType type) {
  switch (type) {
    case AttrType::Int: return "int";
    case AttrType::Ints: return "ints";
    case AttrType::Float: return "float";
    case AttrType::Floats: return "floats";
    case AttrType::Str: return "str";
  }
  return "?";
}

}  // namespace pycnn
