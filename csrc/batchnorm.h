// Batch normalization over the channel axis (the last): what its op (batchnorm.cpp) and the
// op's device half (cuda/batchnorm.cu) share.
#pragma once
#include <cstdint>

#include "activation.h"

namespace pycnn {

// The geometry the batchnorm op stores in its node (node.geom<BnGeom>()): C channels, the
// rows of C values per sample, epsilon and momentum in float32, the fused activation. The
// node is batch_wide exactly in training mode.
struct BnGeom {
  int64_t C, rows_per_sample;
  float epsilon, momentum;
  NodeActivation act;
};

}  // namespace pycnn
