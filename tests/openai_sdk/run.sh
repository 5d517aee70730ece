#!/usr/bin/env bash
# CTest driver for the OpenAI SDK test: installs npm `openai` into the build tree (once), writes the
# tool-calling model, starts `pagoda serve` twice on free ports (the story model, the tool model)
# and runs sdk_test.mjs against both. Exits 77 (CTest's SKIP) with the reason when node/npm or the
# network are missing, or the chat template of ../shared; never fails for those.
# Usage: run.sh PAGODA MODEL.gguf WORK_DIR TOOL_MODEL_WRITER TEMPLATE.jinja [sdk_test.mjs options]
set -u
pagoda=$1 model=$2 work=$3 tool_writer=$4 template=$5
shift 5
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP: node and npm are not installed (setup.sh installs them)"
  exit 77
fi
if [ ! -f "$template" ]; then
  echo "SKIP: the tool model's chat template $template is missing (it comes with ../shared/chat-templates)"
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
"$tool_writer" "$work/tool.gguf" "$template" || exit 1

pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done' EXIT
# Starts `pagoda serve -m $1` on a free port and sets $port (no subshell: the trap needs the pid).
serve() {
  local log="$work/serve_$2.log"
  port=""
  "$pagoda" serve -m "$1" --host 127.0.0.1 --port 0 -t 1 >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    port=$(sed -n 's|.* on http://127\.0\.0\.1:\([0-9][0-9]*\) .*|\1|p' "$log")
    [ -n "$port" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "pagoda serve -m $1 did not start:"
  cat "$log"
  return 1
}
serve "$model" story || exit 1
story_port=$port
serve "$work/tool.gguf" tool || exit 1
node "$work/sdk_test.mjs" "http://127.0.0.1:$story_port/v1" --tools-url "http://127.0.0.1:$port/v1" "$@"
