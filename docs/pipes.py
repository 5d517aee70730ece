#!/usr/bin/env python3
"""Which vector pipes the kernels' 512-bit instructions share on this CPU.

For each instruction, and for each pair of them, a loop of 12 independent copies (12 registers,
each instruction reading and writing its own, so latency is hidden) runs for a few million
iterations; the rate is instructions per cycle at the clock a chain of dependent integer adds
measures. An instruction alone at 2/cycle and a pair at 2/cycle share the same two pipes; a pair
at 4/cycle shares none; in between, one. docs/perf.md (twenty-fourth session) has this machine's
table and what it says about the Q2_K kernel.

Usage: python3 docs/pipes.py [--pairs]   (needs g++ and an AVX-512 VNNI/VBMI/GFNI CPU)
"""
import os
import subprocess
import sys
import tempfile

# {r}: the instruction's own register; zmm30, zmm31 are constant sources.
OPS = {
    "vpdpbusd": "vpdpbusd %zmm30, %zmm31, {r}",
    "vgf2p8affineqb": "vgf2p8affineqb $0, %zmm30, {r}, {r}",
    "vpshufb": "vpshufb {r}, %zmm30, {r}",
    "vpermb": "vpermb %zmm30, {r}, {r}",
    "vpermps": "vpermps {r}, %zmm30, {r}",
    "vpmovzxbw": "vpmovzxbw %ymm30, {r}",
    "vinserti32x4": "vinserti32x4 $1, %xmm30, {r}, {r}",
    "vbroadcastss": "vbroadcastss %xmm30, {r}",
    "vpmullw": "vpmullw %zmm30, {r}, {r}",
    "vpmaddwd": "vpmaddwd %zmm30, {r}, {r}",
    "vfmadd231ps": "vfmadd231ps %zmm30, %zmm31, {r}",
    "vcvtdq2ps": "vcvtdq2ps {r}, {r}",
    "vpsrlw": "vpsrlw $2, {r}, {r}",
    "vpandd": "vpandd %zmm30, {r}, {r}",
    "vpternlogd": "vpternlogd $0xEA, %zmm30, %zmm31, {r}",
}


def loop(body):
    asm = "\\n".join(body).replace("%", "%%")
    return 'for (long i = 0; i < n; ++i) __asm__ volatile("%s" ::: "memory");' % asm


def main():
    pairs = "--pairs" in sys.argv
    names = list(OPS)
    cases = [(a, None) for a in names]
    if pairs:
        cases += [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    src = ["#include <chrono>", "#include <cstdio>",
           "static double now() { return std::chrono::duration<double>("
           "std::chrono::steady_clock::now().time_since_epoch()).count(); }"]
    # The clock: 8 dependent adds an iteration, one a cycle.
    src.append("static double ghz() { long x = 0, n = 400000000; double t = now(); "
               "for (long i = 0; i < n; ++i) __asm__ volatile(\"add $1,%0\\n add $1,%0\\n add $1,%0\\n add $1,%0\\n"
               "add $1,%0\\n add $1,%0\\n add $1,%0\\n add $1,%0\" : \"+r\"(x)); return 8.0 * n / (now() - t) / 1e9; }")
    for i, (a, b) in enumerate(cases):
        body = []
        for k in range(12):
            body.append(OPS[a].format(r="%%zmm%d" % k))
            if b:
                body.append(OPS[b].format(r="%%zmm%d" % (k + 12)))
        src.append("static double f%d(long n) { double t = now(); %s return now() - t; }" % (i, loop(body)))
    src.append("int main() { const double hz = ghz() * 1e9; const long n = 2000000;")
    src.append('std::printf("clock %.2f GHz (dependent adds)\\n", hz / 1e9);')
    for i, (a, b) in enumerate(cases):
        count = 24 if b else 12
        label = a + (" + " + b if b else "")
        src.append('{ f%d(10000); const double s = f%d(n); std::printf("%%-32s %%.2f a cycle\\n", "%s", %d.0 * n / (s * hz)); }'
                   % (i, i, label, count))
    src.append("}")
    with tempfile.TemporaryDirectory() as d:
        cpp, exe = os.path.join(d, "pipes.cpp"), os.path.join(d, "pipes")
        with open(cpp, "w") as f:
            f.write("\n".join(src))
        subprocess.run(["g++", "-O2", "-march=native", cpp, "-o", exe], check=True)
        subprocess.run([exe], check=True)


if __name__ == "__main__":
    main()
