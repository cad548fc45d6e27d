#!/usr/bin/env bash
# A session on the GPU machine, in two calls that fit the device's 10-minute limit (run through
# .gpu-bundle/remote.sh from the repo root; logs to $OUT):
#   gpu-session.sh tests   build (or unpack FLASH_MPT_PREBUILT), extra oracle goldens (odd head counts, head_dim
#                          64 and 80, fp16, .bin, both layouts, the 1B shape), `flash-mpt bench` on the embedded
#                          1B shape, the GPU jest suite, the CPU golden suite on the extra goldens
#   gpu-session.sh bench   `flash-mpt bench --model` on the oracle's 1B folder, then the Python peers (bench/peers.py, attention included)
#   gpu-session.sh verify  build (or unpack), `flash-mpt bench` on the embedded 1B shape, the GPU jest suite on
#                          the shared goldens (no oracle run)
# Each stage has its own time limit so one that hangs leaves the others' output.
set -u
OUT=${OUT:-/tmp/flash-mpt-out}
mkdir -p "$OUT"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-16} FLASH_MPT_CUDA=1 FLASH_MPT_CUDA_ARCHS=${FLASH_MPT_CUDA_ARCHS:-90}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/session.log"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/session.log"
data=/tmp/flash-mpt-data

install_addon() {
  # A binary built elsewhere for this GPU (FLASH_MPT_PREBUILT=path/to/flash_mpt.node.xz) saves the device's time.
  if [ -n "${FLASH_MPT_PREBUILT:-}" ]; then
    mkdir -p build/Release && xz -dc "$FLASH_MPT_PREBUILT" > build/Release/flash_mpt.node && npm run prepare > "$OUT/build.log" 2>&1
  else
    timeout 420 npm run build > "$OUT/build.log" 2>&1
  fi
  stamp "build exit $?: $(node -p "JSON.stringify(require('./build/Release/flash_mpt.node').buildInfo())")"
}

embedded_bench() {
  [ -f dist/cli/index.js ] || npm run prepare > "$OUT/build.log" 2>&1
  timeout 150 node dist/cli/index.js bench --json > "$OUT/bench.json" 2> "$OUT/bench.err"
  stamp "bench exit $?"
  node -e "console.log(require('./dist/bench/engine').formatEngineBench(require('$OUT/bench.json')))" 2>&1 | tee -a "$OUT/session.log"
}

verify() {
  install_addon
  embedded_bench
  FLASH_MPT_REQUIRE_GPU=1 timeout "${GPU_TESTS_S:-330}" npx jest test/gpu --runInBand > "$OUT/gpu-tests.log" 2>&1
  stamp "GPU tests exit $?: $(grep -E '^Tests:' "$OUT/gpu-tests.log")"
  grep -E '✕|●.*›|\[precision\]|\[greedy\]|\[1B\]' "$OUT/gpu-tests.log" | head -60
}

tests() {
  local oracle="$FLASH_MPT_TEST_DATA/reference/mpt_oracle.py"
  rm -rf "$data" && cp -r "$FLASH_MPT_TEST_DATA" "$data" && chmod -R u+w "$data"
  (
    python3 "$oracle" --preset tiny --n-heads 3 --d-model 240 --layout mpt --format bin --dtype float16 --seed 21 --out "$data/golden/x-mpt-bin-f16-h3"
    python3 "$oracle" --preset tiny --n-heads 4 --d-model 256 --layout mosaic_gpt --dtype bfloat16 --seed 22 --out "$data/golden/x-mosaic-bf16-hd64"
    python3 "$oracle" --preset tiny --n-heads 6 --d-model 384 --n-layers 3 --layout mpt --dtype float32 --no-qk-ln --seed 23 --out "$data/golden/x-mpt-f32-h6"
    python3 "$oracle" --preset 1b --dtype bfloat16 --device cuda --out /tmp/m1b
  ) > "$OUT/oracle.log" 2>&1 &
  local oracle_pid=$!
  install_addon
  embedded_bench
  wait $oracle_pid
  stamp "oracle exit $?: $(ls "$data/golden" | tr '\n' ' ')"
  FLASH_MPT_TEST_DATA="$data" FLASH_MPT_GOLDEN_DIRS=/tmp/m1b FLASH_MPT_REQUIRE_GPU=1 timeout 240 npx jest test/gpu --runInBand > "$OUT/gpu-tests.log" 2>&1
  stamp "GPU tests: $(grep -E '^Tests:' "$OUT/gpu-tests.log")"
  FLASH_MPT_TEST_DATA="$data" timeout 90 npx jest test/golden-cpu > "$OUT/cpu-goldens.log" 2>&1
  stamp "CPU goldens: $(grep -E '^Tests:' "$OUT/cpu-goldens.log")"
}

bench() {
  [ -f dist/cli/index.js ] || npm run prepare > "$OUT/build.log" 2>&1
  timeout 150 node dist/cli/index.js bench --model /tmp/m1b 2>&1 | tee -a "$OUT/session.log"
  PYTHONUNBUFFERED=1 timeout 300 python3 bench/peers.py 2>&1 | grep -v Warning | tee -a "$OUT/session.log"
}

"${1:?usage: gpu-session.sh tests|bench|verify}"
stamp done
