#!/bin/bash
# One GPU session for the decode step (run from the source root on the GPU machine; logs to $OUT). Binaries are
# built elsewhere and brought in $BINS, so the device spends its time measuring:
#   $BINS/<variant>.tar.xz  the addon's object files without the N-API binding, plus dev/engine_bench.cu's
#                           (see bench/RESULTS-engine.md); linked here into one engine_bench per variant.
#                           With $BINS/<variant>.overlay (naming another variant), only the objects that differ:
#                           unpacked over that variant's
#   $BINS/gemm.xz           dev/gemm.cu (GEMM checks and GEMV timings)
#   $BINS/<variant>.node.xz the addon of a variant, for the GPU jest suites and `flash-mpt bench` (needs
#                           ../.gpu-bundle and dist/)
# STAGES (default "gemm bench tests cli"; "nsys" adds a profile of the decode step) picks what runs; VARIANTS the
# engine_bench order, ROUNDS times over, interleaved (the spread between rounds is the noise floor); BENCH_ARGS
# engine_bench's arguments; NODE_VARIANTS the addons `flash-mpt bench` runs; PROFILE the variants profiled.
# Each stage has its own time limit, so one that hangs leaves the others' output.
set -u
OUT=${OUT:-/tmp/decode-out}
BINS=${BINS:?BINS: folder of prebuilt binaries}
STAGES=${STAGES:-gemm bench tests cli}
VARIANTS=${VARIANTS:-base new}
NODE_VARIANTS=${NODE_VARIANTS:-new}
mkdir -p "$OUT" /tmp/dv
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/session.log"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv | tee "$OUT/gpu.txt"

for v in $VARIANTS; do
  mkdir -p "/tmp/dv/$v"
  [ -f "$BINS/$v.overlay" ] && tar -xJf "$BINS/$(cat "$BINS/$v.overlay").tar.xz" -C "/tmp/dv/$v"
  tar -xJf "$BINS/$v.tar.xz" -C "/tmp/dv/$v" &&
    nvcc -arch=sm_90 /tmp/dv/"$v"/*.o -o "/tmp/dv/$v/engine_bench" -lpthread || stamp "link $v failed"
done

has() { [[ " $STAGES " == *" $1 "* ]]; }

if has gemm; then
  xz -dc "$BINS/gemm.xz" > /tmp/dv/gemm && chmod +x /tmp/dv/gemm
  timeout "${GEMM_S:-90}" /tmp/dv/gemm > "$OUT/gemm.log" 2>&1
  stamp "gemm exit $?: $(grep -c '^PASS' "$OUT/gemm.log") PASS, $(grep -c '^FAIL' "$OUT/gemm.log") FAIL"
  grep -E '^FAIL' "$OUT/gemm.log" | head -20
  grep -A12 'decode weight stream' "$OUT/gemm.log"
  grep -A8 'single skinny' "$OUT/gemm.log"
fi

if has bench; then
  for round in $(seq "${ROUNDS:-1}"); do
    for v in $VARIANTS; do
      timeout "${BENCH_S:-40}" "/tmp/dv/$v/engine_bench" ${BENCH_ARGS:-0} > "$OUT/engine_bench_${v}_$round.log" 2>&1
      echo "variant $v round $round exit $?: $(grep -E '^\| [0-9]+ \| [0-9.]+ \| [0-9]+ \| [0-9.]+ \|$' "$OUT/engine_bench_${v}_$round.log" |
        awk -F'|' '{printf "b%d %s ms  ", $2, $3}') $(grep -o 'copy [0-9]* GB/s' "$OUT/engine_bench_${v}_$round.log")" |
        tee -a "$OUT/bench_summary.txt"
    done
  done
fi

if has nsys; then
  nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
  for v in ${PROFILE:-${VARIANTS%% *}}; do
    [ -n "$nsys" ] || { stamp "no nsys"; break; }
    timeout "${NSYS_S:-60}" "$nsys" profile --cuda-graph-trace=node --trace=cuda -o "/tmp/dv/prof_$v" -f true \
      "/tmp/dv/$v/engine_bench" 0 1 > "$OUT/nsys_$v.log" 2>&1
    timeout 60 "$nsys" stats --report cuda_gpu_trace --format csv -o "$OUT/trace_$v" "/tmp/dv/prof_$v.nsys-rep" \
      >> "$OUT/nsys_$v.log" 2>&1
    stamp "nsys $v exit $?: $(ls "$OUT" | grep "trace_$v" | tr '\n' ' ')"
  done
fi

install_node() {  # $1: variant
  mkdir -p build/Release && xz -dc "$BINS/$1.node.xz" > build/Release/flash_mpt.node
}

if has tests; then
  install_node "${NODE_VARIANTS##* }"
  FLASH_MPT_REQUIRE_GPU=1 timeout "${TESTS_S:-150}" bash ../.gpu-bundle/remote.sh \
    "npx jest ${TEST_FILES:-test/gpu/engine-cuda.test.ts test/gpu/attention-kernels.test.ts} --runInBand" \
    > "$OUT/gpu-tests.log" 2>&1
  stamp "GPU tests exit $?: $(grep -E '^Tests:' "$OUT/gpu-tests.log")"
  grep -E '✕|●.*›|\[1B\]' "$OUT/gpu-tests.log" | head -30
fi

if has cli; then
  for v in $NODE_VARIANTS; do
    install_node "$v"
    timeout "${CLI_S:-80}" bash ../.gpu-bundle/remote.sh "node dist/cli/index.js bench" > "$OUT/cli_bench_$v.log" 2>&1
    stamp "flash-mpt bench ($v) exit $?"
    grep -E 'decode|floor|ceilings' "$OUT/cli_bench_$v.log"
  done
fi
stamp done
