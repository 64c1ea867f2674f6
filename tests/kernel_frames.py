#!/usr/bin/env python3
"""Kernels whose per-thread arrays must stay in registers: compiles one kernel file with ptxas's
report (nvcc -Xptxas -v) and fails when a kernel whose name matches PATTERN has a stack frame
larger than MAX_BYTES (a register array indexed at run time, or a loop left rolled, moves into
local memory: a silent slowdown no GPU-vs-CPU test sees).

usage: kernel_frames.py NVCC ARCH SOURCE_DIR FILE PATTERN MAX_BYTES
"""
import re
import subprocess
import sys
import tempfile


def main():
    nvcc, arch, src, rel, pattern, max_bytes = sys.argv[1:7]
    max_bytes = int(max_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [nvcc, "-I%s/host" % src, "-I%s/kernels" % src, "-I%s" % src, "-O3", "-std=c++17",
               "--expt-relaxed-constexpr", "-DNDEBUG", "--generate-code=arch=compute_%s,code=sm_%s" % (arch, arch),
               "-x", "cu", "-c", "%s/%s" % (src, rel), "-o", tmp + "/k.o", "-Xptxas", "-v"]
        run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if run.returncode != 0:
        print(run.stdout)
        print("kernel_frames: nvcc failed (%d)" % run.returncode)
        return 1
    kernel, seen, bad = None, 0, []
    for line in run.stdout.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            kernel = m.group(1)
            continue
        m = re.search(r"(\d+) bytes stack frame", line)
        if m and kernel and re.search(pattern, kernel):
            seen += 1
            frame = int(m.group(1))
            print("%s: %d bytes stack frame" % (kernel, frame))
            if frame > max_bytes:
                bad.append(kernel)
            kernel = None
    if seen == 0:
        print(run.stdout)
        print("kernel_frames: no kernel matching %r in %s" % (pattern, rel))
        return 1
    if bad:
        print("kernel_frames: %d of %d kernels over %d bytes of stack frame" % (len(bad), seen, max_bytes))
        return 1
    print("kernel_frames: %d kernels within %d bytes of stack frame" % (seen, max_bytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
