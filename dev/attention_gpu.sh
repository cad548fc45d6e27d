#!/bin/bash
# One GPU session for the attention kernels (run from the repo root on the GPU machine; logs go to $OUT or
# /tmp/attn-out): parallel build of dev/attention.cu, the peers (bench/attention_peers.py) while it builds,
# then checks, benchmark, and a compute-sanitizer pass over the small shapes. Each stage has its own time limit
# so one that hangs or crashes leaves the others' output.
set -u
OUT=${OUT:-/tmp/attn-out}
mkdir -p "$OUT" /tmp/attn-obj
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
date -u +%FT%TZ | tee -a "$OUT/gpu.txt"

t0=$(date +%s)
(
  for f in dev/attention.cu kernels/attention/*.cu; do
    nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -I. -c "$f" -o "/tmp/attn-obj/$(basename "$f").o" &
  done
  g++ -std=c++17 -O3 -c kernels/attention/attention_ref.cc -o /tmp/attn-obj/attention_ref.o &
  wait
  nvcc -arch=sm_90 /tmp/attn-obj/*.o -o /tmp/attn
) > "$OUT/build.log" 2>&1 &
build=$!

PYTHONUNBUFFERED=1 timeout "${PEERS_S:-85}" python3 bench/attention_peers.py 2>&1 | grep -v Warning | tee "$OUT/peers.log"

wait $build
echo "build done after $(( $(date +%s) - t0 )) s: $(grep -c 'spill stores' "$OUT/build.log") kernels, spilling: $(grep 'spill stores' "$OUT/build.log" | grep -vc ' 0 bytes spill stores')"
[ -x /tmp/attn ] || { echo "build failed"; tail -30 "$OUT/build.log"; exit 1; }

timeout "${CHECK_S:-60}" /tmp/attn --no-bench > "$OUT/checks.log" 2>&1
echo "checks exit $?: $(grep -c ' ok$' "$OUT/checks.log") ok, $(grep -c 'FAIL' "$OUT/checks.log") FAIL"
grep -E 'FAIL|error|PASS' "$OUT/checks.log" | head -40
# twice: the spread between the two runs is the noise floor of any comparison
timeout "${BENCH_S:-40}" /tmp/attn --no-check 2>&1 | tee "$OUT/bench.log"
timeout "${BENCH_S:-40}" /tmp/attn --no-check 2>&1 | tail -12 | tee "$OUT/bench2.log"

cuobjdump -sass -fun '_ZN8flashmpt4attn20flash_prefill_kernelINS0_13PrefillTraitsI13__nv_bfloat16Li128ELi128ELi32ELi4ELi2ELi2EEELb1ELb1EEEvNS_20FlashAttentionParamsE' /tmp/attn > "$OUT/prefill_sass.txt" 2>&1
echo "sass: $(grep -c HMMA "$OUT/prefill_sass.txt") HMMA, $(grep -c 'LDL' "$OUT/prefill_sass.txt") LDL, $(grep -c 'STL' "$OUT/prefill_sass.txt") STL"
timeout "${SAN_S:-30}" compute-sanitizer --tool memcheck --print-limit 5 /tmp/attn --no-bench --small > "$OUT/memcheck.log" 2>&1
echo "memcheck exit $?: $(grep -E 'ERROR SUMMARY|FAIL' "$OUT/memcheck.log" | head -3)"
