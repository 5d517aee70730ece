#!/usr/bin/env bash
# Reproduces every number in docs/perf.md: generates the benchmark models, then runs each
# workload with --json into bench-results/ (and prints the tables), then renders the charts into
# docs/plots/. Usage: bash docs/bench.sh [SECTION...]  with sections decode arch quant batch prefix capacity
# spec mixed overload ops attention sample kernel server inspector plot (default: all). PAGODA_BIN=path/to/pagoda uses another build.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${PAGODA_BIN:-./build/pagoda}
SECTIONS=${*:-decode arch quant batch prefix capacity spec mixed overload ops attention sample kernel server inspector plot}
echo "bench.sh: commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+dirty'), $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
M=bench-models
OUT=bench-results
mkdir -p "$M" "$OUT"
[[ -x $B ]] || ./setup.sh
VULKAN=0
$B bench decode -m models/stories260K.gguf -n 2 -r 1 --backend vulkan >/dev/null 2>&1 && VULKAN=1
if want decode; then
  [[ -f $M/synth-110M-f32.gguf ]]  || $B synth --preset 110M --dtype f32  -o $M/synth-110M-f32.gguf
  [[ -f $M/synth-110M-f16.gguf ]]  || $B synth --preset 110M --dtype f16  -o $M/synth-110M-f16.gguf
  [[ -f $M/synth-110M-q8_0.gguf ]] || $B synth --preset 110M --dtype q8_0 -o $M/synth-110M-q8_0.gguf
  [[ -f $M/synth-110M-q4_0.gguf ]] || $B synth --preset 110M --dtype q4_0 -o $M/synth-110M-q4_0.gguf
fi
[[ -f $M/synth-15M-f32.gguf ]] || $B synth --preset 15M  --dtype f32  -o $M/synth-15M-f32.gguf
if want prefix || want spec; then
  [[ -f $M/wide.gguf ]] || $B synth --widen models/stories260K.gguf -o $M/wide.gguf
  [[ -f $M/xs.gguf ]]   || $B convert ../shared/models/llama2xs-260K.bin --tokenizer ../shared/models/tok512.bin -o $M/xs.gguf
fi
run() { local name=$1; shift; echo "== $name: pagoda $*"; $B "$@"; $B "$@" --json 2>/dev/null > "$OUT/$name.json"; }
if want decode; then
  # Memory roofline (bytes a step streams) and prefill vs the FMA peak, per weight type.
  for dt in f32 f16 q8_0 q4_0; do
    run decode-110M-$dt bench decode -m $M/synth-110M-$dt.gguf --prompt-tokens 64 -n 16 -r 2
  done
  run decode-260K-cpu  bench decode -m models/stories260K.gguf --prompt-tokens 16 -n 64 -r 3
  if ((VULKAN)); then run decode-260K-vulkan bench decode -m models/stories260K.gguf --prompt-tokens 16 -n 64 -r 3 --backend vulkan; fi
fi
# Every architecture at the 1B shape (TinyLlama-like, GQA 32/4), Q8_0 to keep each file ~1.2 GB,
# one after another in one run: its extra steps (biases, q/k norms, post-norms, GELU, soft caps,
# fused projections) against the same memory roofline.
if want arch; then
  for a in llama qwen2 qwen3 gemma2 gemma3 phi3; do
    [[ -f $M/synth-1B-$a-q8_0.gguf ]] || $B synth --preset 1B --arch $a --dtype q8_0 -o $M/synth-1B-$a-q8_0.gguf
  done
  for a in llama qwen2 qwen3 gemma2 gemma3 phi3; do
    run decode-1B-$a bench decode -m $M/synth-1B-$a-q8_0.gguf --prompt-tokens 16 -n 8 -r 2
  done
fi
# Every weight type that decodes fast on the CPU, same 110M shape, and perplexity on a real text.
if want quant; then
  for dt in q6_k q5_0 q4_k_m; do
    [[ -f $M/synth-110M-$dt.gguf ]] || $B synth --preset 110M --dtype $dt -o $M/synth-110M-$dt.gguf
    run decode-110M-$dt bench decode -m $M/synth-110M-$dt.gguf --prompt-tokens 64 -n 16 -r 2
  done
  # The 1B shape (TinyLlama-like, GQA 32/4): the K-quants people download, weights far past the caches.
  for dt in q4_k_m q6_k; do
    [[ -f $M/synth-1B-$dt.gguf ]] || $B synth --preset 1B --dtype $dt -o $M/synth-1B-$dt.gguf
    run decode-1B-$dt bench decode -m $M/synth-1B-$dt.gguf --prompt-tokens 64 -n 16 -r 2
  done
  P=../shared/models/parity
  [[ -f $M/wide-ppl-f32.gguf ]] || $B synth --widen models/stories260K.gguf --heads 96 --ffn 1024 --layers 6 -o $M/wide-ppl-f32.gguf
  for f in $M/wide-ppl-f32.gguf $P/wide-q8_0.gguf $P/wide-q4_k_m.gguf; do
    [[ -f $f ]] && { echo "== perplexity $f"; $B perplexity -m "$f" -f ../shared/text/gpl-3.0.txt --ctx 512 --json > "$OUT/ppl-$(basename "$f" .gguf).json"; cat "$OUT/ppl-$(basename "$f" .gguf).json"; echo; }
  done
fi
if want batch; then run batch bench batch -m $M/synth-15M-f32.gguf --streams 1,2,4,8,16,32,64 -n 32 -r 3; fi
if want prefix; then
  run prefix bench prefix -m $M/wide.gguf --prompt-tokens 512 --cached 0,0.25,0.5,0.75,0.9 -r 3
  run prefix-chat bench prefix -m $M/wide.gguf --turns 6 --system-tokens 64 --user-tokens 32 --reply-tokens 32 -r 3
fi
# One closed trace served to completion: paged vs slots sized to the longest request and to the context.
if want capacity; then run capacity bench capacity --requests 64 --kv-memory 8MiB -r 1 -t 1; fi
if want spec; then
  run spec-draft bench spec -m $M/wide.gguf --draft $M/xs.gguf -n 48 -r 3 --k-max 8
  run spec-ngram bench spec -m $M/wide.gguf --ngram 3 -n 48 -r 1 --k-max 4
  run spec-schema bench spec -m $M/wide.gguf --draft $M/xs.gguf -n 96 -r 3 --k-max 3 --schema docs/schemas/records.json
fi
# Poisson arrivals (same seed and lengths everywhere), goodput under TTFT <= 500 ms and mean ITL <= 50 ms.
TRACE="--requests 32 --prompt-len 16:128 --gen-len 16:96 --seed 1 --slo-ttft-ms 500 --slo-itl-ms 50"
if want mixed; then
  run mixed-15M-cpu   bench mixed -m $M/synth-15M-f32.gguf --rate 4,8,16,32 $TRACE
  run mixed-260K-cpu  bench mixed -m models/stories260K.gguf --rate 16,64,256,1024 $TRACE
  if ((VULKAN)); then run mixed-260K-vulkan bench mixed -m models/stories260K.gguf --rate 4,8,16,32 $TRACE --backend vulkan; fi
fi
# Overload and recovery: a burst past saturation against the real queue bound, then a sustainable rate.
if want overload; then
  run overload-260K-cpu bench overload -m models/stories260K.gguf --burst-rate 1500 --burst-s 2 --after-rate 100 \
    --after-s 6 --max-running 8 --max-waiting 32 --prompt-len 16:64 --gen-len 16:32 --slo-ttft-ms 200 --slo-itl-ms 100 --seed 1
fi
if want ops; then
  if ((VULKAN)); then run ops bench ops --backend cpu,vulkan -r 10; else run ops bench ops --backend cpu -r 10; fi
fi
# Paged decode attention (Llama-3-8B layer shape, F16 K/V) against the backend's own copy bandwidth.
if want attention; then
  run attention-cpu bench attention --ctx 1024,8192,32768 -r 5
  if ((VULKAN)); then run attention-vulkan bench attention --ctx 1024,8192 --kv-mib 32 -r 3 --backend vulkan; fi
fi
# Sampler cost per call at a 32,000-token vocabulary, old (sort) vs new, Google Benchmark.
if want sample && [[ -x $(dirname "$B")/pagoda_sample_bench ]]; then
  echo "== sample: pagoda_sample_bench"
  "$(dirname "$B")"/pagoda_sample_bench --benchmark_min_time=0.3 --benchmark_out="$OUT/sample.json" --benchmark_out_format=json
fi
# CPU matmul kernels per weight type on one thread (in L2, from memory, 64-token prefill).
if want kernel && [[ -x $(dirname "$B")/pagoda_kernel_bench ]]; then
  echo "== kernel: pagoda_kernel_bench"
  "$(dirname "$B")"/pagoda_kernel_bench --benchmark_out="$OUT/kernel.json" --benchmark_out_format=json
fi
# HTTP server under load on loopback (8, 40, 96 streaming clients); the test prints the table.
if want server && [[ -x $(dirname "$B")/tests/server_test ]]; then
  echo "== server: server_test --gtest_filter='*ServerLoad*'"
  "$(dirname "$B")"/tests/server_test --gtest_filter='*ServerLoad*' | tee "$OUT/server-load.txt"
fi
# Inspector attached vs not (needs xvfb-run and a UI build).
if want inspector && command -v xvfb-run >/dev/null && $B inspect --help >/dev/null 2>&1; then
  [[ -f $M/xs.gguf ]] || $B convert ../shared/models/llama2xs-260K.bin --tokenizer ../shared/models/tok512.bin -o $M/xs.gguf
  for fps in 10 60; do
    echo "== inspector --fps $fps"
    xvfb-run -a -s '-screen 0 1920x1200x24' $B inspect --bench-steps 3000 --bench-repeats 3 \
      --draft $M/xs.gguf --spec-k auto --rate 60 --kv-blocks 192 -n 48 -t 1 --fps $fps | tee "$OUT/inspector-$fps.txt"
  done
fi
if want plot; then mkdir -p docs/plots && $B bench plot --dir "$OUT" --out docs/plots; fi
echo "results in $OUT/"
