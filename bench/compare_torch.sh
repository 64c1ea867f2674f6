#!/usr/bin/env bash
# Seconds per training epoch: vae_gpu against its PyTorch peers (bench/torch_baseline.py, eager
# and CUDA-Graph variants) for the notebook VAE, AutoRec, CDAE and Mult-VAE, same data, same
# hyper-parameters, same batching (seed protocol), then the ratios torch / vae_gpu.
#
#   bench/compare_torch.sh [DATA] [DEVICE] [JSON_OUT]
#
#   DATA      a MovieLens directory (default ${MOVIELENS_DIR:-../shared/data}/ml-100k), vae_gpu's
#             synthetic:users=U,items=I,ratings=N spec, or U,I,N (e.g. 136677,20108,10000000)
#   DEVICE    cpu, cuda or auto (default: cuda when PyTorch sees a GPU, else cpu)
#   JSON_OUT  where the table goes as JSON (default $OUT/compare_torch.json when $OUT is set)
#
# Environment: EPOCHS (timed epochs, default 3; vae_gpu runs that many and reports its median,
# torch runs one more warm-up epoch it leaves out), MODELS (default "vae autorec cdae multvae"),
# VARIANTS (default "eager graph" on cuda, "eager" on cpu, where CUDA Graphs do not exist), VAE_BUILD_DIR (default build), THREADS (CPU threads for
# both, default nproc), PYTHON (a python with torch), TORCH_ARGS (extra torch_baseline.py flags,
# e.g. "--tf32" or "--max-steps 50": the torch epoch is then extrapolated from the capped steps),
# VAE_ARGS (extra vae_gpu flags, e.g. "--tf32" or "--cuda-graph off"; without a --precision or
# --tf32 there, vae_gpu runs with --precision fp32, the precision of torch's matmuls).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
data=${1:-${MOVIELENS_DIR:-../shared/data}/ml-100k}
device=${2:-auto}
json_out=${3:-${OUT:+$OUT/compare_torch.json}}
epochs=${EPOCHS:-3}
models=${MODELS:-vae autorec cdae multvae}
variants=${VARIANTS:-}
build=${VAE_BUILD_DIR:-build}
threads=${THREADS:-$(nproc)}

py=${PYTHON:-}
if [ -z "$py" ]; then
  for p in python3 /usr/bin/python3 python; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c "import torch, numpy" 2>/dev/null; then py=$p; break; fi
  done
fi
jpy=${py:-python3}  # any python reads JSON
if [ ! -x "$build/vae_gpu" ]; then
  echo "compare_torch: $build/vae_gpu not found (build it, or set VAE_BUILD_DIR)" >&2
  exit 1
fi
[ -z "$py" ] && echo "compare_torch: no python with torch and numpy (set PYTHON=...): torch columns stay empty" >&2

# Data for each side: vae_gpu takes the directory or synthetic spec; torch_baseline.py the same
# (it parses vae_gpu's synthetic spec) or --synthetic U,I,N.
if [[ $data =~ ^[0-9]+,[0-9]+,[0-9]+$ ]]; then
  IFS=, read -r su si sn <<<"$data"
  vae_data="synthetic:users=$su,items=$si,ratings=$sn"
  torch_data=(--synthetic "$data")
else
  vae_data=$data
  torch_data=(--data "$data")
fi
if [ "$device" = auto ]; then
  device=cpu
  if [ -n "$py" ] && "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    device=cuda
  fi
fi

if [ -z "$variants" ]; then
  variants="eager graph"
  [ "$device" = cpu ] && variants=eager
fi

failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "compare_torch: data $data, device $device, $epochs epochs, models: $models, torch variants: $variants" \
     "(${py:-no torch}), build $build, $threads threads" >&2

for m in $models; do
  extra=()
  [ "$m" = cdae ] && extra=(--lr 0.01)  # explicit, as torch_baseline.py uses it
  # Like for like: torch's matmuls are float32 (or TF32 with --tf32), so vae_gpu's GEMMs are
  # too, unless VAE_ARGS picks a precision (the CLI default is exact: double accumulation).
  [[ " ${VAE_ARGS:-} " =~ \ --(precision|tf32) ]] || extra+=(--precision fp32)
  echo "compare_torch: $m: vae_gpu ..." >&2
  # shellcheck disable=SC2086  # VAE_ARGS is a flag list
  if ! OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads "$build/vae_gpu" train --model "$m" --protocol seed \
       --data "$vae_data" --device "$device" --epochs "$epochs" "${extra[@]}" ${VAE_ARGS:-} --quiet --out "$tmp/$m" \
       >"$tmp/$m.vae.log" 2>&1; then
    echo "compare_torch: $m: vae_gpu failed: $(tail -n 2 "$tmp/$m.vae.log" | tr '\n' ' ')" >&2
    failed=$((failed + 1))
  fi
  [ -z "$py" ] && continue
  for v in $variants; do
    echo "compare_torch: $m: torch $v ..." >&2
    # shellcheck disable=SC2086  # TORCH_ARGS is a flag list
    if ! "$py" bench/torch_baseline.py --model "$m" "${torch_data[@]}" --device "$device" --variant "$v" \
         --epochs "$epochs" --threads "$threads" ${TORCH_ARGS:-} >"$tmp/$m.$v.json" 2>"$tmp/$m.$v.log"; then
      echo "compare_torch: $m: torch $v failed: $(tail -n 2 "$tmp/$m.$v.log" | tr '\n' ' ')" >&2
      rm -f "$tmp/$m.$v.json"
      failed=$((failed + 1))
    fi
  done
done

"$jpy" - "$tmp" "$json_out" "$data" "$device" "$epochs" "$build" "$threads" "$models" "$variants" <<'EOF'
import json, os, sys
tmp, json_out, data, device, epochs, build, threads, models, variants = sys.argv[1:10]
models, variants = models.split(), variants.split()

def load(path, last_line=False):
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text.splitlines()[-1] if last_line else text)
    except (OSError, ValueError, IndexError):
        return None

rows, torch_version, gpu = [], None, None
for m in models:
    ours = load(os.path.join(tmp, m, "summary.json"))
    row = {"model": m, "vae_gpu_s_per_epoch": ours and ours.get("epoch_seconds_median"),
           "vae_gpu_device": ours and ours.get("device")}
    for v in variants:
        t = load(os.path.join(tmp, f"{m}.{v}.json"), last_line=True)
        # A variant that fell back to another (graph → eager) is not that variant's time.
        if t and t.get("variant_run") != v:
            row.setdefault("notes", []).append(f"{v}: {t.get('note', 'ran ' + str(t.get('variant_run')))}; "
                                               "its column left empty")
            row[f"torch_{v}_fallback"] = t
            t = None
        row[f"torch_{v}_s_per_epoch"] = t and t.get("epoch_seconds_median")
        row[f"ratio_{v}_over_ours"] = (t["epoch_seconds_median"] / row["vae_gpu_s_per_epoch"]
                                       if t and row["vae_gpu_s_per_epoch"] else None)
        if t:
            row[f"torch_{v}"] = t
            torch_version, gpu = t.get("torch"), t.get("gpu") or gpu
            if t.get("extrapolated"):
                row.setdefault("notes", []).append(f"{v}: extrapolated from {t['steps_timed']} of "
                                                   f"{t['steps_per_epoch']} steps")
    rows.append(row)

def fmt(x, ratio=False):
    if x is None:
        return "n/a"
    return f"{x:.2f}x" if ratio else f"{x:.4f}"

head = ["model", "vae_gpu s/ep"] + [f"torch {v} s/ep" for v in variants] + [f"{v}/ours" for v in variants]
table = [head]
for r in rows:
    table.append([r["model"], fmt(r["vae_gpu_s_per_epoch"])]
                 + [fmt(r[f"torch_{v}_s_per_epoch"]) for v in variants]
                 + [fmt(r[f"ratio_{v}_over_ours"], True) for v in variants])
width = [max(len(t[i]) for t in table) for i in range(len(head))]
print(f"# data {data}, device {device}{' (' + gpu + ')' if gpu else ''}, torch {torch_version}, "
      f"median of {epochs} epochs, vae_gpu from {build}, {threads} CPU threads; ratio > 1: vae_gpu faster")
for i, t in enumerate(table):
    print("  ".join(c.ljust(width[j]) if j == 0 else c.rjust(width[j]) for j, c in enumerate(t)))
    if i == 0:
        print("  ".join("-" * w for w in width))
for r in rows:
    for n in r.get("notes", []):
        print(f"note: {r['model']}: {n}")
if json_out:
    doc = {"data": data, "device": device, "gpu": gpu, "torch": torch_version, "epochs": int(epochs),
           "vae_gpu_build": build, "threads": int(threads), "rows": rows}
    d = os.path.dirname(json_out)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(json_out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"wrote {json_out}")
EOF
status=$?
[ "$failed" -gt 0 ] && { echo "compare_torch: $failed run(s) failed" >&2; exit 1; }
exit $status
