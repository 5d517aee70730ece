#!/usr/bin/env bash
# CTest driver for the OpenAI SDK test: installs npm `openai` into the build tree (once), starts
# `pagoda serve` on a free port, and runs sdk_test.mjs against it. Exits 77 (CTest's SKIP) with the
# reason when node/npm or the network are missing; never fails for those.
# Usage: run.sh PAGODA_BINARY MODEL.gguf WORK_DIR [sdk_test.mjs options, e.g. --require tools]
set -u
pagoda=$1 model=$2 work=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP: node and npm are not installed (setup.sh installs them)"
  exit 77
fi
mkdir -p "$work"
if [ ! -f "$work/node_modules/openai/package.json" ]; then
  if ! (cd "$work" && timeout 300 npm install --no-audit --no-fund --no-save openai@7 >npm.log 2>&1); then
    echo "SKIP: could not install the npm package 'openai' (no network?):"
    tail -n 5 "$work/npm.log"
    exit 77
  fi
fi
cp "$here/sdk_test.mjs" "$work/"  # node resolves 'openai' from the script's own directory
log="$work/serve.log"
"$pagoda" serve -m "$model" --host 127.0.0.1 --port 0 -t 1 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null' EXIT
port=""
for _ in $(seq 1 600); do
  port=$(sed -n 's|.* on http://127\.0\.0\.1:\([0-9][0-9]*\) .*|\1|p' "$log")
  [ -n "$port" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "pagoda serve exited before listening:"
    cat "$log"
    exit 1
  fi
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "pagoda serve did not start within 60 s:"
  cat "$log"
  exit 1
fi
node "$work/sdk_test.mjs" "http://127.0.0.1:$port/v1" "$@"
