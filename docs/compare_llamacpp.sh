#!/usr/bin/env bash
# Pagoda against llama.cpp on the same GGUF files and threads, side by side (docs/perf.md, "Against
# llama.cpp on the same files"). llama.cpp is built outside the repository from the source that
# the npm package node-llama-cpp ships as a git bundle (npm is the only registry this machine
# reaches), with its native CPU paths; nothing of it enters Pagoda. The two engines alternate file
# by file, for ROUNDS rounds, so a host whose speed drifts moves both columns alike. Run it on an
# otherwise idle machine: llama.cpp's OpenMP threads spin, and with a core shared its prompt rate
# fell tenfold here (pp256 201 against 1882 tok/s idle), which would flatter Pagoda.
#
# Usage: bash docs/compare_llamacpp.sh [FILE.gguf ...]
#   (default: every bench-models/synth-*.gguf; make them with `pagoda synth`, docs/perf.md)
# Environment: PAGODA (the binary, default build/pagoda), THREADS (2), ROUNDS (2),
#   PROMPT (256), GEN (32), WORK (/tmp/llamacpp-ref: the npm package, checkout and build),
#   NLC_VERSION (3.22.1), PERPLEXITY=1 to also compare perplexity over ../shared/text/gpl-3.0.txt
#   on the files given (exact attention and F32 K/V on both sides: llama.cpp's `-fa off -ctk f32
#   -ctv f32`; its default flash attention on the CPU rounds differently), COLD=1 to compare only
#   cold starts instead of speed: per file and round, a fresh process of each engine loads the
#   file, reads a 14-token prompt and prints one token (`llama-simple -n 1` / `pagoda run -n 1
#   --temp 0`); printed is the time from launch to that token's first byte on stdout, and to exit.
# Output: one line per file and round: llama.cpp's pp and tg (llama-bench, mean of 2 repetitions
# after its warm-up; tg decodes after PROMPT tokens of context, `-d`) and Pagoda's prefill and
# decode (`bench decode`, median of 2 runs after a warm-up; decode after the prompt), all tok/s.
set -euo pipefail
cd "$(dirname "$0")/.."
PAGODA=${PAGODA:-build/pagoda}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
PROMPT=${PROMPT:-256}
GEN=${GEN:-32}
WORK=${WORK:-/tmp/llamacpp-ref}
NLC_VERSION=${NLC_VERSION:-3.22.1}

if [[ ! -x $WORK/build/bin/llama-bench || ! -x $WORK/build/bin/llama-perplexity || ! -x $WORK/build/bin/llama-simple ]]; then
  mkdir -p "$WORK"
  (cd "$WORK" && [[ -f node-llama-cpp-$NLC_VERSION.tgz ]] || npm pack "node-llama-cpp@$NLC_VERSION" >/dev/null)
  tar xzf "$WORK/node-llama-cpp-$NLC_VERSION.tgz" -C "$WORK" package/llama/gitRelease.bundle
  [[ -d $WORK/src ]] || git clone -q "$WORK/package/llama/gitRelease.bundle" "$WORK/src"
  cmake -S "$WORK/src" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF >/dev/null
  cmake --build "$WORK/build" -j2 --target llama-bench llama-perplexity llama-simple >/dev/null
fi
echo "llama.cpp $(git -C "$WORK/src" log -1 --format='%h %ad' --date=short), pagoda $(git log -1 --format=%h 2>/dev/null || echo '?'), $THREADS threads"

FILES=("$@")
[[ ${#FILES[@]} -gt 0 ]] || FILES=(bench-models/synth-*.gguf)
# llama.cpp's tg decodes at a depth of PROMPT tokens (`-d`), as Pagoda's decode follows its prompt:
# both read the same K/V a step. (Until the thirty-first session tg decoded from an empty context,
# which at 110M flattered llama.cpp's column by up to 2x: K/V reads are a third of a step there.)
lb1() { "$WORK/build/bin/llama-bench" -m "$1" "${@:2}" -t "$THREADS" -r 2 -o csv 2>/dev/null |
  tail -n +2 | awk -F, '{gsub(/"/, "", $(NF-1)); printf "%.0f ", $(NF-1)}'; }
lb() { echo "$(lb1 "$1" -p "$PROMPT" -n 0) $(lb1 "$1" -p 0 -n "$GEN" -d "$PROMPT")"; }
pg() { "$PAGODA" bench decode -m "$1" --prompt-tokens "$PROMPT" -n "$GEN" -r 2 -t "$THREADS" 2>&1 |
  awk '/prefill  median/ {p = $3} /decode   median/ {d = $3} END {printf "%.0f %.0f", p, d}'; }
if [[ ${COLD:-0} == 1 ]]; then
  # Both engines echo the prompt first (llama.cpp after "<s> "): the token is the first byte past it.
  python3 - "$WORK/build/bin/llama-simple" "$PAGODA" "$ROUNDS" "${FILES[@]}" <<'PY'
import os, subprocess, sys, time
llama, pagoda, rounds, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
prompt = "Once upon a time there was a little girl named Lily who"
def cold(cmd, echo):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    out, first = b"", None
    while (b := p.stdout.read(1)):
        out += b
        if first is None and len(out.strip()) > echo: first = time.perf_counter() - t0
    p.wait()
    return first, time.perf_counter() - t0
for r in range(1, rounds + 1):
    for f in files:
        row = []
        for name, cmd, echo in (("llama.cpp", [llama, "-m", f, "-n", "1", prompt], len(prompt) + 4),
                                ("pagoda", [pagoda, "run", "-m", f, "-p", prompt, "-n", "1", "--temp", "0"], len(prompt))):
            time.sleep(3)
            first, total = cold(cmd, echo)
            row.append(f"{name} first token {first if first is None else f'{first:.3f}'} s, exit {total:.3f} s")
        print(f"{os.path.basename(f):<28} round {r}  " + " | ".join(row), flush=True)
PY
  exit 0
fi

for ((r = 1; r <= ROUNDS; ++r)); do
  for f in "${FILES[@]}"; do
    read -r lpp ltg <<<"$(lb "$f")"
    read -r ppf pdc <<<"$(pg "$f")"
    printf '%-40s round %d  llama.cpp pp%s %6s tg%s@d%s %5s   pagoda prefill %6s decode %5s\n' \
      "$(basename "$f")" "$r" "$PROMPT" "$lpp" "$GEN" "$PROMPT" "$ltg" "$ppf" "$pdc"
  done
done

if [[ ${PERPLEXITY:-0} == 1 ]]; then
  TEXT=../shared/text/gpl-3.0.txt
  for f in "${FILES[@]}"; do
    l=$("$WORK/build/bin/llama-perplexity" -m "$f" -f "$TEXT" -c 512 -t "$THREADS" -fa off -ctk f32 -ctv f32 2>&1 |
      sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
    p=$("$PAGODA" perplexity -m "$f" -f "$TEXT" --ctx 512 --json 2>/dev/null |
      sed -n 's/.*"perplexity": *\([0-9.]*\).*/\1/p')
    printf '%-40s perplexity (ctx 512)  llama.cpp %s  pagoda %s\n' "$(basename "$f")" "$l" "$p"
  done
fi
