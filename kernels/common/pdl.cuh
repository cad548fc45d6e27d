// Programmatic dependent launch (sm_90+): a kernel launched with launchPdl may start while the previous kernel
// in the stream is still running. It must call pdlWait() before it reads anything that kernel writes or writes
// anything that kernel reads; work before that (streaming weights that no kernel writes) overlaps the
// predecessor's tail and this launch's latency. pdlLaunchDependents() lets the next such kernel start early.
// The decode step's kernels call it before their wait: a dependent's blocks then take the SM slots this kernel's
// blocks free and start their pre-wait work (the GEMVs stream weights) while this kernel and its predecessor run,
// so the weight stream does not drain at each kernel boundary. Still correct: a wait returns only once the previous
// grid has completed and flushed, and that grid passed its own wait first, so every earlier kernel is complete; no
// pre-wait section writes anything. No deadlock: a grid launches only once every block of its predecessor has run
// the trigger (is resident, or done), so the grids a waiting block depends on never wait for SM slots.
// On older GPUs launchPdl is a plain launch and both calls compile to nothing.
#pragma once
#include <cuda_runtime.h>

#include <utility>

namespace flashmpt {

__device__ __forceinline__ void pdlWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Pulls the 128-byte line holding p into L2. Before pdlWait() it lets constant inputs that the weight stream of the
// previous kernel has evicted (LayerNorm weights) arrive during that kernel's tail instead of after the wait.
__device__ __forceinline__ void prefetchL2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

__device__ __forceinline__ void pdlLaunchDependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

inline bool pdlSupported() {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major >= 9;
}

// Launches kernel<<<grid, block, smem, stream>>>(args...) in clusters of `cluster` blocks (1 × 1 × 1: none),
// programmatically dependent on the previous kernel when `pdl` is set and the GPU supports it.
template <class... KernelArgs, class... Args>
cudaError_t launchPdlCluster(bool pdl, dim3 cluster, void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem,
                             cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attributes[2];
  unsigned count = 0;
  if (pdl && pdlSupported()) {
    attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[count++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster.x * cluster.y * cluster.z > 1) {
    attributes[count].id = cudaLaunchAttributeClusterDimension;
    attributes[count].val.clusterDim.x = cluster.x;
    attributes[count].val.clusterDim.y = cluster.y;
    attributes[count++].val.clusterDim.z = cluster.z;
  }
  config.attrs = attributes;
  config.numAttrs = count;
  const cudaError_t err = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  return err != cudaSuccess ? err : cudaGetLastError();
}

template <class... KernelArgs, class... Args>
cudaError_t launchPdl(bool pdl, void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                      Args&&... args) {
  return launchPdlCluster(pdl, dim3(1, 1, 1), kernel, grid, block, smem, stream, std::forward<Args>(args)...);
}

}  // namespace flashmpt
