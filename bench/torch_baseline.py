#!/usr/bin/env python3
"""PyTorch peers of vae_gpu's end-to-end training benchmarks, timed per epoch.

Same models, hyper-parameters and batching as vae_gpu's `train` (seed protocol: 20 % of the
users are held out as test users and never trained on; the rest are shuffled every epoch):

  vae      notebook Gaussian VAE: I-512-256-2L / L-256-512-I, ReLU, linear output, L = 64,
           loss = F.mse_loss (mean) + summed KLD (beta 1), batch 64, Adam 1e-3; rating input
  autorec  user-based AutoRec: I-500-I, sigmoid hidden, identity output, loss = sum over the
           observed ratings of (out - r)^2 + lambda/2 (|V|^2 + |W|^2), lambda 10, batch 64,
           Adam 1e-3; rating input
  cdae     CDAE: binary input, dropout 0.5, h = sigmoid(W x~ + V_u + b), per-user vector V_u,
           hidden 50, BCE on the logits summed over items and averaged over the batch's users
           + 0.01/2 * (sum of |p|^2 over every parameter), batch 64, Adam 0.01
  multvae  Mult-VAE: I-600-200-600-I, tanh, L2-normalised binary input, dropout 0.5,
           multinomial NLL averaged over rows + beta_t * mean KL, beta_t = min(0.2, step/200000),
           Xavier-normal weights, N(0, 0.001^2) biases, batch 500, Adam 1e-3

The training matrix stays on the device: dense when users x items fits in --dense-limit-gb
(what the notebooks do: x_train[perm[b:b+B]]), otherwise as CSR index arrays from which every
batch is densified on the device with fixed shapes (no host syncs, so it can be graph-captured).

Variants:
  eager    the notebooks' loop: zero_grad / forward / backward / Adam.step, and (by default)
           loss.item() after every step as the notebooks print/accumulate it
  graph    the stronger peer: the whole train step (batch densify, forward, backward,
           capturable Adam, fused where this torch can capture it, else foreach; loss
           accumulation, KL step counter) captured once into a CUDA
           Graph with static input buffers and replayed per batch (one more graph for the
           epoch's last, smaller batch); the loss is read once per epoch. CUDA only: on CPU it
           falls back to eager with a note.
  compile  torch.compile(loss, mode=--compile-mode) (default max-autotune-no-cudagraphs) with
           an eager (fused when available) Adam; torch >= 2.0; falls back to eager otherwise.

Timing: one warm-up epoch (and the graph capture or compilation) is excluded; CUDA is
synchronised around every epoch; the median over --epochs epochs is reported. --max-steps caps
the steps per epoch (huge sets): the per-step time is then extrapolated to a full epoch.
Prints ONE JSON line.

  /usr/bin/python3 bench/torch_baseline.py --model vae --data $MOVIELENS_DIR/ml-100k --epochs 3
  python3 bench/torch_baseline.py --model multvae --synthetic 136677,20108,10000000 \
      --device cuda --variant graph --epochs 3 --max-steps 50
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = ("vae", "autorec", "cdae", "multvae")
DEFAULT_BATCH = {"vae": 64, "autorec": 64, "cdae": 64, "multvae": 500}
DEFAULT_LR = {"vae": 1e-3, "autorec": 1e-3, "cdae": 1e-2, "multvae": 1e-3}
BINARY_INPUT = {"cdae", "multvae"}


def note(msg):
    print(f"torch_baseline: {msg}", file=sys.stderr, flush=True)


# ---- data ---------------------------------------------------------------------------------

def _compact(ids):
    uniq, inv = np.unique(ids, return_inverse=True)
    return inv.astype(np.int64), len(uniq)


def load_movielens(path):
    """(users, items, rows, cols, ratings, name) from a MovieLens directory or ratings file."""
    if not os.path.exists(path):
        raise SystemExit(f"torch_baseline: {path} does not exist")
    if os.path.isdir(path):
        for f in ("u.data", "ratings.dat", "ratings.csv"):
            if os.path.exists(os.path.join(path, f)):
                fname = os.path.join(path, f)
                break
        else:
            raise SystemExit(f"torch_baseline: no u.data, ratings.dat or ratings.csv in {path}")
    else:
        fname = path
    base = os.path.basename(fname)
    if base == "u.data":  # ml-100k: user item rating timestamp, ids 1..n, tab separated
        raw = np.loadtxt(fname, dtype=np.int64, usecols=(0, 1, 2))
        rows, cols, vals = raw[:, 0] - 1, raw[:, 1] - 1, raw[:, 2].astype(np.float32)
        return int(rows.max()) + 1, int(cols.max()) + 1, rows, cols, vals, "ml-100k"
    try:
        import pandas as pd
        if base == "ratings.dat":
            df = pd.read_csv(fname, sep="::", engine="python", header=None, usecols=[0, 1, 2])
        else:
            df = pd.read_csv(fname, usecols=[0, 1, 2])
        u, i, r = (df.iloc[:, k].to_numpy() for k in range(3))
    except ImportError:
        if base == "ratings.dat":
            with open(fname, encoding="latin-1") as fh:
                raw = np.array([ln.split("::")[:3] for ln in fh], dtype=np.float64)
        else:
            raw = np.loadtxt(fname, delimiter=",", skiprows=1, usecols=(0, 1, 2), dtype=np.float64)
        u, i, r = raw[:, 0].astype(np.int64), raw[:, 1].astype(np.int64), raw[:, 2]
    rows, n_users = _compact(u)
    cols, n_items = _compact(i)
    return n_users, n_items, rows, cols, np.asarray(r, dtype=np.float32), os.path.basename(os.path.dirname(os.path.abspath(fname)))


def make_synthetic(users, items, interactions, seed):
    """A random sparse users x items matrix with ~interactions distinct entries, ratings 1..5."""
    rng = np.random.default_rng(seed)
    total = users * items
    want = min(interactions, total)
    lin = np.unique(rng.integers(0, total, size=int(want * 1.02) + 16, dtype=np.int64))
    while len(lin) < want:  # top up what collisions removed
        more = rng.integers(0, total, size=int((want - len(lin)) * 1.5) + 16, dtype=np.int64)
        lin = np.union1d(lin, more)
    if len(lin) > want:
        lin = np.sort(rng.choice(lin, size=want, replace=False))
    rows, cols = lin // items, lin % items
    vals = rng.integers(1, 6, size=len(lin)).astype(np.float32)
    return users, items, rows, cols, vals, f"synthetic({users},{items},{len(lin)})"


def parse_synthetic(spec):
    """'U,I,N' or vae_gpu's 'synthetic:users=U,items=I,ratings=N[,seed=S]'."""
    if spec.startswith("synthetic"):
        kv = dict(p.split("=", 1) for p in spec.partition(":")[2].split(",") if "=" in p)
        return (int(kv.get("users", 943)), int(kv.get("items", 1682)), int(kv.get("ratings", 100000)),
                int(kv["seed"]) if "seed" in kv else None)
    parts = [int(float(p)) for p in spec.split(",")]
    if len(parts) != 3:
        raise SystemExit("torch_baseline: --synthetic takes users,items,interactions")
    return parts[0], parts[1], parts[2], None


class DeviceRows:
    """The training matrix on the device; batch(idx) densifies rows idx (n,) into n x items."""

    def __init__(self, n_rows, n_items, rows, cols, vals, device, storage, dense_limit_gb, max_batch):
        self.n_rows, self.n_items, self.device = n_rows, n_items, device
        dense_bytes = 4.0 * n_rows * n_items
        if storage == "auto":
            storage = "dense" if dense_bytes <= dense_limit_gb * 2**30 else "csr"
        if storage == "dense" and dense_bytes > dense_limit_gb * 2**30:
            raise SystemExit(f"torch_baseline: the dense matrix would take {dense_bytes / 2**30:.1f} GiB "
                             f"(> --dense-limit-gb {dense_limit_gb}); use --storage csr")
        self.storage = storage
        order = np.lexsort((cols, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        if storage == "dense":
            x = torch.zeros(n_rows, n_items, dtype=torch.float32, device=device)
            x[torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)] = \
                torch.as_tensor(vals, device=device)
            self.x = x
            return
        counts = np.bincount(rows, minlength=n_rows).astype(np.int64)
        crow = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=crow[1:])
        self.crow = torch.as_tensor(crow, device=device)
        self.cols = torch.as_tensor(cols.astype(np.int64), device=device)
        self.vals = torch.as_tensor(vals, device=device)
        self.nnz = len(vals)
        # No batch holds more entries than the max_batch longest rows: a fixed work size.
        self.bound = int(np.sort(counts)[::-1][:max_batch].sum()) if n_rows else 0
        self.k = torch.arange(max(self.bound, 1), device=device)

    def batch(self, idx):
        if self.storage == "dense":
            return self.x.index_select(0, idx)
        n, I = idx.shape[0], self.n_items
        starts = self.crow.index_select(0, idx)
        lens = self.crow.index_select(0, idx + 1) - starts
        cum = torch.cumsum(lens, 0)
        row = torch.searchsorted(cum, self.k, right=True)  # batch row of work item k
        valid = row < n
        row_c = row.clamp(max=n - 1)
        pos = (starts.index_select(0, row_c) + self.k - (cum.index_select(0, row_c) - lens.index_select(0, row_c)))
        pos = pos.clamp(min=0, max=max(self.nnz - 1, 0))
        flat = torch.where(valid, row_c * I + self.cols.index_select(0, pos), torch.full_like(pos, n * I))
        buf = torch.zeros(n * I + 1, dtype=torch.float32, device=self.device)  # last slot: padding sink
        buf.scatter_(0, flat, self.vals.index_select(0, pos))
        return buf[:n * I].view(n, I)


# ---- models -------------------------------------------------------------------------------

def kld_sum(mu, logvar):
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


class NotebookVAE(nn.Module):
    def __init__(self, n_items, latent=64):
        super().__init__()
        self.latent = latent
        self.enc = nn.Sequential(nn.Linear(n_items, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                 nn.Linear(256, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                 nn.Linear(512, n_items))

    def loss(self, x, users, step):
        h = self.enc(x)
        mu, logvar = h[:, :self.latent], h[:, self.latent:]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return F.mse_loss(self.dec(z), x) + kld_sum(mu, logvar)


class AutoRec(nn.Module):
    def __init__(self, n_items, hidden=500, lam=10.0):
        super().__init__()
        self.lam = lam
        self.encoder = nn.Linear(n_items, hidden)  # V, mu
        self.decoder = nn.Linear(hidden, n_items)  # W, b

    def loss(self, x, users, step):
        out = self.decoder(torch.sigmoid(self.encoder(x)))
        mask = (x != 0).to(out.dtype)
        rec = torch.sum(mask * (out - x) ** 2)
        reg = 0.5 * self.lam * (self.encoder.weight.pow(2).sum() + self.decoder.weight.pow(2).sum())
        return rec + reg


class CDAE(nn.Module):
    def __init__(self, n_items, n_users, hidden=50, dropout=0.5, lam=0.01):
        super().__init__()
        self.dropout, self.lam = dropout, lam
        self.encoder = nn.Linear(n_items, hidden)
        a = 1.0 / math.sqrt(n_items)
        self.user = nn.Parameter(torch.empty(n_users, hidden).uniform_(-a, a))
        self.decoder = nn.Linear(hidden, n_items)

    def loss(self, x, users, step):
        xin = F.dropout(x, self.dropout, training=True)
        # index_select: its backward is an index_add (no host sync, graph-capturable)
        h = torch.sigmoid(self.encoder(xin) + torch.index_select(self.user, 0, users))
        logits = self.decoder(h)
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
        reg = 0.5 * self.lam * sum(p.pow(2).sum() for p in self.parameters())
        return bce + reg


class MultVAE(nn.Module):
    def __init__(self, n_items, hidden=600, latent=200, dropout=0.5, beta_cap=0.2, anneal_steps=200000):
        super().__init__()
        self.latent, self.dropout = latent, dropout
        self.beta_cap, self.anneal_steps = beta_cap, anneal_steps
        self.enc1, self.enc2 = nn.Linear(n_items, hidden), nn.Linear(hidden, 2 * latent)
        self.dec1, self.dec2 = nn.Linear(latent, hidden), nn.Linear(hidden, n_items)
        for m in (self.enc1, self.enc2, self.dec1, self.dec2):
            nn.init.xavier_normal_(m.weight)
            nn.init.normal_(m.bias, std=0.001)

    def loss(self, x, users, step):
        xin = F.dropout(F.normalize(x, dim=1), self.dropout, training=True)
        h = self.enc2(torch.tanh(self.enc1(xin)))
        mu, logvar = h[:, :self.latent], h[:, self.latent:]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.dec2(torch.tanh(self.dec1(z)))
        n = x.shape[0]
        nll = -torch.sum(F.log_softmax(logits, dim=1) * x) / n
        if torch.is_tensor(step):  # graph / compile: the step counter lives on the device
            beta = torch.clamp(step * (1.0 / self.anneal_steps), max=self.beta_cap)
        else:
            beta = min(self.beta_cap, step / self.anneal_steps)
        return nll + beta * kld_sum(mu, logvar) / n


def make_model(kind, n_items, n_users):
    if kind == "vae":
        return NotebookVAE(n_items)
    if kind == "autorec":
        return AutoRec(n_items)
    if kind == "cdae":
        return CDAE(n_items, n_users)
    return MultVAE(n_items)


# ---- training loops ----------------------------------------------------------------------

class Runner:
    def __init__(self, args, data, model, device):
        self.args, self.data, self.model, self.device = args, data, model, device
        self.n = data.n_rows
        self.B = args.batch_size
        self.full_steps = (self.n + self.B - 1) // self.B
        self.steps = min(self.full_steps, args.max_steps) if args.max_steps > 0 else self.full_steps
        self.gen = torch.Generator().manual_seed(args.seed)
        self.step = 0
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def perm(self):
        # Shuffled on the host like vae_gpu's trainer, uploaded once per epoch.
        return torch.randperm(self.n, generator=self.gen).to(self.device, non_blocking=True)

    def sizes(self):
        for s in range(self.steps):
            r0 = s * self.B
            yield r0, min(self.B, self.n - r0)


class EagerRunner(Runner):
    def __init__(self, args, data, model, device, loss_fn=None, fused=False):
        super().__init__(args, data, model, device)
        kw = {}
        if fused:
            kw["fused"] = True
        try:
            self.opt = torch.optim.Adam(model.parameters(), lr=args.lr, **kw)
            self.adam = "fused" if fused else "default"
        except (TypeError, RuntimeError):
            self.opt = torch.optim.Adam(model.parameters(), lr=args.lr)
            self.adam = "default"
        self.loss_fn = loss_fn or self._loss
        self.loss_acc = torch.zeros((), device=device)
        self.step_t = torch.zeros((), device=device) if loss_fn is not None else None

    def _loss(self, idx, step):
        return self.model.loss(self.data.batch(idx), idx, step)

    def epoch(self):
        per_step = self.args.loss_sync == "step"
        perm = self.perm()
        total = 0.0
        self.loss_acc.zero_()
        for r0, n in self.sizes():
            idx = perm[r0:r0 + n]
            if self.step_t is not None:
                idx = idx.clone()  # compiled: a fresh tensor, no storage-offset guards
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(idx, self.step_t if self.step_t is not None else self.step)
            loss.backward()
            self.opt.step()
            self.step += 1
            if self.step_t is not None:
                self.step_t.add_(1)
            if per_step:
                total += loss.item()  # the notebooks read the loss every step
            else:
                self.loss_acc.add_(loss.detach())
        return total if per_step else self.loss_acc.item()


class GraphRunner(Runner):
    """The whole train step captured into CUDA Graphs (full batch, and the last partial one)."""

    def __init__(self, args, data, model, device, fused=True):
        super().__init__(args, data, model, device)
        # The fused kernel is the fastest Adam torch has (one launch over all parameters); a
        # torch whose fused Adam cannot be captured gets the multi-tensor (foreach) one.
        self.adam = "fused" if fused else "foreach"
        kw = {"fused": True} if fused else {}
        self.opt = torch.optim.Adam(model.parameters(), lr=args.lr, capturable=True, **kw)
        self.loss_acc = torch.zeros((), device=device)
        self.step_t = torch.zeros((), device=device)
        self.graphs = {}
        perm = self.perm()
        for _, n in self.sizes():
            if n not in self.graphs:
                self.graphs[n] = self._capture(n, perm[:n])

    def _body(self, idx):
        loss = self.model.loss(self.data.batch(idx), idx, self.step_t)
        loss.backward()
        self.opt.step()
        return loss

    def _capture(self, n, init_idx):
        static_idx = init_idx.clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):  # warm-up (lazy init, Adam state) outside the capture
            for _ in range(3):
                self.opt.zero_grad(set_to_none=True)
                self._body(static_idx)
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(g):
            loss = self._body(static_idx)
            self.loss_acc.add_(loss.detach())
            self.step_t.add_(1)
        torch.cuda.synchronize()
        return g, static_idx

    def epoch(self):
        perm = self.perm()
        self.loss_acc.zero_()
        for r0, n in self.sizes():
            g, static_idx = self.graphs[n]
            static_idx.copy_(perm[r0:r0 + n], non_blocking=True)
            g.replay()
            self.step += 1
        return self.loss_acc.item()


def build_runner(args, data, model, device):
    """(runner, variant actually run, note)."""
    if args.variant == "eager":
        return EagerRunner(args, data, model, device), "eager", ""
    if args.variant == "graph":
        if device.type != "cuda":
            return EagerRunner(args, data, model, device), "eager", "CUDA Graphs need --device cuda: ran eager"
        try:
            try:
                return GraphRunner(args, data, model, device, fused=True), "graph", ""
            except Exception as e:  # this torch's fused Adam is not capturable: the foreach one
                fused_why = f"fused capturable Adam failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
                torch.cuda.synchronize()
                model.zero_grad(set_to_none=True)
            return GraphRunner(args, data, model, device, fused=False), "graph", fused_why + ": foreach Adam"
        except Exception as e:  # e.g. an op that cannot be captured on this torch
            try:
                torch.cuda.synchronize()
            except Exception:
                pass
            return (EagerRunner(args, data, model, device), "eager",
                    f"CUDA Graph capture failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}): ran eager")
    # compile
    if not hasattr(torch, "compile"):
        return EagerRunner(args, data, model, device), "eager", f"torch {torch.__version__} has no torch.compile: ran eager"

    def loss_fn(idx, step_t):
        return model.loss(data.batch(idx), idx, step_t)

    compiled = torch.compile(loss_fn, mode=args.compile_mode, dynamic=False)
    return (EagerRunner(args, data, model, device, loss_fn=compiled, fused=device.type == "cuda"),
            "compile", f"torch.compile mode={args.compile_mode}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=MODELS, default="vae")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="MovieLens directory (u.data, ratings.dat or ratings.csv), a ratings "
                                    "file, or vae_gpu's synthetic:users=U,items=I,ratings=N spec")
    src.add_argument("--synthetic", metavar="USERS,ITEMS,INTERACTIONS",
                     help="random sparse matrix of that shape, e.g. 136677,20108,10000000 (ml-20m-shaped)")
    ap.add_argument("--variant", choices=("eager", "graph", "compile"), default="eager")
    ap.add_argument("--compile-mode", default="max-autotune-no-cudagraphs",
                    help="torch.compile mode for --variant compile (e.g. reduce-overhead, default)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--max-steps", type=int, default=0, help="cap steps per epoch (0 = full epochs); the "
                                                            "epoch time is then extrapolated")
    ap.add_argument("--batch-size", type=int, default=0, help="0 = the model's default (64; Mult-VAE 500)")
    ap.add_argument("--lr", type=float, default=0.0, help="0 = the model's default (1e-3; CDAE 0.01)")
    ap.add_argument("--test-fraction", type=float, default=0.2, help="seed protocol: users held out")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on CUDA (off by default)")
    ap.add_argument("--loss-sync", choices=("auto", "step", "epoch"), default="auto",
                    help="read the loss every step (the notebooks) or once per epoch; auto: step for "
                         "eager, epoch for graph/compile")
    ap.add_argument("--storage", choices=("auto", "dense", "csr"), default="auto")
    ap.add_argument("--dense-limit-gb", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.epochs < 1:
        ap.error("--epochs must be at least 1")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("torch_baseline: --device cuda but torch.cuda.is_available() is False")
        if device.index is not None:
            torch.cuda.set_device(device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    args.batch_size = args.batch_size or DEFAULT_BATCH[args.model]
    args.lr = args.lr or DEFAULT_LR[args.model]
    if args.loss_sync == "auto":
        args.loss_sync = "step" if args.variant == "eager" else "epoch"
    torch.manual_seed(args.seed)

    t_load = time.perf_counter()
    synth = args.synthetic or (args.data if args.data and args.data.startswith("synthetic") else None)
    if synth:
        u, i, nnz, s = parse_synthetic(synth)
        users, items, rows, cols, vals, name = make_synthetic(u, i, nnz, args.seed if s is None else s)
    else:
        users, items, rows, cols, vals, name = load_movielens(args.data)
    if args.model in BINARY_INPUT:
        vals = np.ones_like(vals)
    # Seed protocol: round(test_fraction * users) random users are test users, never trained on.
    rng = np.random.default_rng(args.seed)
    n_test = int(round(args.test_fraction * users))
    is_train = np.ones(users, dtype=bool)
    is_train[rng.choice(users, size=n_test, replace=False)] = False
    new_row = np.cumsum(is_train) - 1
    keep = is_train[rows]
    rows, cols, vals = new_row[rows[keep]], cols[keep], vals[keep]
    n_train = int(is_train.sum())
    data = DeviceRows(n_train, items, rows, cols, vals, device, args.storage, args.dense_limit_gb,
                      args.batch_size)
    load_seconds = time.perf_counter() - t_load

    model = make_model(args.model, items, n_train).to(device)
    runner, variant_run, why = build_runner(args, data, model, device)
    if args.loss_sync == "step" and variant_run == "graph":
        args.loss_sync = "epoch"

    runner.sync()
    t0 = time.perf_counter()
    try:
        runner.epoch()  # warm-up epoch: lazy initialisation, cuBLAS heuristics, compilation
    except Exception as e:
        if variant_run != "compile":
            raise
        why = f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}): ran eager"
        note(why)
        runner, variant_run = EagerRunner(args, data, model, device), "eager"
        runner.epoch()
    runner.sync()
    warmup_seconds = time.perf_counter() - t0
    times, losses = [], []
    for _ in range(args.epochs):
        runner.sync()
        t0 = time.perf_counter()
        total = runner.epoch()
        runner.sync()
        times.append(time.perf_counter() - t0)
        losses.append(total / max(runner.steps, 1))
    step_ms = statistics.median(t / runner.steps * 1e3 for t in times)
    extrapolated = runner.steps < runner.full_steps
    epoch_s = step_ms / 1e3 * runner.full_steps if extrapolated else statistics.median(times)
    out = {
        "model": args.model,
        "variant": args.variant,
        "variant_run": variant_run,
        "device": str(device),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "tf32": bool(args.tf32),
        "adam": runner.adam,  # the optimiser implementation: default (the notebooks'), foreach or fused
        "dataset": name,
        "users": n_train,
        "users_total": users,
        "items": items,
        "nnz": int(len(vals)),
        "storage": data.storage,
        "batch": args.batch_size,
        "lr": args.lr,
        "loss_sync": args.loss_sync,
        "steps_per_epoch": runner.full_steps,
        "steps_timed": runner.steps,
        "epochs": args.epochs,
        "epoch_seconds_median": epoch_s,
        "epoch_seconds": times,
        "step_ms_median": step_ms,
        "users_per_second": n_train / epoch_s if epoch_s > 0 else None,
        "extrapolated": extrapolated,
        "warmup_seconds": warmup_seconds,
        "load_seconds": load_seconds,
        "train_loss_last_epoch": losses[-1],
    }
    if why:
        out["note"] = why
    print(json.dumps(out))


if __name__ == "__main__":
    main()
