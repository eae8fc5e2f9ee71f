// Native execution of a whole Sequential network (see network.h).
#include "network.h"

#include <algorithm>
#include <cstring>

#include "activation.h"
#include "dense.h"
#include "optimizer.h"
#include "softmax.h"

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

namespace pycnn {
namespace {

// A thread runs its samples in chunks whose activations and gradients take about
// kChunkBytes (LeNet: 44 samples), at least kMinChunk: measured on LeNet at batch 256, chunks
// of 32-48 samples ran about 10% faster than one pass over 128 samples per thread, chunks of
// 8-24 slower (more calls, more gradient sums). Each extra chunk adds one pass over the
// weight gradients, hence the floor for models with many parameters. Chunks also bound the
// scratch memory of a large batch (predict on 10,000 images needs 10,000 samples' output,
// not their activations).
constexpr int64_t kChunkBytes = 4 << 20;
constexpr int64_t kMinChunk = 32;

// Samples per chunk: every layer's output for one sample plus `extra` floats per sample.
int64_t chunk_size(const std::vector<NetLayer>& layers, int64_t extra) {
  int64_t per_sample = extra;
  for (const NetLayer& L : layers) per_sample += L.out_size;
  return std::max<int64_t>(kMinChunk, kChunkBytes / (std::max<int64_t>(per_sample, 1) * 4));
}

int team_index() {
#ifdef PYCNN_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

int team_size() {
#ifdef PYCNN_OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// Samples [n0, n1) of thread t out of T.
void share(int64_t N, int t, int T, int64_t* n0, int64_t* n1) {
  *n0 = N * t / T;
  *n1 = N * (t + 1) / T;
}

// Forward of layer L on nb samples: in -> out (out may alias `in` for flatten).
const float* layer_forward(const NetLayer& L, const float* in, float* out, int32_t* argmax, int64_t nb) {
  switch (L.kind) {
    case NetKind::conv2d: {
      ConvShape s = L.conv;
      s.N = nb;
      conv2d_forward(out, in, L.weight, L.bias, s, L.act);
      return out;
    }
    case NetKind::maxpool2d: {
      PoolShape s = L.pool;
      s.N = nb;
      maxpool2d_forward(out, argmax, in, s);
      return out;
    }
    case NetKind::avgpool2d: {
      PoolShape s = L.pool;
      s.N = nb;
      avgpool2d_forward(out, in, s);
      return out;
    }
    case NetKind::flatten: return in;  // NHWC is already row-major (N, H*W*C)
    case NetKind::dense:
      dense_forward(out, in, L.weight, L.bias, nb, L.in_size, L.out_size, L.act);
      return out;
    case NetKind::activation:
      std::memcpy(out, in, sizeof(float) * nb * L.in_size);
      apply_activation(out, nb * L.in_size, L.act);
      return out;
  }
  return out;
}

struct ThreadBuffers {
  std::vector<const float*> outputs;  // per layer, for this thread's samples
  std::vector<int32_t*> argmax;
};

// Runs the forward of all layers for samples [n0, n1); returns the last output.
const float* forward_share(const std::vector<NetLayer>& layers, const float* x, int64_t n0, int64_t nb, int slot,
                           ThreadBuffers* tb) {
  int64_t total = 0, index_total = 0;
  for (const NetLayer& L : layers) {
    total += L.out_size;
    if (L.kind == NetKind::maxpool2d) index_total += L.out_size;
  }
  float* acts = scratch(slot, static_cast<std::size_t>(total * nb), kScratchNetActs);
  // int32 and float have the same size; the argmax cells are only ever read as int32.
  int32_t* index = reinterpret_cast<int32_t*>(scratch(slot, static_cast<std::size_t>(index_total * nb + 1), kScratchNetIndex));
  const float* in = x + n0 * layers.front().in_size;
  tb->outputs.assign(layers.size(), nullptr);
  tb->argmax.assign(layers.size(), nullptr);
  for (size_t i = 0; i < layers.size(); ++i) {
    const NetLayer& L = layers[i];
    if (L.kind == NetKind::maxpool2d) {
      tb->argmax[i] = index;
      index += L.out_size * nb;
    }
    in = layer_forward(L, in, acts, tb->argmax[i], nb);
    tb->outputs[i] = in;
    acts += L.out_size * nb;
  }
  return in;
}

}  // namespace

double network_train_step(const std::vector<NetLayer>& layers, const float* x, const int64_t* labels, int64_t N,
                          int64_t classes, int64_t* correct, const AdamStep* adam) {
  // Offsets of each parameterised layer's gradients in a thread's gradient buffer.
  std::vector<int64_t> param_offset(layers.size(), -1);
  int64_t params = 0;
  int first_param = -1;
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].dweight) {
      param_offset[i] = params;
      params += layers[i].weight_size + layers[i].bias_size;
      if (first_param < 0) first_param = static_cast<int>(i);
    }
  int64_t max_size = layers.front().in_size;
  for (const NetLayer& L : layers) max_size = std::max(max_size, L.out_size);

  const int T = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), N)));
  const int base = slot_base();
  std::vector<double> loss_part(T, 0.0);
  std::vector<int64_t> correct_part(T, 0);
  std::vector<float*> grads(T, nullptr);
  const float scale = 1.f / static_cast<float>(N);
  const int64_t chunk = chunk_size(layers, 2 * max_size);

#ifdef PYCNN_OPENMP
#pragma omp parallel num_threads(T)
#endif
  {
    const int t = team_index(), team = team_size();
    int64_t n0, n1;
    share(N, t, team, &n0, &n1);
    const int64_t nb = n1 - n0;
    SerialKernels serial(base + t);
    float* mygrads = scratch(base + t, static_cast<std::size_t>(params + 1), kScratchNetParams);
    grads[t] = mygrads;
    // The thread's samples go through in chunks of `chunk`, so that a chunk's activations
    // stay in cache; the chunks' weight gradients are summed into mygrads.
    auto run_chunk = [&](int64_t c0, int64_t cb, float* dst) {
      ThreadBuffers tb;
      const float* logits = forward_share(layers, x, c0, cb, base + t, &tb);
      float* gbuf = scratch(base + t, static_cast<std::size_t>(2 * max_size * cb), kScratchNetGrad);
      float* g = gbuf;                       // gradient w.r.t. the current layer's output
      float* g_next = gbuf + max_size * cb;  // its input gradient goes here
      // Fused softmax + cross-entropy: probabilities into g, then g = (p - onehot) / N.
      loss_part[t] += softmax_crossentropy_forward(g, logits, labels + c0, cb, classes) * static_cast<double>(cb);
      int64_t hits = 0;
      for (int64_t r = 0; r < cb; ++r) {
        const float* z = logits + r * classes;
        hits += (std::max_element(z, z + classes) - z) == labels[c0 + r];
      }
      correct_part[t] += hits;
      softmax_crossentropy_backward(g, g, labels + c0, cb, classes, scale);
      for (int i = static_cast<int>(layers.size()) - 1; i >= std::max(first_param, 0); --i) {
        const NetLayer& L = layers[i];
        const float* in = i > 0 ? tb.outputs[i - 1] : x + c0 * layers.front().in_size;
        const bool need_dinp = i > first_param;
        float* dinp = need_dinp ? g_next : nullptr;
        float* dw = param_offset[i] >= 0 ? dst + param_offset[i] : nullptr;
        float* db = (dw && L.bias) ? dw + L.weight_size : nullptr;
        if (!dw && dinp && (L.kind == NetKind::conv2d || L.kind == NetKind::dense))
          // Frozen layer inside the network: only its input gradient is needed; the weight
          // gradient, which the kernels always write, lands in scratch.
          dw = scratch(base + t, static_cast<std::size_t>(L.weight_size), kScratchNetFrozen);
        switch (L.kind) {
          case NetKind::conv2d: {
            ConvShape s = L.conv;
            s.N = cb;
            if (dw) conv2d_backward(dinp, dw, db, g, in, L.weight, tb.outputs[i], s, L.act);
            break;
          }
          case NetKind::dense:
            if (dw) dense_backward(dinp, dw, db, g, in, L.weight, tb.outputs[i], cb, L.in_size, L.out_size, L.act);
            break;
          case NetKind::maxpool2d: {
            PoolShape s = L.pool;
            s.N = cb;
            if (dinp) maxpool2d_backward(dinp, g, tb.argmax[i], s);
            break;
          }
          case NetKind::avgpool2d: {
            PoolShape s = L.pool;
            s.N = cb;
            if (dinp) avgpool2d_backward(dinp, g, s);
            break;
          }
          case NetKind::flatten:
            if (dinp) std::memcpy(dinp, g, sizeof(float) * cb * L.in_size);
            break;
          case NetKind::activation:
            if (dinp) {
              std::memcpy(dinp, g, sizeof(float) * cb * L.in_size);
              activation_grad_inplace(dinp, tb.outputs[i], cb * L.in_size, L.act);
            }
            break;
        }
        if (dinp) std::swap(g, g_next);
      }
    };
    for (int64_t c0 = n0; c0 < n1; c0 += chunk) {
      const int64_t cb = std::min(chunk, n1 - c0);
      if (c0 == n0) {
        run_chunk(c0, cb, mygrads);
      } else {
        float* part = scratch(base + t, static_cast<std::size_t>(params + 1), kScratchNetChunk);
        run_chunk(c0, cb, part);
        for (int64_t i = 0; i < params; ++i) mygrads[i] += part[i];
      }
    }
    if (nb == 0) {
      std::memset(mygrads, 0, sizeof(float) * params);
    }
#ifdef PYCNN_OPENMP
#pragma omp barrier
#endif
    // Sum the threads' gradients; each thread owns a slice of every parameter array.
    for (size_t i = 0; i < layers.size(); ++i) {
      if (param_offset[i] < 0) continue;
      const NetLayer& L = layers[i];
      for (int part = 0; part < 2; ++part) {
        float* dst = part == 0 ? L.dweight : L.dbias;
        const int64_t size = part == 0 ? L.weight_size : L.bias_size;
        const int64_t off = param_offset[i] + (part == 0 ? 0 : L.weight_size);
        if (!dst || size == 0) continue;
        const int64_t lo = size * t / team, hi = size * (t + 1) / team;
        for (int64_t j = lo; j < hi; ++j) {
          float sum = 0.f;
          for (int u = 0; u < team; ++u) sum += grads[u][off + j];
          dst[j] = sum;
        }
        if (adam) {
          float* w = part == 0 ? L.weight_rw : L.bias_rw;
          float* m = part == 0 ? L.m_weight : L.m_bias;
          float* v = part == 0 ? L.v_weight : L.v_bias;
          adam_update(w + lo, m + lo, v + lo, dst + lo, hi - lo, adam->alpha, adam->beta_1, adam->beta_2,
                      adam->epsilon);
        }
      }
    }
  }
  double loss = 0.0;
  int64_t hits = 0;
  for (int t = 0; t < T; ++t) {
    loss += loss_part[t];
    hits += correct_part[t];
  }
  *correct = hits;
  return loss / static_cast<double>(N);
}

void network_predict(const std::vector<NetLayer>& layers, const float* x, int64_t N, float* out,
                     int64_t softmax_cols) {
  const int base = slot_base();
  const int64_t out_size = layers.back().out_size;
  const int64_t chunk = chunk_size(layers, 0);
#ifdef PYCNN_OPENMP
#pragma omp parallel num_threads(static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), N))))
#endif
  {
    const int t = team_index(), team = team_size();
    int64_t n0, n1;
    share(N, t, team, &n0, &n1);
    SerialKernels serial(base + t);
    for (int64_t c0 = n0; c0 < n1; c0 += chunk) {
      const int64_t cb = std::min(chunk, n1 - c0);
      ThreadBuffers tb;
      const float* y = forward_share(layers, x, c0, cb, base + t, &tb);
      if (softmax_cols > 0)
        softmax_forward(out + c0 * out_size, y, cb * out_size / softmax_cols, softmax_cols);
      else
        std::memcpy(out + c0 * out_size, y, sizeof(float) * cb * out_size);
    }
  }
}

}  // namespace pycnn
