#!/usr/bin/env python3
"""The reference notebooks' Gaussian VAE training loop in PyTorch, timed per epoch.

The peer for vae_gpu's notebook-VAE timings: same architecture (I-512-256-2L / L-256-512-I,
ReLU, linear output), same loss (mean MSE + summed KLD), batch 64, Adam 1e-3, 20 % test users,
an eager loop like the notebooks'. Prints one JSON line with the median seconds per epoch.

  python3 bench/torch_notebook_vae.py --data $MOVIELENS_DIR/ml-100k --epochs 5 --device cpu
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_ml100k(path):
    raw = np.loadtxt(os.path.join(path, "u.data"), dtype=np.int64)
    users, items = raw[:, 0].max(), raw[:, 1].max()
    m = np.zeros((users, items), dtype=np.float32)
    m[raw[:, 0] - 1, raw[:, 1] - 1] = raw[:, 2]
    return m


class NotebookVAE(nn.Module):
    def __init__(self, n_items, latent=64):
        super().__init__()
        self.latent = latent
        self.enc = nn.Sequential(nn.Linear(n_items, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                 nn.Linear(256, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                 nn.Linear(512, n_items))

    def forward(self, x, eps=None):
        h = self.enc(x)
        mu, logvar = h[:, :self.latent], h[:, self.latent:]
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.dec(z), mu, logvar


def notebook_loss(recon, x, mu, logvar, beta=1.0):
    mse = F.mse_loss(recon, x)
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return mse + beta * kld


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    m = load_ml100k(args.data)
    rng = np.random.default_rng(1)
    test = rng.choice(m.shape[0], size=round(0.2 * m.shape[0]), replace=False)
    train = np.setdiff1d(np.arange(m.shape[0]), test)
    x_train = torch.tensor(m[train], device=args.device)
    model = NotebookVAE(m.shape[1]).to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(args.epochs):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        perm = torch.randperm(x_train.shape[0], device=args.device)
        total = 0.0
        for b in range(0, x_train.shape[0], args.batch_size):
            x = x_train[perm[b:b + args.batch_size]]
            recon, mu, logvar = model(x)
            loss = notebook_loss(recon, x, mu, logvar)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()  # the notebooks read the loss every step
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"impl": "pytorch-eager", "torch": torch.__version__, "device": args.device,
                      "threads": torch.get_num_threads(), "epochs": args.epochs,
                      "epoch_seconds_median": statistics.median(times),
                      "epoch_seconds": times}))


if __name__ == "__main__":
    main()
