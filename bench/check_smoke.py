#!/usr/bin/env python3
"""Runs `vae_gpu_bench --smoke` on one device and checks what it printed and wrote: every group
of cases is there, every figure is a positive finite time, every model has its training, profile
and evaluation rows, and on cuda the CUDA Graph rows say that steps were captured and replayed.
A check that the bench works before a GPU's minutes are spent on it (ctest Bench.SmokeCpu on the
CPU, emu.Bench.SmokeCuda on the CPU CUDA emulator); its figures mean nothing.

  check_smoke.py BENCH_BINARY cpu|cuda JSON_PATH
"""
import json
import math
import re
import subprocess
import sys

MODELS = ("vae", "autorec", "cdae", "multvae")


def fail(msg, out=""):
    print("check_smoke: " + msg)
    if out:
        print("---- bench output ----\n" + out)
    sys.exit(1)


def main():
    if len(sys.argv) != 4 or sys.argv[2] not in ("cpu", "cuda"):
        print(__doc__)
        return 2
    binary, device, path = sys.argv[1:]
    run = subprocess.run([binary, "--device", device, "--smoke", "--json", path],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=850)
    out = run.stdout
    if run.returncode != 0:
        fail("exit status %d" % run.returncode, out)
    if "warning" in out:
        fail("the bench warned", out)
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    cases = j.get("cases", [])
    for key in ("copy_ceiling_gbps", "gemm_ceiling_tflops"):
        if not (isinstance(j.get(key), (int, float)) and j[key] > 0):
            fail("%s is %r" % (key, j.get(key)), out)
    for c in cases:
        ms = c.get("ms")
        if not (isinstance(ms, (int, float)) and math.isfinite(ms) and ms > 0):
            fail("case %r has time %r" % (c.get("name"), ms), out)
        if c["name"] not in out:
            fail("case %r is in the JSON but was not printed" % c["name"], out)
    groups = {c["group"] for c in cases}
    for g in ("ceiling", "op", "train", "profile", "eval", "analysis"):
        if g not in groups:
            fail("no %r case" % g, out)
    names = [c["name"] for c in cases]

    def having(*parts):
        return [c for c in cases if all(p in c["name"] for p in parts)]

    for m in MODELS:
        for what in (m + " epoch", m + " score+top-100+metrics"):
            if not having(what):
                fail("no case %r" % what, out)
        if not having(m + " epoch: "):
            fail("no profile rows for %s" % m, out)
    if not having("sparse in"):
        fail("no sparse first-layer epoch", out)
    for op in ("bias_act", "multinomial_nll", "topk", "gemm", "layer backward", "adam_step", "kmeans", "tsne"):
        if not any(op in n for n in names):
            fail("no %s case" % op, out)
    if device == "cuda":
        if not j.get("device") or j.get("backend") != "cuda":
            fail("device %r, backend %r" % (j.get("device"), j.get("backend")), out)
        for m in MODELS:
            graph = having(m + " epoch", "CUDA Graph")
            if not graph:
                fail("no CUDA Graph epoch for %s" % m, out)
            for c in graph:
                note = re.search(r"(\d+) captured, (\d+) replayed; (\d+) nodes per step", c.get("note", ""))
                if not note or int(note.group(1)) + int(note.group(2)) == 0 or int(note.group(3)) == 0:
                    fail("%r: no steps captured or replayed, or no nodes (%r)" % (c["name"], c.get("note")), out)
            if not having(m + " epoch", "CUDA Graph, one stream"):
                fail("no one-stream graph epoch for %s" % m, out)
            if not having(m + " epoch", "launches, one stream"):
                fail("no one-stream launches epoch for %s" % m, out)
            if not having(m + " epoch", "graph replay only"):
                fail("no graph replay row for %s" % m, out)
        for prec in ("exact", "TF32", "BF16"):
            if not having(prec):
                fail("no %s case" % prec, out)
        if not having("tsne", "iterations", "points"):
            fail("no whole t-SNE run", out)
    print("check_smoke: %d cases on %s, all present and timed" % (len(cases), device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
