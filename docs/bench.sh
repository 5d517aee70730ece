#!/usr/bin/env bash
# Reproduces every number in docs/perf.md: generates the benchmark models, then runs each
# workload with --json into bench-results/ (and prints the tables). Usage: bash docs/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=./build/pagoda
M=bench-models
OUT=bench-results
mkdir -p "$M" "$OUT"
[[ -x $B ]] || ./setup.sh
[[ -f $M/synth-110M-f32.gguf ]]  || $B synth --preset 110M --dtype f32  -o $M/synth-110M-f32.gguf
[[ -f $M/synth-110M-q8_0.gguf ]] || $B synth --preset 110M --dtype q8_0 -o $M/synth-110M-q8_0.gguf
[[ -f $M/synth-15M-f32.gguf ]]   || $B synth --preset 15M  --dtype f32  -o $M/synth-15M-f32.gguf
[[ -f $M/wide.gguf ]] || $B synth --widen ../shared/models/stories260K.gguf -o $M/wide.gguf
[[ -f $M/xs.gguf ]]   || $B convert ../shared/models/llama2xs-260K.bin --tokenizer ../shared/models/tok512.bin -o $M/xs.gguf
run() { local name=$1; shift; echo "== $name: pagoda $*"; $B "$@"; $B "$@" --json 2>/dev/null > "$OUT/$name.json"; }
run decode-110M-f32  bench decode -m $M/synth-110M-f32.gguf  -n 64 -r 5
run decode-110M-q8_0 bench decode -m $M/synth-110M-q8_0.gguf -n 64 -r 5
run decode-260K-cpu  bench decode -m ../shared/models/stories260K.gguf -n 128 -r 5
if $B bench decode -m ../shared/models/stories260K.gguf -n 2 -r 1 --backend vulkan >/dev/null 2>&1; then
  run decode-260K-vulkan bench decode -m ../shared/models/stories260K.gguf -n 128 -r 5 --backend vulkan
fi
run batch    bench batch  -m $M/synth-15M-f32.gguf --streams 1,2,4,8,16,32,64 -n 32 -r 3
run prefix   bench prefix -m $M/wide.gguf --prompt-tokens 512 --cached 0.9 -r 3
run capacity bench capacity -r 1
run spec-draft bench spec -m $M/wide.gguf --draft $M/xs.gguf -n 48 -r 1 --k-max 8
run spec-ngram bench spec -m $M/wide.gguf --ngram 3 -n 48 -r 1 --k-max 4
echo "results in $OUT/"
