// Standalone CUDA harness for local_attention_cuda.cuh (no TensorFlow).
//
//   harness check DIR     run the four launchers on DIR/meta.txt + DIR/*.bin inputs and write
//                         the outputs next to them (gpu_check.py compares with NumPy)
//   harness bench B S C K REPEATS
//                         time forward+backward of local attention at batch B, S x S, C
//                         channels, kernel K (float32); print one JSON line with the time,
//                         the bytes a perfect kernel must move, and the measured
//                         device-to-device copy bandwidth
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../../custom_ops/cc/kernels/local_attention_cuda.cuh"

#define CHECK_CUDA(expr)                                                                  \
  do {                                                                                    \
    cudaError_t err_ = (expr);                                                            \
    if (err_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr,                   \
                   cudaGetErrorString(err_));                                             \
      std::exit(2);                                                                       \
    }                                                                                     \
  } while (0)

#define CHECK_LAUNCH(expr)                                                 \
  do {                                                                     \
    const char* msg_ = (expr);                                             \
    if (msg_ != nullptr) {                                                 \
      std::fprintf(stderr, "%s:%d launch failed: %s\n", __FILE__, __LINE__, msg_); \
      std::exit(2);                                                        \
    }                                                                      \
  } while (0)

namespace {

template <typename T>
std::vector<T> ReadFile(const std::string& path, size_t count) {
  std::vector<T> data(count);
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    std::fprintf(stderr, "cannot open %s\n", path.c_str());
    std::exit(2);
  }
  if (count > 0 && std::fread(data.data(), sizeof(T), count, f) != count) {
    std::fprintf(stderr, "short read from %s\n", path.c_str());
    std::exit(2);
  }
  std::fclose(f);
  return data;
}

template <typename T>
void WriteFile(const std::string& path, const std::vector<T>& data) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr || std::fwrite(data.data(), sizeof(T), data.size(), f) != data.size()) {
    std::fprintf(stderr, "cannot write %s\n", tmp.c_str());
    std::exit(2);
  }
  std::fclose(f);
  std::rename(tmp.c_str(), path.c_str());
}

template <typename T>
T* ToDevice(const std::vector<T>& host) {
  T* ptr = nullptr;
  CHECK_CUDA(cudaMalloc(&ptr, std::max<size_t>(1, host.size()) * sizeof(T)));
  if (!host.empty()) {
    CHECK_CUDA(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  return ptr;
}

template <typename T>
T* DeviceBuffer(size_t count) {
  T* ptr = nullptr;
  CHECK_CUDA(cudaMalloc(&ptr, std::max<size_t>(1, count) * sizeof(T)));
  // NaN-like garbage: outputs that a kernel forgets to write are caught by the check.
  CHECK_CUDA(cudaMemset(ptr, 0xFF, std::max<size_t>(1, count) * sizeof(T)));
  return ptr;
}

template <typename T>
std::vector<T> ToHost(const T* ptr, size_t count) {
  std::vector<T> host(count);
  if (count > 0) {
    CHECK_CUDA(cudaMemcpy(host.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost));
  }
  return host;
}

template <typename T>
int RunCheck(const std::string& dir, const gfla::Geometry& g) {
  const size_t n_src = g.batch * g.src_height * g.src_width * g.channels;
  const size_t n_pix = g.pixels();
  const size_t n_out = n_pix * g.channels;
  const size_t n_att = n_pix * g.taps();
  const size_t n_blk = n_att * g.channels;
  T* source = ToDevice(ReadFile<T>(dir + "/source.bin", n_src));
  T* flow = ToDevice(ReadFile<T>(dir + "/flow.bin", n_pix * 2));
  T* attention = ToDevice(ReadFile<T>(dir + "/attention.bin", n_att));
  T* grad = ToDevice(ReadFile<T>(dir + "/grad.bin", n_out));
  T* block_grad = ToDevice(ReadFile<T>(dir + "/block_grad.bin", n_blk));
  T* out = DeviceBuffer<T>(n_out);
  T* block = DeviceBuffer<T>(n_blk);
  T* gs = DeviceBuffer<T>(n_src);
  T* gf = DeviceBuffer<T>(n_pix * 2);
  T* ga = DeviceBuffer<T>(n_att);
  T* bgs = DeviceBuffer<T>(n_src);
  T* bgf = DeviceBuffer<T>(n_pix * 2);
  CHECK_LAUNCH(gfla::cuda::LocalAttentionForward<T>(nullptr, g, source, flow, attention, out));
  CHECK_LAUNCH(gfla::cuda::BlockExtractForward<T>(nullptr, g, source, flow, block));
  CHECK_LAUNCH(gfla::cuda::LocalAttentionBackward<T>(nullptr, g, grad, source, flow, attention,
                                                     gs, gf, ga));
  CHECK_LAUNCH(gfla::cuda::BlockExtractBackward<T>(nullptr, g, block_grad, source, flow, bgs,
                                                   bgf));
  CHECK_CUDA(cudaDeviceSynchronize());
  WriteFile(dir + "/out_local_attention.bin", ToHost(out, n_out));
  WriteFile(dir + "/out_block_extract.bin", ToHost(block, n_blk));
  WriteFile(dir + "/grad_source.bin", ToHost(gs, n_src));
  WriteFile(dir + "/grad_flow.bin", ToHost(gf, n_pix * 2));
  WriteFile(dir + "/grad_attention.bin", ToHost(ga, n_att));
  WriteFile(dir + "/block_grad_source.bin", ToHost(bgs, n_src));
  WriteFile(dir + "/block_grad_flow.bin", ToHost(bgf, n_pix * 2));
  for (T* p : {source, flow, attention, grad, block_grad, out, block, gs, gf, ga, bgs, bgf}) {
    CHECK_CUDA(cudaFree(p));
  }
  return 0;
}

__global__ void FillKernel(float* data, int64_t n, uint32_t seed, float scale, float offset) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    data[i] = offset + scale * (static_cast<float>(h & 0xFFFFFF) / 16777216.0f);
  }
}

float* RandomBuffer(int64_t n, uint32_t seed, float scale, float offset) {
  float* ptr = nullptr;
  CHECK_CUDA(cudaMalloc(&ptr, std::max<int64_t>(1, n) * sizeof(float)));
  FillKernel<<<1024, 256>>>(ptr, n, seed, scale, offset);
  CHECK_CUDA(cudaGetLastError());
  return ptr;
}

float MedianMs(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int RunBench(int64_t batch, int64_t size, int64_t channels, int k, int repeats) {
  gfla::Geometry g;
  g.batch = batch;
  g.height = g.width = g.src_height = g.src_width = size;
  g.channels = channels;
  g.kernel_size = k;
  const int64_t n_src = batch * size * size * channels;
  const int64_t n_pix = g.pixels();
  const int64_t n_att = n_pix * g.taps();
  float* source = RandomBuffer(n_src, 1, 2.0f, -1.0f);
  float* flow = RandomBuffer(n_pix * 2, 2, 8.0f, -4.0f);  // +-4 px
  float* attention = RandomBuffer(n_att, 3, 1.0f, 0.0f);
  float* grad = RandomBuffer(n_src, 4, 2.0f, -1.0f);
  float *out, *gs, *gf, *ga;
  CHECK_CUDA(cudaMalloc(&out, n_src * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&gs, n_src * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&gf, n_pix * 2 * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&ga, n_att * sizeof(float)));
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  std::vector<float> fwd_ms, bwd_ms, copy_ms;
  for (int r = 0; r < repeats + 1; ++r) {
    float ms = 0;
    CHECK_CUDA(cudaEventRecord(start));
    CHECK_LAUNCH(gfla::cuda::LocalAttentionForward<float>(nullptr, g, source, flow, attention,
                                                          out));
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    if (r > 0) fwd_ms.push_back(ms);
    CHECK_CUDA(cudaEventRecord(start));
    CHECK_LAUNCH(gfla::cuda::LocalAttentionBackward<float>(nullptr, g, grad, source, flow,
                                                           attention, gs, gf, ga));
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    if (r > 0) bwd_ms.push_back(ms);
  }
  // Device-to-device copy of 256 MiB: the achievable bandwidth (read + write bytes / time).
  const size_t copy_bytes = size_t{256} << 20;
  void *a = nullptr, *b = nullptr;
  CHECK_CUDA(cudaMalloc(&a, copy_bytes));
  CHECK_CUDA(cudaMalloc(&b, copy_bytes));
  for (int r = 0; r < repeats + 1; ++r) {
    float ms = 0;
    CHECK_CUDA(cudaEventRecord(start));
    CHECK_CUDA(cudaMemcpyAsync(b, a, copy_bytes, cudaMemcpyDeviceToDevice));
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    if (r > 0) copy_ms.push_back(ms);
  }
  const double copy_gbs = 2.0 * copy_bytes / (MedianMs(copy_ms) * 1e-3) / 1e9;
  // Minimal traffic: forward reads source, flow, attention and writes the output; backward
  // reads grad, source, flow, attention and writes grad_source, grad_flow, grad_attention.
  const double fwd_bytes = 4.0 * (2 * n_src + 2 * n_pix + n_att);
  const double bwd_bytes = 4.0 * (3 * n_src + 4 * n_pix + 2 * n_att);
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf(
      "{\"device\": \"%s\", \"batch\": %lld, \"size\": %lld, \"channels\": %lld, \"k\": %d, "
      "\"forward_ms\": %.4f, \"backward_ms\": %.4f, \"min_bytes\": %.0f, "
      "\"copy_gbs\": %.1f}\n",
      prop.name, static_cast<long long>(batch), static_cast<long long>(size),
      static_cast<long long>(channels), k, MedianMs(fwd_ms), MedianMs(bwd_ms),
      fwd_bytes + bwd_bytes, copy_gbs);
  for (void* p : {(void*)source, (void*)flow, (void*)attention, (void*)grad, (void*)out,
                  (void*)gs, (void*)gf, (void*)ga, a, b}) {
    CHECK_CUDA(cudaFree(p));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "check") {
    const std::string dir = argv[2];
    FILE* f = std::fopen((dir + "/meta.txt").c_str(), "r");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot open %s/meta.txt\n", dir.c_str());
      return 2;
    }
    long long b, h, w, hs, ws, c;
    int k;
    char dtype[16];
    if (std::fscanf(f, "%lld %lld %lld %lld %lld %lld %d %15s", &b, &h, &w, &hs, &ws, &c, &k,
                    dtype) != 8) {
      std::fprintf(stderr, "bad meta.txt\n");
      return 2;
    }
    std::fclose(f);
    gfla::Geometry g;
    g.batch = b;
    g.height = h;
    g.width = w;
    g.src_height = hs;
    g.src_width = ws;
    g.channels = c;
    g.kernel_size = k;
    return std::string(dtype) == "float64" ? RunCheck<double>(dir, g) : RunCheck<float>(dir, g);
  }
  if (argc >= 7 && std::string(argv[1]) == "bench") {
    return RunBench(std::atoll(argv[2]), std::atoll(argv[3]), std::atoll(argv[4]),
                    std::atoi(argv[5]), std::atoi(argv[6]));
  }
  std::fprintf(stderr, "usage: %s check DIR | bench B SIZE C K REPEATS\n", argv[0]);
  return 2;
}
