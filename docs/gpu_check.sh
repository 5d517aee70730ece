#!/usr/bin/env bash
# Correctness checks and benchmarks on an NVIDIA GPU, from the bundle docs/gpu_bundle.sh packs:
# CUDA unit tests, conformance of every op and weight type on CUDA and Vulkan against the CPU
# reference, the llama.cpp parity fixtures (one per weight type) on CUDA, greedy stories260K text
# on cpu/cuda/vulkan compared token by token, then decode (F16, Q8_0, Q4_K_M, Q6_K), batch,
# attention and per-op benchmarks on a generated 1B-shaped model. Everything is logged to
# $OUT/gpu_check.log (or /tmp) and the --json results land next to it. Exits non-zero when a check
# failed, including a test run in which every test skipped or a conformance run that passed no
# case: on the GPU machine that means the GPU was never exercised, which is a failure, not a pass.
# Usage: bash docs/gpu_check.sh [SECTION...]  sections: env tests conformance parity greedy decode
# prefill batch attention ops device mixed profile (default: all but prefill, device, mixed, profile). DECODE_BACKENDS (default "cuda vulkan")
# narrows the decode section. Only gpu_check.log and results.tar.gz (every
# per-step file) land in $OUT: the device tool returns at most 8 files.
set -uo pipefail
cd "$(dirname "$0")/.."
D=$PWD/.dev
R=${OUT:-/tmp/gpu_check}
F=/tmp/gpu_check_files  # per-step logs and --json results; archived into $R/results.tar.gz at the end
mkdir -p "$R" "$F"
# gpu_bundle.sh ships the bundle as one archive (the transfer's size cap); unpack it once.
[[ -f $D/bundle.tar.xz && ! -x $D/bin/pagoda ]] && xz -dc "$D/bundle.tar.xz" | tar -C "$D" -xf -
exec > >(tee -a "$R/gpu_check.log") 2>&1
SECTIONS=${*:-env tests conformance parity greedy decode batch attention ops}
# The NVIDIA Vulkan driver needs the GL vendor-neutral dispatch libraries, which the GPU machine's
# image lacks: the Debian packages travel in .gl/ (see docs/perf.md) and are unpacked into / there.
# Only there: that image mounts its driver at /usr/local/nvidia, a workstation's libraries are never
# overwritten.
if [[ -d /usr/local/nvidia ]] && compgen -G ".gl/*.deb" > /dev/null; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
export LD_LIBRARY_PATH=$D/lib
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[[ -f $ICD ]] && export VK_DRIVER_FILES=$ICD
P=$D/bin/pagoda
M=$D/models
W=/tmp/pagoda-gpu-models
mkdir -p "$W"
# The test binaries look for the shared models where the build machine had them.
mkdir -p /work/shared 2>/dev/null && ln -sfn "$M" /work/shared/models 2>/dev/null
if [[ -f $D/models_dir.txt ]]; then  # the exact path compiled into the tests (PAGODA_MODELS_DIR)
  MD=$(cat "$D/models_dir.txt")
  mkdir -p "$(dirname "$MD")" 2>/dev/null && ln -sfn "$M" "$MD" 2>/dev/null
fi
step() { local t=$1; shift; echo "=== $(date +%T) [limit ${t}s] $*"; timeout "$t" "$@"; local rc=$?; echo "=== rc $rc"; return $rc; }
json() { local name=$1 t=$2; shift 2; echo "=== $(date +%T) [limit ${t}s] $* --json > $name.json"; timeout "$t" "$@" --json > "$F/$name.json"; local rc=$?; cat "$F/$name.json"; echo "=== rc $rc"; }
if want env; then
  step 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
fi
# The 1B models for the speed sections are generated in the background (one process per type, on
# the machine's spare cores) while the correctness sections run; each lands under its final name
# only when complete.
SYNTH_PIDS=()
if want decode || want prefill || want batch || want attention || want profile || want device || want mixed; then
  for dt in f16 q8_0 q4_k_m q6_k; do
    [[ -f $W/1B-$dt.gguf ]] && continue
    ( timeout 300 "$P" synth --preset 1B --dtype $dt --vocab-from "$M/vocab/ggml-vocab-llama-spm.gguf" \
        -o "$W/1B-$dt.gguf.part" > "$F/synth-$dt.log" 2>&1 && mv "$W/1B-$dt.gguf.part" "$W/1B-$dt.gguf" ) &
    SYNTH_PIDS+=($!)
  done
fi
FAILED=()
failed() { echo "CHECK FAILED: $*"; FAILED+=("$*"); }
# gtest_check LOG MIN_PASSED MAX_SKIPPED LIMIT CMD...: runs a GoogleTest binary under the time limit
# into $F/LOG.log; the check fails when it exits non-zero, passes fewer than MIN_PASSED tests, or
# skips more than MAX_SKIPPED (-1: any number). On the GPU machine a test that skips is a GPU never
# exercised, so MIN_PASSED is what proves the binary ran at all.
gtest_check() {
  local log=$1 min=$2 max_skipped=$3 limit=$4 rc passed skipped
  shift 4
  step "$limit" "$@" | tee "$F/$log.log"
  rc=${PIPESTATUS[0]}
  passed=$(grep -o '\[  PASSED  \] [0-9]*' "$F/$log.log" | grep -o '[0-9]*$')
  skipped=$(grep -o '\[  SKIPPED \] [0-9]*' "$F/$log.log" | grep -o '[0-9]*$')
  ((rc == 0)) || failed "$log exited $rc"
  ((${passed:-0} >= min)) || failed "$log passed ${passed:-0} tests, fewer than $min (skipped or not run)"
  ((max_skipped < 0 || ${skipped:-0} <= max_skipped)) || failed "$log skipped ${skipped} tests"
}
if want tests; then gtest_check cuda_test 1 -1 90 "$D/bin/cuda_test"; fi
if want conformance; then
  json conformance 120 "$P" conformance --backend cuda vulkan -m "$M/stories260K.gguf" -n 200 --seed 7
  grep -q '"status": *"pass"' "$F/conformance.json" || failed "conformance passed no case (all skipped or none ran)"
  grep -q '"status": *"fail"' "$F/conformance.json" && failed "conformance has failing cases"
fi
if want parity; then
  # The llama fixtures the bundle carries (F16, BF16, Q8_0, Q6_K, Q5_K_M, Q5_1, Q5_0, Q4_K_M, Q4_1,
  # Q4_0, IQ4_NL, Q3_K_M, Q2_K; rope_freqs in all) on CUDA against llama.cpp's logits and greedy
  # ids. None may skip: CUDA has kernels for every type, so a skip is a refusal it should not make.
  gtest_check parity_test 13 0 180 "$D/bin/parity_test" \
    --gtest_filter='*Parity.LogitsAndGreedyMatchLlamaCpp/llama_*_cuda-*llama_f32_*'
  # The other architectures the bundle carries (Q8_0, Q6_K, Q4_K_M of each): all 12 must pass.
  gtest_check parity_test_archs 12 0 180 "$D/bin/parity_test" \
    --gtest_filter="$(printf '*Parity.LogitsAndGreedyMatchLlamaCpp/%s_%s_gguf_cuda:' \
      gemma2 q8_0 gemma2 q6_k gemma2 q4_k_m phi3 q8_0 phi3 q6_k phi3 q4_k_m qwen2 q8_0 qwen2 q6_k qwen2 q4_k_m \
      qwen3 q8_0 qwen3 q6_k qwen3 q4_k_m)"
fi
if want greedy; then
  for b in cpu cuda vulkan; do
    timeout 60 "$P" run -m "$M/stories260K.gguf" -p "Once upon a time" -n 200 --temp 0 --json --backend $b > "$F/greedy-$b.json"
    echo "greedy $b rc $? tokens $(tr -d ' \n' < "$F/greedy-$b.json" | grep -o '"tokens":\[[0-9,]*\]' | md5sum)"
  done
  for b in cuda vulkan; do
    if [[ "$(tr -d ' \n' < "$F/greedy-$b.json" | grep -o '"tokens":\[[0-9,]*\]')" == "$(tr -d ' \n' < "$F/greedy-cpu.json" | grep -o '"tokens":\[[0-9,]*\]')" ]]; then
      echo "GREEDY $b == cpu (200 tokens)"; else failed "greedy $b differs from cpu"; fi
  done
fi
if ((${#SYNTH_PIDS[@]})); then
  echo "=== $(date +%T) waiting for the 1B models"
  wait "${SYNTH_PIDS[@]}"
  ls -l "$W"
fi
if want decode; then
  for dt in f16 q8_0 q4_k_m q6_k; do for b in ${DECODE_BACKENDS:-cuda vulkan}; do
    json decode-1B-$dt-$b 60 "$P" bench decode -m "$W/1B-$dt.gguf" --prompt-tokens 16 -n 128 -r 2 --backend $b
  done; done
  # 5 layers against the 1B's 22 at a 512-entry vocabulary: what a token costs beyond its layers.
  for b in ${DECODE_BACKENDS:-cuda vulkan}; do
    json decode-stories260K-$b 30 "$P" bench decode -m "$M/stories260K.gguf" --prompt-tokens 16 -n 128 -r 2 --backend $b
  done
fi
if want prefill; then
  # Prompt length against prefill rate on CUDA: up to 64 rows the matmuls run as 8-row matvec
  # passes, beyond as the tiled GEMM; the rows show where one overtakes the other.
  for pt in 16 64 65 128 512; do
    json prefill-1B-q4_k_m-cuda-$pt 60 "$P" bench decode -m "$W/1B-q4_k_m.gguf" --prompt-tokens $pt -n 8 -r 2 --backend cuda
  done
fi
if want batch; then json batch-1B-f16-cuda 90 "$P" bench batch -m "$W/1B-f16.gguf" --streams 1,16,64 -n 32 -r 1 --backend cuda; fi
if want attention; then
  for b in cuda vulkan; do json attention-$b 120 "$P" bench attention --backend $b --ctx 1024,8192,32768; done
fi
if want ops; then json ops 90 "$P" bench ops --backend cuda,vulkan -r 10; fi
if want device; then
  # Device-resident decode (sampling on the GPU) against host sampling, 8 streams, greedy identity.
  for b in cuda vulkan; do json device-1B-q4_k_m-$b 90 "$P" bench device -m "$W/1B-q4_k_m.gguf" --streams 8 -n 64 -r 2 --backend $b; done
fi
if want mixed; then
  # Poisson arrivals through the engine on CUDA: throughput, TTFT/ITL percentiles, goodput.
  json mixed-1B-q4_k_m-cuda 150 "$P" bench mixed -m "$W/1B-q4_k_m.gguf" --rate 4,16,64 --requests 64 --backend cuda
fi
if want profile; then
  # Every kernel of one decode step of the 1B Q4_K_M model, timed by ncu (device time per launch):
  # their sum against the measured time per token says whether the GPU or the host sets the pace.
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
  if [[ -n $NCU ]]; then
    step 150 "$NCU" --clock-control none --launch-skip 4000 --launch-count 400 --metrics gpu__time_duration.sum \
      --print-summary per-kernel "$P" bench decode -m "$W/1B-q4_k_m.gguf" --prompt-tokens 16 -n 16 -r 1 --backend cuda \
      > "$F/ncu-decode.txt" 2>&1
    grep -v '^==PROF==' "$F/ncu-decode.txt" | tail -80
  else
    echo "no ncu on this machine"
  fi
fi
echo "=== done $(date +%T)"
tar -C "$F" -czf "$R/results.tar.gz" .
if ((${#FAILED[@]})); then printf 'FAILED: %s\n' "${FAILED[@]}"; exit 1; fi
echo "all checks passed"
