#!/bin/bash
# One GPU session for the prefill GEMMs (run from the repo root on the GPU machine; logs go to $OUT or
# /tmp/gemm-out): parallel build (sm_90a) of dev/gemm.cu and of dev/engine_bench.cu twice — with this tree's
# GEMM and with the GEMM of BASELINE (another checkout's root, e.g. the one the device call ships), the rest of the
# engine identical — the cuBLAS peers (bench/gemm_peers.py) while it builds, then the GEMM checks and timings,
# the wgmma kernel's SASS, and the engine benchmark before/after against the measured cuBLAS rate.
set -u
OUT=${OUT:-/tmp/gemm-out}
BASELINE=${BASELINE:-}
mkdir -p "$OUT"
obj=/tmp/gemm-obj
rm -rf "$obj" && mkdir -p "$obj"/{engine,gemm,base,dev}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
date -u +%FT%TZ | tee -a "$OUT/gpu.txt"
nvcc() { command nvcc -O3 -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a "$@"; }

t0=$(date +%s)
(
  for f in dev/engine_bench.cu csrc/engine/cuda/*.cu csrc/runtime/*.cu kernels/{attention,embedding,kv,norm,qkv,random,sampling}/*.cu \
           csrc/engine/{model_config,sequence_slots,weights}.cc csrc/engine/cpu/*.cc; do
    nvcc -I. -c "$f" -o "$obj/engine/$(echo "$f" | tr / _).o" &
  done
  for f in kernels/gemm/*.cu; do nvcc -Xptxas -v -I. -c "$f" -o "$obj/gemm/$(basename "$f").o" & done
  nvcc -I. -c dev/gemm.cu -o "$obj/dev/gemm.o" &
  if [ -n "$BASELINE" ]; then
    for f in "$BASELINE"/kernels/gemm/*.cu; do nvcc -I"$BASELINE" -c "$f" -o "$obj/base/$(basename "$f").o" & done
  fi
  wait
  nvcc "$obj/dev/gemm.o" "$obj"/gemm/*.o "$obj/engine/kernels_random_random_init.cu.o" -o /tmp/gemm
  nvcc $(ls "$obj"/engine/*.o) "$obj"/gemm/*.o -o /tmp/engine_new
  [ -n "$BASELINE" ] && nvcc $(ls "$obj"/engine/*.o) "$obj"/base/*.o -o /tmp/engine_base
) > "$OUT/build.log" 2>&1 &
build=$!

(cd bench && PYTHONUNBUFFERED=1 timeout "${PEERS_S:-60}" python3 gemm_peers.py 2>&1 | grep -v Warning) | tee "$OUT/cublas.log"
tflops=$(sed -n 's/^torch bf16 GEMM 8192^3: \([0-9.]*\).*/\1/p' "$OUT/cublas.log")

wait $build
echo "build done after $(( $(date +%s) - t0 )) s; wgmma kernels: $(grep -A2 'gemmWgmmaKernel' "$OUT/build.log" | grep -o 'Used [0-9]* registers' | sort | uniq -c | tr '\n' ' ')"
grep -iE 'error|warning' "$OUT/build.log" | head -10
[ -x /tmp/gemm ] || { echo "build failed"; tail -30 "$OUT/build.log"; exit 1; }

cuobjdump -sass /tmp/gemm > "$OUT/gemm_sass.txt" 2>&1
echo "sass: $(grep -c HGMMA "$OUT/gemm_sass.txt") HGMMA, $(grep -c 'UTMALDG' "$OUT/gemm_sass.txt") UTMALDG, $(grep -cE '\bLDL|\bSTL' "$OUT/gemm_sass.txt") LDL/STL"
# per wgmma kernel: instructions, HGMMA, local-memory accesses (the SASS itself is too large to bring back)
awk '/Function : /{f=$3} f ~ /gemmWgmmaKernel/ && /\/\*[0-9a-f]+\*\/ +[A-Z@]/{n[f]++; if(/HGMMA/)h[f]++; if(/LDL|STL/)l[f]++}
     END{for(f in n) printf "%6d instr %3d HGMMA %3d LDL/STL  %s\n", n[f], h[f], l[f], f}' "$OUT/gemm_sass.txt" | sort -k7 | tee "$OUT/wgmma_sass_summary.txt"
rm -f "$OUT/gemm_sass.txt"

timeout "${GEMM_S:-150}" /tmp/gemm > "$OUT/gemm.log" 2>&1
echo "gemm exit $?: $(grep -c '^PASS' "$OUT/gemm.log") PASS, $(grep -c '^FAIL' "$OUT/gemm.log") FAIL"
grep -E '^FAIL|wgmma kernel|error' "$OUT/gemm.log" | head -20
sed -n '/^prefill GEMMs/,/^decode/p' "$OUT/gemm.log" | grep -v '^decode'

# twice each, interleaved: the spread between runs of one binary is the noise floor of the before/after
for run in 1 2; do
  for e in base new; do
    [ -x /tmp/engine_$e ] || continue
    echo "engine_bench ($e GEMM, run $run):"
    timeout "${ENGINE_S:-60}" /tmp/engine_$e "${tflops:-0}" > "$OUT/engine_${e}_$run.log" 2>&1
    echo "exit $?"
    sed -n '/prefill tokens/,/^$/p' "$OUT/engine_${e}_$run.log"
  done
done
head -1 "$OUT/engine_new_1.log"
