"""A real network whose head is a deep UFM: backbone → H₁ → W₁ … W_L, for S seeds at once.

Every parameter is stacked over seeds: a tensor (S, …), so one forward/backward pass trains S
independent networks (the summed loss has the per-seed gradients as its gradient: the seeds share
no parameter). Shapes, with F input features, N samples and hidden widths h_i:

* **backbone** ``mlp``: B_i (S, h_i, h_{i−1}), b_i (S, h_i), ReLU between layers; the last layer
  maps to d with no activation, so H₁ (S, d, N) is any real matrix, as the UFM's free features.
* **backbone** ``cnn`` (images (h, w), one channel): 3×3 convolutions with padding 1 and ReLU,
  channels c_1, c_2, …, computed for all seeds as one grouped convolution, then a linear map of
  the flattened maps to d (no activation).
* **head**, exactly ``docs/MODEL.md`` §1: W₁ … W_{L−1} (S, d, d), W_L (S, K, d), no biases,
  H₂ = W₁H₁, H_{l+1} = W_l σ(H_l), Z = W_L σ(H_L) (σ = identity or ReLU, never on H₁ or Z).

The head's parameters and the training set's features H₁ (class-ordered columns) are therefore a
point of the deep UFM as they stand (:mod:`landscape.net.handoff`).

Objective (per seed, :meth:`BatchedNet.objective`): the mean cross-entropy of Z over the N
samples plus, for regularisation ``ufm``, (λ_H/2)‖H₁‖_F² + (λ_W/2)Σ_l‖W_l‖_F² +
(λ_B/2)‖backbone‖² (λ_B = ``backbone_decay``, 0 by default: the backbone is free), or for
``standard``, (λ/2)·(‖backbone‖² + Σ_l‖W_l‖²) (one weight decay on every parameter, biases
included, none on the features).
"""
from __future__ import annotations

import math

import torch


class BatchedNet:
    """S networks of one architecture (see the module docstring). ``params`` is a dict name →
    (S, …) tensor with ``requires_grad``; backbone names start with ``B``, head names are
    ``W1`` … ``WL``."""

    def __init__(self, *, n_features: int, K: int, d: int, L: int, activation: str, backbone: str,
                 hidden: tuple[int, ...], image_shape: tuple[int, int] | None, seeds: list[int],
                 dtype: torch.dtype = torch.float64, device="cpu"):
        if backbone == "cnn" and image_shape is None:
            raise ValueError("backbone 'cnn' needs image inputs (the dataset has no image shape)")
        self.K, self.d, self.L, self.relu_head = K, d, L, activation == "relu"
        self.backbone, self.hidden, self.image_shape = backbone, tuple(hidden), image_shape
        self.seeds, self.S = list(seeds), len(seeds)
        self.dtype, self.device = dtype, torch.device(device)
        shapes = self.shapes(n_features)
        per_seed = []
        for s in self.seeds:   # each seed's parameters from its own generator: a seed alone = the seed in a batch
            g = torch.Generator().manual_seed(int(s))
            per_seed.append({k: _init(shape, fan_in, g) for k, (shape, fan_in) in shapes.items()})
        self.params = {k: torch.stack([p[k] for p in per_seed]).to(dtype=dtype, device=self.device).requires_grad_(True)
                       for k in shapes}

    # ----- layout ---------------------------------------------------------------------------
    def shapes(self, F: int) -> dict[str, tuple[tuple[int, ...], int | None]]:
        """name → (shape per seed, fan-in for the initialisation; None for a zero bias)."""
        out: dict[str, tuple[tuple[int, ...], int | None]] = {}
        if self.backbone == "mlp":
            widths = (F,) + self.hidden + (self.d,)
            for i in range(len(widths) - 1):
                out[f"B{i + 1}"] = ((widths[i + 1], widths[i]), widths[i])
                out[f"B{i + 1}_bias"] = ((widths[i + 1],), None)
        else:
            h, w = self.image_shape
            chans = (1,) + self.hidden
            for i in range(len(chans) - 1):
                out[f"Bconv{i + 1}"] = ((chans[i + 1], chans[i], 3, 3), chans[i] * 9)
                out[f"Bconv{i + 1}_bias"] = ((chans[i + 1],), None)
            flat = chans[-1] * h * w
            out["Bout"] = ((self.d, flat), flat)
            out["Bout_bias"] = ((self.d,), None)
        for l in range(1, self.L):
            out[f"W{l}"] = ((self.d, self.d), self.d)
        out[f"W{self.L}"] = ((self.K, self.d), self.d)
        return out

    @property
    def head_names(self) -> list[str]:
        return [f"W{l}" for l in range(1, self.L + 1)]

    @property
    def backbone_names(self) -> list[str]:
        return [k for k in self.params if k.startswith("B")]

    # ----- forward --------------------------------------------------------------------------
    def features(self, X: torch.Tensor) -> torch.Tensor:
        """H₁ (S, d, N) of inputs X (N, F)."""
        p = self.params
        if self.backbone == "mlp":
            h = X.T  # (F, N), shared by every seed
            n_layers = len(self.hidden) + 1
            for i in range(1, n_layers + 1):
                h = torch.matmul(p[f"B{i}"], h) + p[f"B{i}_bias"].unsqueeze(-1)
                if i < n_layers:
                    h = torch.relu(h)
            return h
        S, N = self.S, X.shape[0]
        hh, ww = self.image_shape
        x = X.reshape(N, 1, hh, ww).expand(N, S, hh, ww)   # seed s reads group s
        for i in range(1, len(self.hidden) + 1):
            W = p[f"Bconv{i}"]                               # (S, c_out, c_in, 3, 3)
            x = torch.nn.functional.conv2d(x, W.reshape(-1, *W.shape[2:]), p[f"Bconv{i}_bias"].reshape(-1),
                                           padding=1, groups=S)
            x = torch.relu(x)
        x = x.reshape(N, S, -1).permute(1, 2, 0)             # (S, c·h·w, N)
        return torch.matmul(p["Bout"], x) + p["Bout_bias"].unsqueeze(-1)

    def head(self, H1: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(pre-activation features [H₁, H₂, …, H_L], logits Z (S, K, N)) of features H₁."""
        pre, h = [H1], H1
        for l in range(1, self.L):
            h = torch.matmul(self.params[f"W{l}"], h)
            pre.append(h)
            if self.relu_head:
                h = torch.relu(h)
        return pre, torch.matmul(self.params[f"W{self.L}"], h)

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(X))[1]

    def objective(self, X: torch.Tensor, y: torch.Tensor, reg: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(regularised loss (S,), mean cross-entropy (S,)) on inputs X (N, F), labels y (N,);
        ``reg`` as :meth:`landscape.net.config.Regularisation.to_dict` (see the module docstring)."""
        H1 = self.features(X)
        Z = self.head(H1)[1]                                                  # (S, K, N)
        ce = torch.nn.functional.cross_entropy(Z, y.expand(self.S, -1), reduction="none").mean(dim=1)

        def sq(names):
            return sum((self.params[k] ** 2).flatten(1).sum(dim=1) for k in names)

        if reg["kind"] == "ufm":
            r = 0.5 * reg["lambda_H"] * (H1 ** 2).flatten(1).sum(dim=1) + 0.5 * reg["lambda_W"] * sq(self.head_names)
            if reg["backbone_decay"] > 0:
                r = r + 0.5 * reg["backbone_decay"] * sq(self.backbone_names)
        else:
            r = 0.5 * reg["lambda"] * sq(list(self.params))
        return ce + r, ce


def _init(shape: tuple[int, ...], fan_in: int | None, g: torch.Generator) -> torch.Tensor:
    """PyTorch's default (Kaiming-uniform, a = √5) for weights: U(−1/√fan_in, 1/√fan_in); zero biases."""
    if fan_in is None:
        return torch.zeros(shape, dtype=torch.float64)
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound
