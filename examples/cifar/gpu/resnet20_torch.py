#!/usr/bin/env python3
"""PyTorch reference for examples/cifar/gpu/check.sh: one ResNet-20 training step per method, timed.

The same model and step as examples/cifar (models.go, train.go) with -model=resnet20 -augment=false
-synthetic:

- CIFAR ResNet-20 (He et al. 2016): 3x3 conv to 16 channels, three stages of 3 basic blocks (16, 32, 64
  channels, stride 2 at the start of stages 2 and 3), option-A shortcuts (subsampling and zero channels, no
  parameters), batch norm after every convolution (eps 1e-5, moving averages with momentum 0.1 in
  PyTorch's convention = 0.9 in GoMLX's), global average pooling, a dense layer to 10 logits. Convolutions
  have no bias. He initialization (normal, std sqrt(2/fan_in)) of convolution and dense weights, zero
  biases, batch-norm scale 1 and offset 0 — GoMLX's HeFn / default initializer. 269 722 parameters.
- Input normalized by the CIFAR-10 channel mean and std inside the model, as modelFn does.
- Synthetic data: 8 batches of uniform [0, 1) images and uniform labels, cycled; no augmentation.
- Base optimizer: SGD, momentum 0.9, weight decay 5e-4 added to the gradient (torch.optim.SGD), learning
  rate 0.1 with a cosine decay over -steps (examples/internal/sgdm).
- Batch norm in training mode in every pass. The methods that evaluate the model a second time (F-GR, SAM)
  restore the running statistics after the second pass to their values after the first, as gradreg's
  GradAt does, so that a step updates them once.

Methods (gamma = eps = rho = 0.05, as check.sh's GoMLX runs):

- sgd:     g = grad L(theta)
- forward: F-GR, g = (1 - gamma/eps) g1 + (gamma/eps) grad L(theta + eps g1)
- sam:     SAM, g = grad L(theta + rho g1/||g1||)  (||g1|| over all parameters, + 1e-12)
- db:      DB-GR, g = grad [L + (gamma/2)||grad L||^2] by double backprop (torch.autograd.grad with
           create_graph=True): one forward pass, so batch-norm statistics update once

Timing: --warmup steps (not timed; compilation and cuDNN autotuning happen there), then --steps timed
steps, each ended by torch.cuda.synchronize(); prints their mean as step_ms=... (the format check.sh
parses for GoMLX too, whose runner reports the mean over all steps but the first two) and the median.
--compile=auto uses torch.compile (PyTorch 2.x) on the model for sgd, forward and sam; compiled double
backward is not supported, so db always runs eager. Peak GPU memory is measured outside, by check.sh
(nvidia-smi), for both frameworks alike.

  python3 resnet20_torch.py --method=forward --batch=128 --steps=40 [--compile=auto|on|off] [--device=cuda]

--model=mlp is examples/cifar's -model=mlp instead (3072-512-256-10, ReLU), for check.sh's DRYRUN on a CPU.
"""
import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CHANNEL_MEAN = (0.4914, 0.4822, 0.4465)
CHANNEL_STD = (0.2470, 0.2435, 0.2616)


def he_(weight):
    fan_in = weight[0].numel()  # in_channels * k * k for a conv, in_features for a dense layer
    with torch.no_grad():
        weight.normal_(0.0, math.sqrt(2.0 / max(1, fan_in)))


class BasicBlock(nn.Module):
    def __init__(self, in_ch, out_ch, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch, eps=1e-5, momentum=0.1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=1e-5, momentum=0.1)
        self.stride, self.pad = stride, out_ch - in_ch

    def forward(self, x):
        shortcut = x
        if self.stride != 1 or self.pad:  # option A: subsample, then zero channels
            shortcut = x[:, :, ::self.stride, ::self.stride]
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad))
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + shortcut)


class ResNet(nn.Module):
    def __init__(self, depth=20, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.register_buffer("mean", torch.tensor(CHANNEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CHANNEL_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16, eps=1e-5, momentum=0.1)
        blocks, in_ch = [], 16
        for stage, ch in enumerate((16, 32, 64)):
            for b in range(n):
                blocks.append(BasicBlock(in_ch, ch, 2 if stage > 0 and b == 0 else 1))
                in_ch = ch
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                he_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = F.relu(self.bn(self.stem(x)))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


class MLP(nn.Module):
    """-model=mlp of examples/cifar (DRYRUN only): normalized input, flattened, 512 and 256 ReLU units, 10 logits."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.register_buffer("mean", torch.tensor(CHANNEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CHANNEL_STD).view(1, 3, 1, 1), persistent=False)
        self.fc1, self.fc2, self.out = nn.Linear(3 * 32 * 32, 512), nn.Linear(512, 256), nn.Linear(256, num_classes)
        for m in (self.fc1, self.fc2, self.out):
            he_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x):
        x = ((x - self.mean) / self.std).flatten(1)
        return self.out(F.relu(self.fc2(F.relu(self.fc1(x)))))


def bn_state(model):
    return [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
            for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def restore_bn(model, state):
    with torch.no_grad():
        for m, (mean, var, n) in zip([m for m in model.modules() if isinstance(m, nn.BatchNorm2d)], state):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(n)


def make_step(method, model, fwd, params, opt, sched, gamma, eps, rho):
    def grads_at(x, y):
        loss = F.cross_entropy(fwd(x), y)
        return loss, torch.autograd.grad(loss, params)

    def second_pass(x, y, offsets):
        """grad L(theta + offsets) with the batch-norm statistics left as the first pass left them."""
        saved = bn_state(model)
        with torch.no_grad():
            torch._foreach_add_(params, offsets)
        _, g2 = grads_at(x, y)
        with torch.no_grad():
            torch._foreach_sub_(params, offsets)
        restore_bn(model, saved)
        return g2

    def step(x, y):
        if method == "sgd":
            loss, g = grads_at(x, y)
        elif method == "forward":
            loss, g1 = grads_at(x, y)
            g2 = second_pass(x, y, torch._foreach_mul(g1, eps))
            c = gamma / eps
            g = torch._foreach_add(torch._foreach_mul(g1, 1 - c), torch._foreach_mul(g2, c))
        elif method == "sam":
            loss, g1 = grads_at(x, y)
            norm = torch.sqrt(sum((t * t).sum() for t in g1)) + 1e-12
            g = second_pass(x, y, torch._foreach_mul(g1, rho / norm))
        elif method == "db":
            loss = F.cross_entropy(fwd(x), y)
            g1 = torch.autograd.grad(loss, params, create_graph=True)
            penalty = 0.5 * gamma * sum((t * t).sum() for t in g1)
            g = torch.autograd.grad(loss + penalty, params)
        else:
            raise ValueError(f"unknown --method={method!r}: valid values are sgd|forward|sam|db")
        for p, gp in zip(params, g):
            p.grad = gp
        opt.step()
        sched.step()
        return loss

    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--method", default="sgd", choices=["sgd", "forward", "sam", "db"])
    ap.add_argument("--model", default="resnet20", choices=["resnet20", "mlp"],
                    help="resnet20, or mlp (-model=mlp of examples/cifar, for check.sh's DRYRUN on a CPU)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, autotuning)")
    ap.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                    help="torch.compile the model (auto: where available, never for db)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--gamma", type=float, default=0.05)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--rho", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    for name in ("batch", "steps"):
        if getattr(a, name) < 1:
            sys.exit(f"--{name}={getattr(a, name)}: must be >= 1")
    if a.warmup < 0:
        sys.exit(f"--warmup={a.warmup}: must be >= 0")

    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    torch.backends.cudnn.benchmark = True
    model = (ResNet(20) if a.model == "resnet20" else MLP()).to(dev).train()
    nparams = sum(p.numel() for p in model.parameters())
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, a.warmup + a.steps) / (a.warmup + a.steps))))

    compiled = False
    fwd = model
    want = a.compile == "on" or (a.compile == "auto" and a.method != "db")
    if want and a.method == "db":
        sys.exit("--compile=on with --method=db: torch.compile does not support double backward")
    if want and hasattr(torch, "compile"):
        fwd, compiled = torch.compile(model), True
    elif want and a.compile == "on":
        sys.exit(f"--compile=on: this PyTorch ({torch.__version__}) has no torch.compile")

    gen = torch.Generator().manual_seed(a.seed)
    xs = torch.rand(8, a.batch, 3, 32, 32, generator=gen).to(dev)
    ys = torch.randint(0, 10, (8, a.batch), generator=gen).to(dev)
    step = make_step(a.method, model, fwd, params, opt, sched, a.gamma, a.eps, a.rho)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    times = []
    loss = None
    for i in range(a.warmup + a.steps):
        start = time.perf_counter()
        loss = step(xs[i % 8], ys[i % 8])
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - start)
    loss = float(loss)
    if not math.isfinite(loss):
        sys.exit(f"loss is {loss}")
    ms = statistics.mean(times) * 1000
    print(f"torch {torch.__version__} on {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}): "
          f"{a.model}, method={a.method}, compiled={compiled}, batch {a.batch}, {a.steps} timed steps after "
          f"{a.warmup}, {nparams} parameters, final loss {loss:.4f}, mean step_ms={ms:.3f} "
          f"median_ms={statistics.median(times) * 1000:.3f}")


if __name__ == "__main__":
    main()
