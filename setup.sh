#!/usr/bin/env bash
# Installs Pagoda's Debian dependencies (when root), configures and builds it.
#   ./setup.sh          install + build (build/pagoda)
#   ./setup.sh --test   install + build + run the whole test suite (unit, conformance on every
#                       available backend, end-to-end), the core tests under ASan/UBSan, and the
#                       engine and server tests (the threaded parts) under ThreadSanitizer
set -euo pipefail
cd "$(dirname "$0")"

MODE=build
[[ "${1:-}" == "--test" ]] && MODE=test
JOBS="${PAGODA_JOBS:-2}"

PACKAGES=(build-essential cmake ninja-build pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev libssl-dev libfmt-dev nlohmann-json3-dev libcli11-dev
  libcpp-httplib-dev libboost-dev libstb-dev python3 python3-jsonschema
  libvulkan-dev glslc glslang-tools mesa-vulkan-drivers vulkan-validationlayers vulkan-tools
  libspirv-cross-c-shared-dev
  libimgui-dev libglfw3-dev libgl-dev xvfb xauth
  nodejs)
# node + npm run the OpenAI SDK test (tests/openai_sdk). A NodeSource nodejs bundles npm and
# conflicts with Debian's npm package, so that is only asked for when no npm is on the PATH.
command -v npm >/dev/null || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: not root, so not installing: ${missing[*]}" >&2
    echo "setup: run 'sudo apt-get install ${missing[*]}' (optional backends are skipped if absent)" >&2
  fi
fi

CMAKE_ARGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release)
if [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
  # One architecture keeps CI's compile short; release builds set 80;90 themselves.
  CMAKE_ARGS+=(-DCMAKE_CUDA_ARCHITECTURES="${PAGODA_CUDA_ARCHS:-90}")
fi
if [[ "${CI:-}" == "true" ]]; then
  CMAKE_ARGS+=(-DPAGODA_WERROR=ON -DPAGODA_NATIVE=OFF)
fi

cmake -S . -B build "${CMAKE_ARGS[@]}" >/dev/null
cmake --build build -j "$JOBS"

[[ "$MODE" == build ]] && exit 0

# The test suite: everything under CTest, then the core under sanitizers.
ctest --test-dir build --output-on-failure -j "$JOBS"
if [[ "${CI:-}" == "true" ]]; then
  # CI's main build is portable (no -march), so the fast CPU kernels users run (AVX2, AVX-512
  # VNNI, their panels and the grouped attention) are not compiled in it: build them for this
  # machine's CPU and check them against the CPU reference and llama.cpp's parity fixtures.
  cmake -S . -B build-native -G Ninja -DCMAKE_BUILD_TYPE=Release -DPAGODA_NATIVE=ON -DPAGODA_WERROR=ON \
    -DPAGODA_VULKAN=OFF -DPAGODA_CUDA=OFF -DPAGODA_UI=OFF >/dev/null
  cmake --build build-native -j "$JOBS" --target pagoda cpu_ops_test conformance_test parity_test
  ctest --test-dir build-native --output-on-failure -j "$JOBS" \
    -R '^(Half|CpuRef|CpuFast|ThreadPool|ConformanceHarness|Available/BackendConformance|Parity|Fixtures/Parity)'
  # The same kernels unoptimized under ASan/UBSan: out-of-bounds reads in a kernel's tail, and
  # intrinsics whose immediates are constants only after optimization (a Debug build on an AVX2
  # machine once failed to compile on one), show only here.
  cmake -S . -B build-asan-native -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPAGODA_SANITIZE=ON -DPAGODA_NATIVE=ON \
    -DPAGODA_VULKAN=OFF -DPAGODA_CUDA=OFF -DPAGODA_UI=OFF >/dev/null
  cmake --build build-asan-native -j "$JOBS" --target cpu_ops_test
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan-native --output-on-failure -j "$JOBS" -R '^(CpuRef|CpuFast)'
fi
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPAGODA_SANITIZE=ON \
  -DPAGODA_VULKAN=OFF -DPAGODA_CUDA=OFF -DPAGODA_UI=OFF >/dev/null
cmake --build build-asan -j "$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$JOBS"

# The engine and server tests under ThreadSanitizer: submitters, the engine thread, snapshot
# readers and HTTP workers share state there; and the CPU thread pool's lock-free chunk claiming.
# Only those test targets are built (optimized so the instrumented model runs stay short).
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPAGODA_NATIVE=OFF \
  -DCMAKE_CXX_FLAGS=-fsanitize=thread -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread \
  -DPAGODA_VULKAN=OFF -DPAGODA_CUDA=OFF -DPAGODA_UI=OFF >/dev/null
cmake --build build-tsan -j "$JOBS" --target engine_test server_test cpu_ops_test
TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" \
  ctest --test-dir build-tsan --output-on-failure -j "$JOBS" -R '^(Engine|Telemetry|CacheIdentity|Server|ThreadPool)'
