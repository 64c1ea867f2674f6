#!/usr/bin/env python3
"""Plot a vae_gpu run directory into PNG files.

Usage:  python3 tools/plot_run.py RUN_DIR [--out DIR] [--top N] [--dpi D]

Inputs (in RUN_DIR; only metrics.csv is required):

  metrics.csv       written by `vae_gpu ... --out RUN_DIR`, one row per epoch:
                      epoch,train_loss,test_loss,<metric columns...>,train_seconds,eval_seconds
                    metric columns are named like ndcg@20, recall@20, ndcg@100, rmse, mae, coverage@20;
                    under the heldout protocol the epochs are scored on the validation users and
                    the columns say so: val_loss, val_ndcg@20, ...; empty or "nan" cells are skipped.
  clusters.csv      one row per embedded user:  user_id,cluster,x,y
                    (x, y = the 2-D t-SNE coordinates, cluster = the K-Means label).
  cluster_lift.csv  one row per (cluster, genre):
                    cluster,genre,lift[,share,overall_share,count,z,distinctive]
                    lift = share of the genre among the cluster's rated items divided by its
                    share among all clustered users' rated items (1 = no different from
                    everyone); z = the evidence that it differs from the other users (users
                    as the units); distinctive = 1 where the cluster report lists it. Drawn
                    green when distinctive (or, without that column, lift > 1 and z >= 1.96),
                    red when lift < 1 and z <= -1.96 (that genre's own test, uncorrected for
                    the others), grey otherwise. Other columns are ignored. vae::cluster_lift_csv() (host/analysis/profile.h) writes it, with
                    genres of tiny support already left out. Genre names containing commas are
                    double-quoted (standard CSV).

Outputs (in --out, default RUN_DIR):

  learning_curves.png   loss (train/test), NDCG@K and Recall@K per epoch (plus RMSE/MAE
                        panels when those columns exist)
  tsne_clusters.png     t-SNE scatter coloured by cluster      (when clusters.csv has x, y)
  cluster_lift.png      per-cluster bars of the top genres by lift (when cluster_lift.csv exists)

Needs matplotlib (`pip install matplotlib` or `apt-get install python3-matplotlib`); the
rest is the standard library.
"""
import argparse
import csv
import math
import os
import sys


def die(msg):
    print("plot_run.py: " + msg, file=sys.stderr)
    sys.exit(2)


def import_pyplot():
    try:
        import matplotlib
    except ImportError:
        die("matplotlib is not installed for " + sys.executable + "; install it with "
            "'python3 -m pip install matplotlib' or 'apt-get install python3-matplotlib'")
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def to_float(s):
    try:
        v = float(s)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def read_csv(path, required):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        fields = rows[0].keys() if rows else []
    if not rows:
        die(path + ": no data rows")
    missing = [c for c in required if c not in fields]
    if missing:
        die(path + ": missing column(s) " + ", ".join(missing) + " (have: " + ", ".join(fields) + ")")
    return rows


def metric_key(name):
    # ndcg@20 before ndcg@100: sort by the cut-off numerically.
    base, _, k = name.partition("@")
    return (base, int(k) if k.isdigit() else 0)


def plot_learning_curves(plt, rows, out, dpi):
    cols = list(rows[0].keys())
    epochs = [to_float(r["epoch"]) for r in rows]
    held = "val_loss" in cols  # heldout: the epochs are scored on the validation users
    on = "val_" if held else ""
    skip = {"epoch", "train_loss", "test_loss", "val_loss", "train_seconds", "eval_seconds"}
    metrics = [c for c in cols if c not in skip]
    ndcg = sorted((c for c in metrics if c.lower().startswith(on + "ndcg@")), key=metric_key)
    recall = sorted((c for c in metrics if c.lower().startswith(on + "recall@")), key=metric_key)
    other = [c for c in metrics if c not in ndcg and c not in recall]
    panels = [("Loss", ["train_loss", on + "loss" if held else "test_loss"])]
    if ndcg:
        panels.append(("NDCG@K" + (" (validation)" if held else ""), ndcg))
    if recall:
        panels.append(("Recall@K" + (" (validation)" if held else ""), recall))
    for c in other:
        panels.append((c[len(on):].upper() + (" (validation)" if held and c.startswith(on) else ""), [c]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels):
        drawn = 0
        for c in series:
            pts = [(e, to_float(r.get(c))) for e, r in zip(epochs, rows)]
            pts = [(e, v) for e, v in pts if e is not None and v is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                        label=c.replace("ndcg", "NDCG").replace("recall", "Recall"))
                drawn += 1
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    path = os.path.join(out, "learning_curves.png")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_tsne(plt, rows, out, dpi):
    by_cluster = {}
    for r in rows:
        x, y = to_float(r["x"]), to_float(r["y"])
        if x is None or y is None:
            continue
        by_cluster.setdefault(int(r["cluster"]), []).append((x, y))
    if not by_cluster:  # a run without t-SNE (--no-tsne, or cluster without --tsne)
        print("note: clusters.csv has no t-SNE positions (x, y): no tsne_clusters.png", file=sys.stderr)
        stale = os.path.join(out, "tsne_clusters.png")
        if os.path.isfile(stale):  # an earlier plot of other clusters
            os.remove(stale)
        return None
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    cmap = plt.get_cmap("tab10" if len(by_cluster) <= 10 else "tab20")
    for i, c in enumerate(sorted(by_cluster)):
        pts = by_cluster[c]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, alpha=0.75,
                   color=cmap(i % cmap.N), label="cluster %d (%d)" % (c, len(pts)))
    ax.set_title("t-SNE of the latent space, coloured by K-Means cluster")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, markerscale=2, loc="best")
    fig.tight_layout()
    path = os.path.join(out, "tsne_clusters.png")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def bar_colour(g):
    # Grey: a difference the data cannot tell from chance. Files without z: coloured by lift.
    _, lift, z, dist = g
    if z is None:
        return "tab:green" if lift >= 1 else "tab:red"
    if lift >= 1:
        strong = dist == 1 if dist is not None else z >= 1.96
        return "tab:green" if strong else "tab:gray"
    return "tab:red" if z <= -1.96 else "tab:gray"


def plot_lift(plt, rows, out, top, dpi):
    by_cluster = {}
    for r in rows:
        lift = to_float(r["lift"])
        if lift is not None:
            z = to_float(r.get("z"))
            dist = to_float(r.get("distinctive"))
            by_cluster.setdefault(int(r["cluster"]), []).append((r["genre"], lift, z, dist))
    clusters = sorted(by_cluster)
    if not clusters:
        die("cluster_lift.csv: no rows with a numeric lift")
    ncol = min(3, len(clusters))
    nrow = (len(clusters) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.8 * ncol, 0.35 * top * nrow + 1.2 * nrow),
                             squeeze=False)
    for ax in axes.flat[len(clusters):]:
        ax.axis("off")
    for ax, c in zip(axes.flat, clusters):
        items = sorted(by_cluster[c], key=lambda g: -g[1])[:top]
        items.reverse()  # largest lift at the top of a horizontal bar chart
        names = [g[0] for g in items]
        lifts = [g[1] for g in items]
        colors = [bar_colour(g) for g in items]
        ax.barh(range(len(items)), lifts, color=colors)
        ax.set_yticks(range(len(items)))
        ax.set_yticklabels(names, fontsize=8)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_title("cluster %d" % c)
        ax.set_xlabel("lift (share in cluster / share overall)")
    fig.tight_layout()
    path = os.path.join(out, "cluster_lift.png")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def main():
    ap = argparse.ArgumentParser(description="Plot a vae_gpu run directory into PNG files.")
    ap.add_argument("run_dir")
    ap.add_argument("--out", help="output directory (default: the run directory)")
    ap.add_argument("--top", type=int, default=8, help="genres per cluster in cluster_lift.png")
    ap.add_argument("--dpi", type=int, default=120)
    a = ap.parse_args()
    metrics = os.path.join(a.run_dir, "metrics.csv")
    if not os.path.isfile(metrics):
        die(metrics + " not found (run vae_gpu with --out " + a.run_dir + ")")
    out = a.out or a.run_dir
    os.makedirs(out, exist_ok=True)
    plt = import_pyplot()
    rows = read_csv(metrics, ["epoch", "train_loss"])
    if "test_loss" not in rows[0] and "val_loss" not in rows[0]:
        die(metrics + ": missing column test_loss (or val_loss)")
    written = [plot_learning_curves(plt, rows, out, a.dpi)]
    clusters = os.path.join(a.run_dir, "clusters.csv")
    if os.path.isfile(clusters):
        picture = plot_tsne(plt, read_csv(clusters, ["user_id", "cluster", "x", "y"]), out, a.dpi)
        if picture:
            written.append(picture)
    lift = os.path.join(a.run_dir, "cluster_lift.csv")
    if os.path.isfile(lift):
        written.append(plot_lift(plt, read_csv(lift, ["cluster", "genre", "lift"]), out, a.top, a.dpi))
    for p in written:
        print(p)


if __name__ == "__main__":
    main()
