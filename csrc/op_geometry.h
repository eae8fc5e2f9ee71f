// The geometry some ops' parse stores in their Node (op_registry.h, Node::geom), declared here
// rather than inside the ops' files so that their CUDA halves (csrc/cuda/<family>.cu) read the
// same struct the CPU half wrote. Each struct belongs to the op named beside it.
#pragma once
#include <cstdint>

#include "activation.h"
#include "conv2d.h"
#include "conv2d_grouped.h"

namespace pycnn {

// conv2d (conv2d.cpp): the shape for one sample (N = 1), dilation and groups, the activation.
struct Conv2dGeom {
  ConvShape s;
  ConvDilation d;
  bool general;  // dilated or grouped
  NodeActivation act;
};

// dense (dense.cpp): rows per sample (every leading position of a sample is a row).
struct DenseGeom {
  int64_t IN, OUT, rows;
  NodeActivation act;
};

// leaky_relu (activation.cpp).
struct LeakyGeom {
  float slope;
};

}  // namespace pycnn
