#!/bin/bash
# Builds the dev harnesses for sm_90a on any machine with nvcc (no GPU needed), so a device call spends its time
# measuring: DEST/engine_bench (dev/engine_bench.cu + the engine without the N-API binding), DEST/gemm
# (dev/gemm.cu) and DEST/attention (dev/attention.cu), each xz-compressed beside it as NAME.xz for carrying.
# Usage: bash dev/build_dev_bins.sh DEST   (from the source root; JOBS parallel compiles, default nproc)
set -eu
dest=$(realpath -m "${1:?usage: build_dev_bins.sh DEST}")
obj=$(mktemp -d)
mkdir -p "$dest"
flags=(-O3 -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -I.)
sources=(dev/engine_bench.cu dev/gemm.cu dev/attention.cu csrc/engine/cuda/*.cu csrc/runtime/*.cu kernels/*/*.cu
         kernels/attention/attention_ref.cc csrc/engine/{model_config,sequence_slots,weights}.cc csrc/engine/cpu/*.cc)
printf '%s\n' "${sources[@]}" | xargs -P "${JOBS:-$(nproc)}" -I{} sh -c \
  'nvcc "$@" -c {} -o "'"$obj"'/$(echo {} | tr / _).o"' _ "${flags[@]}"
cd "$obj"
engine=$(ls | grep -vE '^dev_|attention_ref')
nvcc -gencode=arch=compute_90a,code=sm_90a dev_engine_bench.cu.o $engine -o "$dest/engine_bench" -lpthread
nvcc -gencode=arch=compute_90a,code=sm_90a dev_gemm.cu.o kernels_gemm_*.o kernels_random_random_init.cu.o -o "$dest/gemm"
nvcc -gencode=arch=compute_90a,code=sm_90a dev_attention.cu.o kernels_attention_*.o csrc_engine_cpu_cpu_ops.cc.o -o "$dest/attention" -lpthread
cd "$OLDPWD"
rm -rf "$obj"
for b in engine_bench gemm attention; do xz -T0 -f -k "$dest/$b"; done
ls -la "$dest"
