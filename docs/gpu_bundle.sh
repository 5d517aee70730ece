#!/usr/bin/env bash
# Packs what docs/gpu_check.sh needs onto a GPU machine that has the NVIDIA driver but none of the
# project's Debian libraries: the CUDA + Vulkan build's binaries (stripped), every shared library
# they load except glibc's own, the models, and the llama parity fixtures (one file per weight
# type, with llama.cpp's logits). Usage: bash docs/gpu_bundle.sh [BUILD_DIR]
# (default build-gpu, configured with -DPAGODA_CUDA=ON -DPAGODA_VULKAN=ON -DPAGODA_UI=OFF
# -DPAGODA_NATIVE=OFF) -> .dev/bundle.tar.xz (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build-gpu}
D=.dev
rm -rf "$D"
mkdir -p "$D/bin" "$D/lib" "$D/models/vocab"
for f in pagoda tests/cuda_test tests/parity_test; do strip -o "$D/bin/$(basename "$f")" "$B/$f"; done
# The test binaries read the fixtures where the build machine had them; gpu_check.sh links that path.
grep -m1 '^PAGODA_MODELS_DIR:' "$B/CMakeCache.txt" | cut -d= -f2- > "$D/models_dir.txt"
ldd "$D"/bin/* | awk '/=> \//{print $3}' | sort -u |
  grep -Ev '/(libc|libm|libpthread|libdl|librt|ld-linux-x86-64)\.so' | xargs -I{} cp -L {} "$D/lib/"
S=../shared/models
cp "$S/stories260K.gguf" "$S/llama2xs-260K.bin" "$S/tok512.bin" "$D/models/"
cp "$S/vocab/ggml-vocab-llama-spm.gguf" "$D/models/vocab/"
# Parity: the llama-* fixtures cover every weight type (16 MB without F32, which stories260K's
# greedy run and conformance cover; the bundle must stay under 64 MiB); gpu_check.sh runs only those.
mkdir -p "$D/models/parity"
cp "$S/parity/MANIFEST.json" "$D/models/parity/"
for f in "$S/parity"/llama-*.gguf; do
  [[ $f == */llama-f32.gguf ]] || cp "$f" "$f.logits.f32" "$D/models/parity/"
done
# The other architectures (gemma2, phi3, qwen2, qwen3) in Q8_0, Q6_K and Q4_K_M, about 14 MB: their
# wiring (soft caps, biases, fused QKV, q/k norms) on CUDA against llama.cpp's logits. Their F16
# and F32 files would put the archive over the cap.
for a in gemma2 phi3 qwen2 qwen3; do for t in q8_0 q6_k q4_k_m; do
  cp "$S/parity/$a-$t.gguf" "$S/parity/$a-$t.gguf.logits.f32" "$D/models/parity/"
done; done
# The transfer to the GPU machine is capped at 64 MiB and the unpacked bundle is about 65: it travels
# as one xz archive, which gpu_check.sh unpacks in place (about 20 MiB).
tar -C "$D" -cf - . | xz -T2 -6 > bundle.tar.xz.tmp
rm -rf "$D" && mkdir -p "$D" && mv bundle.tar.xz.tmp "$D/bundle.tar.xz"
du -sh "$D"
