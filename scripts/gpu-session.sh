#!/usr/bin/env bash
# One full session on the GPU machine (run through .gpu-bundle/remote.sh from the repo root; logs to $OUT):
# build with CUDA, make extra goldens with the oracle (odd head counts, head_dim 64, fp16, .bin, both layouts,
# and the 1B shape), run the CPU golden suite on them, the GPU jest suite, `flash-mpt bench` (embedded 1B shape
# and the oracle's 1B checkpoint from its folder), and the Python peers. Each stage has its own time limit.
set -u
OUT=${OUT:-/tmp/flash-mpt-out}
mkdir -p "$OUT"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-16} FLASH_MPT_CUDA=1 FLASH_MPT_CUDA_ARCHS=${FLASH_MPT_CUDA_ARCHS:-90}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/session.log"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/session.log"; }

oracle="$FLASH_MPT_TEST_DATA/reference/mpt_oracle.py"
data=/tmp/flash-mpt-data
rm -rf "$data" && cp -r "$FLASH_MPT_TEST_DATA" "$data" && chmod -R u+w "$data"
(
  python3 "$oracle" --preset tiny --n-heads 3 --d-model 240 --layout mpt --format bin --dtype float16 --seed 21 --out "$data/golden/x-mpt-bin-f16-h3"
  python3 "$oracle" --preset tiny --n-heads 4 --d-model 256 --layout mosaic_gpt --format safetensors --dtype bfloat16 --seed 22 --out "$data/golden/x-mosaic-bf16-hd64"
  python3 "$oracle" --preset tiny --n-heads 6 --d-model 384 --n-layers 3 --layout mpt --dtype float32 --no-qk-ln --seed 23 --out "$data/golden/x-mpt-f32-h6"
  python3 "$oracle" --preset 1b --dtype bfloat16 --device cuda --out /tmp/m1b
) > "$OUT/oracle.log" 2>&1 &
oracle_pid=$!

# A binary built elsewhere for this GPU (FLASH_MPT_PREBUILT=path/to/flash_mpt.node.xz) saves the device's time.
if [ -n "${FLASH_MPT_PREBUILT:-}" ]; then
  mkdir -p build/Release && xz -dc "$FLASH_MPT_PREBUILT" > build/Release/flash_mpt.node && npm run prepare > "$OUT/build.log" 2>&1
else
  timeout 420 npm run build > "$OUT/build.log" 2>&1
fi
stamp "build exit $?: $(node -p "JSON.stringify(require('./build/Release/flash_mpt.node').buildInfo())")"
wait $oracle_pid
stamp "oracle exit $?: $(ls "$data/golden" | tr '\n' ' ')"

FLASH_MPT_TEST_DATA="$data" timeout 300 npx jest test/golden-cpu test/native 2>&1 | tail -40 > "$OUT/cpu-goldens.log"
stamp "CPU goldens: $(grep -E '^Tests:' "$OUT/cpu-goldens.log")"

FLASH_MPT_TEST_DATA="$data" FLASH_MPT_GOLDEN_DIRS=/tmp/m1b FLASH_MPT_REQUIRE_GPU=1 timeout 420 npx jest test/gpu --runInBand > "$OUT/gpu-tests.log" 2>&1
stamp "GPU tests: $(grep -E '^Tests:' "$OUT/gpu-tests.log")"

timeout 300 node dist/cli/index.js bench --json > "$OUT/bench.json" 2> "$OUT/bench.err"
stamp "bench exit $?"
node -e "const r=require('$OUT/bench.json'); console.log(require('./dist/bench/engine').formatEngineBench(r))" | tee -a "$OUT/session.log"
timeout 200 node dist/cli/index.js bench --model /tmp/m1b --decode-tokens 128 2>&1 | tee -a "$OUT/session.log"

PYTHONUNBUFFERED=1 timeout 240 python3 bench/peers.py 2>&1 | grep -v Warning | tee -a "$OUT/session.log"
PYTHONUNBUFFERED=1 timeout 120 python3 bench/attention_peers.py 2>&1 | grep -v Warning | tee -a "$OUT/session.log"
stamp done
