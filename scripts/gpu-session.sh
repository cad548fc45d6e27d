#!/usr/bin/env bash
# A session on the GPU machine, in two calls that fit the device's 10-minute limit (run through
# .gpu-bundle/remote.sh from the repo root; logs to $OUT):
#   gpu-session.sh tests   build (or unpack FLASH_MPT_PREBUILT), extra oracle goldens (odd head counts, head_dim
#                          64 and 80, fp16, .bin, both layouts, the 1B shape), `flash-mpt bench` on the embedded
#                          1B shape, the GPU jest suite, the CPU golden suite on the extra goldens
#   gpu-session.sh bench   build (or unpack) unless built, `flash-mpt bench --model` on the oracle's 1B folder,
#                          `flash-mpt bench serving` (concurrency 1, 8, 32, 64; greedy, then temperature 0.8), then the
#                          Python peers (bench/peers.py, attention included)
#   gpu-session.sh verify  build (or unpack), `flash-mpt bench` on the embedded 1B shape, the GPU jest suite on
#                          the shared goldens (no oracle run)
#   gpu-session.sh prebuild  `npm run prebuilds` with CUDA for sm_80 and sm_90, the cubins it holds, then with no build/:
#                          `flash-mpt doctor` and a generation on the GPU through the prebuilt binary
#   gpu-session.sh serve   build (or unpack), `flash-mpt doctor`, the GPU jest suite, then `flash-mpt serve --devices`
#                          over every visible GPU with the oracle's 1B folder, loaded by concurrent completions
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
  FLASH_MPT_TEST_DATA="$data" FLASH_MPT_GOLDEN_DIRS=/tmp/m1b FLASH_MPT_ORACLE_1B=/tmp/m1b FLASH_MPT_REQUIRE_GPU=1 timeout "${GPU_TESTS_S:-240}" npx jest test/gpu --runInBand > "$OUT/gpu-tests.log" 2>&1
  stamp "GPU tests: $(grep -E '^Tests:' "$OUT/gpu-tests.log")"
  FLASH_MPT_TEST_DATA="$data" timeout 90 npx jest test/golden-cpu > "$OUT/cpu-goldens.log" 2>&1
  stamp "CPU goldens: $(grep -E '^Tests:' "$OUT/cpu-goldens.log")"
}

# `flash-mpt serve` on every GPU with the oracle's 1B folder (tokenizer linked in), then CONCURRENCY completion
# requests at once through curl; prints the per-replica metrics.
serve_devices() {
  local devices port=8090
  devices=$(nvidia-smi --query-gpu=index --format=csv,noheader | paste -sd, -)
  ln -sf "$FLASH_MPT_TEST_DATA/data/gpt-neox-20b/tokenizer.json" /tmp/m1b/tokenizer.json
  node dist/cli/index.js serve --model /tmp/m1b --devices "$devices" --port $port > "$OUT/serve.log" 2>&1 &
  local server=$!
  for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
  stamp "serve --devices $devices: $(curl -s "http://127.0.0.1:$port/health")"
  local t=$(date +%s%N)
  for i in $(seq "${CONCURRENCY:-64}"); do
    curl -s "http://127.0.0.1:$port/v1/completions" -H 'content-type: application/json' \
      -d "{\"model\":\"m1b\",\"prompt\":\"Request $i: once upon a time\",\"max_tokens\":64,\"temperature\":0.7,\"seed\":$i}" \
      > "/tmp/completion-$i.json" &
  done
  wait $(jobs -p | grep -v "^$server\$")
  stamp "${CONCURRENCY:-64} completions in $(( ($(date +%s%N) - t) / 1000000 )) ms; usage of the first: $(node -p "JSON.stringify(require('/tmp/completion-1.json').usage)")"
  curl -s "http://127.0.0.1:$port/metrics" | grep -E 'requests_total|generated_tokens_total' | tee -a "$OUT/session.log"
  kill $server
  wait $server 2>/dev/null
}

serve() {
  python3 "$FLASH_MPT_TEST_DATA/reference/mpt_oracle.py" --preset 1b --dtype bfloat16 --device cuda --out /tmp/m1b > "$OUT/oracle.log" 2>&1 &
  local oracle_pid=$!
  install_addon
  timeout 60 node dist/cli/index.js doctor > "$OUT/doctor.txt" 2>&1
  stamp "doctor exit $?"
  cat "$OUT/doctor.txt"
  FLASH_MPT_REQUIRE_GPU=1 timeout "${GPU_TESTS_S:-330}" npx jest test/gpu --runInBand > "$OUT/gpu-tests.log" 2>&1
  stamp "GPU tests exit $?: $(grep -E '^Tests:' "$OUT/gpu-tests.log")"
  grep -E '✕|●.*›|lifecycle|replicas on|\[precision\]|\[greedy\]' "$OUT/gpu-tests.log" | head -60
  wait $oracle_pid
  stamp "oracle exit $?"
  serve_devices
}

prebuild() {
  FLASH_MPT_CUDA_ARCHS="80;90" timeout 420 npm run prebuilds > "$OUT/prebuild.log" 2>&1
  stamp "prebuilds exit $?: $(grep 'flash-mpt prebuild:' "$OUT/prebuild.log" | tail -1)"
  local binary=prebuilds/linux-x64/flash-mpt.node
  stamp "cubins in $binary: $(cuobjdump --list-elf "$binary" | grep -oE 'sm_[0-9]+a?' | sort | uniq -c | tr '\n' ' ')"
  rm -rf build
  [ -f dist/cli/index.js ] || npm run prepare > "$OUT/build.log" 2>&1
  node dist/cli/index.js doctor --json > "$OUT/doctor-prebuild.json"
  stamp "doctor: $(node -p "const r = require('$OUT/doctor-prebuild.json'); JSON.stringify({ binary: r.binary, gpus: r.gpus.length })")"
  node -e "
    const { createRandomModel, parseConfig } = require('./dist');
    const { SEED_MODEL_SHAPE } = require('./dist/bench/engine');
    (async () => {
      const model = await createRandomModel(parseConfig(SEED_MODEL_SHAPE, '1B shape'), { device: 'cuda', maxContext: 256 });
      const r = await model.generate({ ids: [1, 2, 3] }, { maxTokens: 16, temperature: 0, ignoreEos: true });
      console.log('prebuilt binary on', model.device, 'generated', r.tokenIds.length, 'tokens');
      await model.dispose();
    })();" 2>&1 | tee -a "$OUT/session.log"
}

bench() {
  [ -f build/Release/flash_mpt.node ] || install_addon
  timeout 150 node dist/cli/index.js bench --model /tmp/m1b 2>&1 | tee -a "$OUT/session.log"
  timeout 150 node dist/cli/index.js bench serving 2>&1 | tee -a "$OUT/session.log"
  timeout 90 node dist/cli/index.js bench serving --temperature 0.8 --concurrency 8,64 2>&1 | tee -a "$OUT/session.log"
  PYTHONUNBUFFERED=1 timeout 300 python3 bench/peers.py 2>&1 | grep -v Warning | tee -a "$OUT/session.log"
}

"${1:?usage: gpu-session.sh tests|bench|verify|serve|prebuild}"
stamp done
