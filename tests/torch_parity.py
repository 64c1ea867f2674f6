#!/usr/bin/env python3
"""PyTorch side of the parity test (tests/test_torch_parity.cpp).

Reads a case directory written by the C++ test: manifest.json (model kind, hyper-parameters,
tensor shapes) and raw little-endian float64 files (the batch, ε, the dropout keep mask);
rebuilds the model in PyTorch (float64) as the reference notebooks (VAE, AutoRec) or the
papers' PyTorch ports (Mult-VAE, CDAE) write it, computes the loss of the given batch and its
gradients, and writes loss.txt and <param>.grad files back. Written that way on purpose: it is
the independent reference.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load(d, name, shape):
    return torch.from_numpy(np.fromfile(os.path.join(d, name), dtype="<f8").reshape(shape))


class NotebookVAE(nn.Module):
    def __init__(self, n_items, latent):
        super().__init__()
        self.latent = latent
        self.encoder = nn.Sequential(nn.Linear(n_items, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                                     nn.Linear(256, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                     nn.Linear(512, n_items))

    def forward(self, x, eps):
        h = self.encoder(x)
        mu, logvar = h[:, :self.latent], h[:, self.latent:]
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar


class AutoRec(nn.Module):
    def __init__(self, n_inputs, hidden):
        super().__init__()
        self.encoder = nn.Linear(n_inputs, hidden)
        self.decoder = nn.Linear(hidden, n_inputs)

    def forward(self, x):
        return self.decoder(torch.sigmoid(self.encoder(x)))


class MultVAE(nn.Module):
    """Liang et al.'s Mult-VAE [I-H-2L / L-H-I], tanh, as in its PyTorch ports."""

    def __init__(self, n_items, hidden, latent, dropout):
        super().__init__()
        self.latent = latent
        self.dropout = dropout
        self.enc1 = nn.Linear(n_items, hidden)
        self.enc2 = nn.Linear(hidden, 2 * latent)
        self.dec1 = nn.Linear(latent, hidden)
        self.dec2 = nn.Linear(hidden, n_items)

    def forward(self, x, keep, eps):
        h = F.normalize(x, dim=1)
        h = h * keep / (1 - self.dropout)  # nn.Dropout with the given mask
        h = self.enc2(torch.tanh(self.enc1(h)))
        mu, logvar = h[:, :self.latent], h[:, self.latent:]
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.dec2(torch.tanh(self.dec1(z))), mu, logvar


class CDAE(nn.Module):
    """Wu et al.'s CDAE: h = sigmoid(W x~ + V_u + b), logits = W' h + b'."""

    def __init__(self, n_items, n_users, hidden, dropout):
        super().__init__()
        self.dropout = dropout
        self.encoder = nn.Linear(n_items, hidden)
        self.user = nn.Embedding(n_users, hidden)
        self.decoder = nn.Linear(hidden, n_items)

    def forward(self, x, keep, users):
        x_tilde = x * keep / (1 - self.dropout) if self.dropout > 0 else x
        return self.decoder(torch.sigmoid(self.encoder(x_tilde) + self.user(users)))


def adam(d, m):
    """Steps torch.optim.Adam (or AdamW) over p0.bin with the gradients g1.bin, g2.bin, ..."""
    p = torch.nn.Parameter(load(d, "p0.bin", [m["n"]]))
    opt_class = torch.optim.AdamW if m["decoupled"] else torch.optim.Adam
    opt = opt_class([p], lr=m["lr"], betas=(m["beta1"], m["beta2"]), eps=m["eps"],
                    weight_decay=m["weight_decay"])
    for t in range(1, m["steps"] + 1):
        p.grad = load(d, "g%d.bin" % t, [m["n"]])
        opt.step()
    p.detach().numpy().astype("<f8").tofile(os.path.join(d, "p.bin"))


def main(d):
    with open(os.path.join(d, "manifest.json")) as f:
        m = json.load(f)
    kind = m["kind"]
    if kind == "adam":
        adam(d, m)
        return
    x = load(d, "x.bin", m["x_shape"])
    # Our parameter names -> the torch modules' state_dict keys.
    if kind == "vae":
        model = NotebookVAE(m["x_shape"][1], m["latent"]).double()
        names = {"enc1": "encoder.0", "enc2": "encoder.2", "enc3": "encoder.4",
                 "dec1": "decoder.0", "dec2": "decoder.2", "dec3": "decoder.4"}
    elif kind == "multvae":
        model = MultVAE(m["x_shape"][1], m["hidden"], m["latent"], m["dropout"]).double()
        names = {l: l for l in ("enc1", "enc2", "dec1", "dec2")}
    elif kind == "cdae":
        model = CDAE(m["x_shape"][1], m["x_shape"][0], m["hidden"], m["dropout"]).double()
        names = {"encoder": "encoder", "user": "user", "decoder": "decoder"}
    else:
        model = AutoRec(m["x_shape"][1], m["hidden"]).double()
        names = {"encoder": "encoder", "decoder": "decoder"}
    fields = {"weight": "weight", "bias": "bias", "embedding": "weight"}  # ours -> torch's
    sd = {}
    for p in m["params"]:
        layer, field = p["name"].split(".")
        shape = [p["shape"][1]] if field == "bias" else p["shape"]
        sd[names[layer] + "." + fields[field]] = load(d, p["name"] + ".bin", shape)
    model.load_state_dict(sd)

    if kind == "vae":
        eps = load(d, "eps.bin", m["eps_shape"])
        recon, mu, logvar = model(x, eps)
        mse = F.mse_loss(recon, x)
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        loss = mse + m["beta"] * kld
    elif kind == "multvae":
        keep = load(d, "keep.bin", m["x_shape"])
        eps = load(d, "eps.bin", m["eps_shape"])
        logits, mu, logvar = model(x, keep, eps)
        nll = -torch.mean(torch.sum(F.log_softmax(logits, 1) * x, -1))
        kld = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
        loss = nll + m["beta"] * kld
    elif kind == "cdae":
        keep = load(d, "keep.bin", m["x_shape"])
        users = torch.arange(m["x_shape"][0])
        logits = model(x, keep, users)
        if m["loss"] == "bce":
            rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        else:
            rec = torch.sum((logits - x) ** 2)
        loss = rec / x.shape[0] + m["lambda"] / 2 * sum(p.pow(2).sum() for p in model.parameters())
    else:
        out = model(x)
        lam = m["lambda"]
        if m["loss"] == "dense":
            # The reference notebook: summed MSE over all entries + 0.5·λ·Σ‖p‖₂.
            loss = torch.sum((out - x) ** 2)
            loss = loss + 0.5 * lam * sum(p.norm(2) for p in model.parameters())
        else:
            mask = (x != 0).double()
            loss = torch.sum(((out - x) * mask) ** 2)
            loss = loss + lam / 2 * (model.encoder.weight.pow(2).sum() + model.decoder.weight.pow(2).sum())
    loss.backward()
    with open(os.path.join(d, "loss.txt"), "w") as f:
        f.write(repr(loss.item()) + "\n")
    params = dict(model.named_parameters())
    for p in m["params"]:
        layer, field = p["name"].split(".")
        g = params[names[layer] + "." + fields[field]].grad.detach().numpy().astype("<f8")
        g.tofile(os.path.join(d, p["name"] + ".grad"))


if __name__ == "__main__":
    main(sys.argv[1])
