#!/usr/bin/env python3
"""PyTorch side of the parity test (tests/test_torch_parity.cpp).

Reads a case directory written by the C++ test: manifest.json (model kind, hyper-parameters,
tensor shapes) and raw little-endian float64 files; rebuilds the reference notebooks' model
in PyTorch (float64), computes the loss of the given batch and its gradients, and writes
loss.txt and <param>.grad files back. Written the way the notebooks write it, on purpose: it
is the independent reference.
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


def main(d):
    with open(os.path.join(d, "manifest.json")) as f:
        m = json.load(f)
    kind = m["kind"]
    x = load(d, "x.bin", m["x_shape"])
    # Our parameter names -> the torch modules' state_dict keys.
    if kind == "vae":
        model = NotebookVAE(m["x_shape"][1], m["latent"]).double()
        names = {"enc1": "encoder.0", "enc2": "encoder.2", "enc3": "encoder.4",
                 "dec1": "decoder.0", "dec2": "decoder.2", "dec3": "decoder.4"}
    else:
        model = AutoRec(m["x_shape"][1], m["hidden"]).double()
        names = {"encoder": "encoder", "decoder": "decoder"}
    sd = {}
    for p in m["params"]:
        layer, field = p["name"].split(".")
        shape = p["shape"] if field == "weight" else [p["shape"][1]]
        sd[names[layer] + "." + field] = load(d, p["name"] + ".bin", shape)
    model.load_state_dict(sd)

    if kind == "vae":
        eps = load(d, "eps.bin", m["eps_shape"])
        recon, mu, logvar = model(x, eps)
        mse = F.mse_loss(recon, x)
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        loss = mse + m["beta"] * kld
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
        g = params[names[layer] + "." + field].grad.detach().numpy().astype("<f8")
        g.tofile(os.path.join(d, p["name"] + ".grad"))


if __name__ == "__main__":
    main(sys.argv[1])
