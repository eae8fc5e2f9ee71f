// The op contract: every op pycnn runs is described once, by the OpDef its own family file
// registers (conv2d.cpp registers "conv2d" beside its kernels, pool2d.cpp "maxpool2d", ...):
//
//   kind     the name layers and saved models use ("conv2d")
//   inputs   how many tensors it reads (kVariadic: two or more, as Add and Concatenate)
//   params   its weights in order, by name ("kernel", "bias"), which may be absent (a bias of
//            None) and which the op itself updates (batch normalization's moving statistics)
//   attrs    its hyper-parameters by name, each with a type and a default ("strides": ints,
//            "padding": str = "valid", ...); the binding checks names and types against them
//   parse    the shape rule and every check of shapes and attribute values (an error names the
//            node, what was expected and what was received), filling the node's geometry
//   forward / backward, side by side; optionally commit (state written after a finite step)
//
// Everything else reads this description: the network compiler, the CPU executor, the one
// generic binding, and Python (pycnn.ops.registered_ops()). No other list of op kinds exists.
//
// Shapes here are per sample (no batch axis). Forward and backward run on `nb` samples that
// are contiguous in memory, so an executor can give each thread a share of the batch.
//
// Element types: a value between nodes holds float32 (every op but the int8 ones) or uint8
// (quantized activations, csrc/quantized.cpp). An op declares what it reads (`reads`); its
// parse sets the node's `out_type` (float32 unless it says otherwise); views (flatten,
// reshape, identity) read either and pass their input's type on. The compiler checks every
// input against its reader, so a float op never reads bytes. A uint8 value of E elements per
// sample takes ceil(E / 4) of the executor's 4-byte cells per sample, and a share of nb
// samples holds them packed: sample n starts at byte n * E. Network inputs and outputs are
// float32.
#pragma once
#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace pycnn {

constexpr int kMaxNodeParams = 4;
constexpr int kVariadic = 0;  // OpDef::inputs: two or more

enum class AttrType { Int, Ints, Float, Floats, Str };

// The element type of a value (see the header comment).
enum class ElemType : uint8_t { float32 = 0, uint8 = 1 };
// What an op reads: float32 values, uint8 values, or either (views, which pass the type on).
enum class Reads : uint8_t { float32 = 0, uint8 = 1, any = 2 };
const char* elem_type_name(ElemType type);  // "float32", "uint8"
// 4-byte cells that `elements` values of `type` take (per sample).
inline int64_t cells_of(int64_t elements, ElemType type) {
  return type == ElemType::uint8 ? (elements + 3) / 4 : elements;
}

// Bytes a node owns beside its geometry (an int8 op's packed weights and per-channel
// constants), 64-byte aligned, copied with the node.
class NodeBytes {
 public:
  NodeBytes() = default;
  NodeBytes(const NodeBytes& other) { assign(other); }
  NodeBytes& operator=(const NodeBytes& other) {
    if (this != &other) assign(other);
    return *this;
  }
  NodeBytes(NodeBytes&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  NodeBytes& operator=(NodeBytes&& other) noexcept;
  ~NodeBytes();
  // `size` zeroed bytes (what was there is released).
  unsigned char* reset(size_t size);
  unsigned char* data() { return data_; }
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void assign(const NodeBytes& other);
  void release();
  unsigned char* data_ = nullptr;
  size_t size_ = 0;
};
using AttrValue = std::variant<int64_t, std::vector<int64_t>, double, std::vector<double>, std::string>;

struct AttrDef {
  const char* name;
  AttrType type;
  AttrValue default_value;  // used when the node leaves the attribute out
  bool required = false;    // true: no default, the node must give it
};

struct ParamDef {
  const char* name;
  bool optional = false;  // may be absent (None), e.g. a bias
  bool state = false;     // written by the op's commit, never trained (moving statistics)
};

// A node's attributes, complete (defaults filled in) and of the declared types.
class Attrs {
 public:
  int64_t i(const char* name) const;
  const std::vector<int64_t>& ints(const char* name) const;
  double f(const char* name) const;
  const std::vector<double>& floats(const char* name) const;
  const std::string& s(const char* name) const;
  std::map<std::string, AttrValue> values;
};

// What parse knows of a node: where it is (for messages), its inputs' shapes, its
// parameters (null and an empty shape when absent) and attributes.
struct OpArgs {
  std::string where;  // "layers[3] ('conv2d')"
  std::vector<std::vector<int64_t>> in_shapes;
  std::vector<ElemType> in_types;  // checked against the op's `reads` before parse
  std::vector<const float*> params;
  std::vector<std::vector<int64_t>> param_shapes;
  Attrs attrs;
  [[noreturn]] void fail(const std::string& what) const;  // throws std::invalid_argument
};

struct OpDef;
struct Node;

using ForwardFn = const float* (*)(const Node& node, const float* const* in, float* out, float* aux, int64_t nb);
using BackwardFn = void (*)(const Node& node, float* const* dinp, float* const* dparam, const float* dout,
                            const float* const* in, const float* out, const float* aux, int64_t nb);

// A compiled node: its op, wiring, parameters and the geometry its op's parse stored.
struct Node {
  const OpDef* op = nullptr;
  std::vector<int> inputs;        // value indices, each < K + this node's index
  std::vector<int64_t> in_sizes;  // elements per sample of each input
  int64_t out_size = 0;           // elements per sample of the output
  ElemType out_type = ElemType::float32;  // set by parse (views: the compiler, from the input)
  int64_t aux_size = 0;           // 4-byte cells per sample kept from forward to backward (argmax, ...)
  bool view = false;              // forward returns in[0]: no output buffer of its own
  int nparams = 0;
  const float* param[kMaxNodeParams] = {};
  float* state[kMaxNodeParams] = {};  // the writable state parameters (ParamDef::state), else null
  int64_t param_size[kMaxNodeParams] = {};
  int weight[kMaxNodeParams] = {-1, -1, -1, -1};  // the trained weight each gradient goes to, -1: none
  // A batch-wide node sums over the whole batch (team_allreduce, executor.h); team_doubles
  // is the most values it reduces at once and the per-thread storage kept to its backward.
  bool batch_wide = false;
  int64_t team_doubles = 0;
  std::vector<float> constants;  // per-node constants an op keeps beside its geometry (rescaling's)
  NodeBytes bytes;               // bytes an op keeps (int8 ops: packed weights, per-channel constants)
  ForwardFn forward = nullptr;    // the op's forward and backward, copied at compile
  BackwardFn backward = nullptr;

  // 4-byte cells per sample of the output buffer.
  int64_t out_cells() const { return cells_of(out_size, out_type); }

  // The op's own geometry, a trivially copyable struct of the op's choosing.
  template <class T>
  T& geom() {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= sizeof(geometry_), "geometry too large");
    return *reinterpret_cast<T*>(geometry_);
  }
  template <class T>
  const T& geom() const {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= sizeof(geometry_), "geometry too large");
    return *reinterpret_cast<const T*>(geometry_);
  }

 private:
  alignas(8) unsigned char geometry_[320] = {};
};

struct OpDef {
  const char* kind;
  const char* doc;  // one line: what it computes, its input and output shapes
  int inputs;       // exact count, or kVariadic
  std::vector<ParamDef> params;
  std::vector<AttrDef> attrs;
  // Shape rule and validation: checks `args`, fills node geometry (and aux_size, view,
  // batch_wide, team_doubles); returns the output shape per sample.
  std::vector<int64_t> (*parse)(Node& node, const OpArgs& args);
  // nb samples: in[j] is (nb, in_size[j]), out (nb, out_size) this node's buffer (unused by
  // views), aux (nb, aux_size) cells. Returns the output: `out`, or in[0] for a view. A uint8
  // input or output is passed as float* and read as bytes (see the header comment).
  ForwardFn forward;
  // dout (nb, out_size) -> dinp[j] for every non-null dinp[j] (written, not accumulated) and
  // dparam[k] for every parameter present (never null then: frozen ones get scratch); in,
  // out and aux are what forward read and wrote. Null for an inference-only op (the int8
  // ops): the compiler refuses a network that would need it.
  BackwardFn backward;
  // Optional: after a training step whose loss is finite, write the node's state parameters
  // from what its forward kept (thread 0's team storage, the batch-wide sums).
  void (*commit)(const Node& node, const double* team_storage) = nullptr;
  // The element type of the values it reads (see the header comment).
  Reads reads = Reads::float32;
};

// A registry by name of one kind of definition (ops, activations, loss and update components),
// filled by the definitions' own files as the library loads (static initialisers) and read by
// everything else. The map is a function-local static: it exists before the first file that
// registers into it runs, whatever the order of the files' initialisers.
template <class Def, const char* Def::*Key>
class Registry {
 public:
  static bool add(const Def* def, const char* what) {
    if (map().count(def->*Key)) throw std::logic_error(std::string(what) + " '" + def->*Key + "' is registered twice");
    map()[def->*Key] = def;
    return true;
  }
  static const Def* find(const std::string& name) {
    auto it = map().find(name);
    return it == map().end() ? nullptr : it->second;
  }
  static std::vector<const Def*> all() {  // sorted by name
    std::vector<const Def*> out;
    for (const auto& entry : map()) out.push_back(entry.second);
    return out;
  }

 private:
  static std::map<std::string, const Def*>& map() {
    static std::map<std::string, const Def*> m;
    return m;
  }
};

// Registration, from each family's file: `PYCNN_REGISTER_OP(conv2d_op);` at namespace scope.
bool register_op(const OpDef* op);
const OpDef* find_op(const std::string& kind);
std::vector<const OpDef*> registered_ops();  // sorted by kind
#define PYCNN_REGISTER_OP(def) \
  [[maybe_unused]] static const bool pycnn_registered_##def = ::pycnn::register_op(&def)

// Helpers for parse functions and messages.
// Window sizes, strides, dilations and paddings are at most this (and sizes computed from
// them cannot overflow int64): the layers refuse larger values at construction too.
constexpr int64_t kMaxWindow = 2147483647;
// Attribute `name` as 2 integers in [1, kMaxWindow] (pool_size, strides, dilation_rate).
std::vector<int64_t> window_pair(const OpArgs& args, const char* name);
void expect_input_rank(const OpArgs& args, size_t rank, const char* layout);  // e.g. 3, "(H, W, C)"
void expect_param_shape(const OpArgs& args, int k, const std::vector<int64_t>& shape);
std::string dims_str(const std::vector<int64_t>& dims);   // a sample shape as "(None, 32, 32, 3)"
std::string shape_str(const std::vector<int64_t>& dims);  // an array shape as "(5, 5, 3, 6)"
int64_t size_of(const std::vector<int64_t>& dims);        // product (INT64_MAX when it overflows)
// The most values one sample's tensor may have (inputs and every node's output): 2^40, so that
// a batch's size and every offset computed from it stay far inside int64.
constexpr int64_t kMaxSampleValues = int64_t(1) << 40;
bool padding_is_same(const OpArgs& args, const char* attr = "padding");  // 'same' or 'valid', else fail
const char* attr_type_name(AttrType type);

}  // namespace pycnn
