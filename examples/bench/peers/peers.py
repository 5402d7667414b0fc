"""PyTorch and JAX peers of examples/bench's side-by-side rows (dev-only; no Go test needs it).

The same models, batch, float32 and methods as `go run ./examples/bench -peers`:

  models   mlp: 784-256-256-10, tanh, batch 64
           cnn: the dconv CNN, 32×32×3 → conv3×3(16) relu maxpool2 → conv3×3(32) relu maxpool2
                → dense 128 relu → dense 10, batch 32 (no biases in the convolutions)
  methods  SGD (lr 0.01); F-GR g = g₁ + (γ/ε)[∇L(θ + εg₁) − g₁] (γ = ε = 0.05, as gradreg's defaults);
           SAM ρ = 0.05 (PyTorch: written out, two gradients; JAX: optax.contrib.sam, opaque mode, with
           normalized-SGD ascent); DB g = ∇[L + (γ/2)‖∇L‖²] (double backprop).

Every step of every (framework, model, method) runs in turn, round after round, in this one process; the
time of a step is process CPU time (all threads) and wall time. Prints one JSON object per line:
{"framework", "model", "method", "threads", "cpu_ms": [...], "wall_ms": [...]}.

Pinned versions: examples/bench/peers/requirements.txt; run through examples/bench/peers/run.sh.
"""

import argparse
import json
import os
import sys
import time

GAMMA = EPS = RHO = 0.05
LR = 0.01
MODELS = {"mlp": 64, "cnn": 32}  # batch sizes
METHODS = ["SGD", "F-GR", "SAM", "DB"]


def data(model, rng):
    import numpy as np

    b = MODELS[model]
    x = rng.standard_normal((b, 784) if model == "mlp" else (b, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=b).astype(np.int32)
    return x, y


# ---------------------------------------------------------------------------------------------- PyTorch
def torch_steps(model, x_np, y_np):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    x = torch.from_numpy(x_np)
    if model == "cnn":
        x = x.permute(0, 3, 1, 2).contiguous()  # PyTorch's native NCHW
    y = torch.from_numpy(y_np).long()

    def make():
        if model == "mlp":
            return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.Tanh(), torch.nn.Linear(256, 256),
                                       torch.nn.Tanh(), torch.nn.Linear(256, 10))
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1, bias=False), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1, bias=False), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 32, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))

    def build(method):
        net = make()
        params = list(net.parameters())

        def loss():
            return F.cross_entropy(net(x), y)

        def grads():
            return torch.autograd.grad(loss(), params)

        @torch.no_grad()
        def apply(g):
            for p, gi in zip(params, g):
                p.sub_(LR * gi)

        @torch.no_grad()
        def shift(d, sign):
            for p, di in zip(params, d):
                p.add_(sign * di)

        def sgd():
            apply(grads())

        def fgr():
            g1 = grads()
            d = [EPS * g for g in g1]
            shift(d, 1)
            g2 = grads()
            shift(d, -1)
            apply([a + (GAMMA / EPS) * (b - a) for a, b in zip(g1, g2)])

        def sam():
            g1 = grads()
            norm = torch.sqrt(sum((g * g).sum() for g in g1))
            e = [RHO * g / (norm + 1e-12) for g in g1]
            shift(e, 1)
            g2 = grads()
            shift(e, -1)
            apply(g2)

        def db():
            l = loss()
            g1 = torch.autograd.grad(l, params, create_graph=True)
            penalty = 0.5 * sum((g * g).sum() for g in g1)
            apply(torch.autograd.grad(l + GAMMA * penalty, params))

        return {"SGD": sgd, "F-GR": fgr, "SAM": sam, "DB": db}[method]

    return {m: build(m) for m in METHODS}


# ---------------------------------------------------------------------------------------------- JAX
def jax_steps(model, x_np, y_np):
    import jax
    import jax.numpy as jnp
    import optax

    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    key = jax.random.PRNGKey(0)

    def dense(k, n_in, n_out):
        return {"w": jax.random.normal(k, (n_in, n_out), jnp.float32) / jnp.sqrt(n_in),
                "b": jnp.zeros((n_out,), jnp.float32)}

    if model == "mlp":
        ks = jax.random.split(key, 3)
        init = [dense(ks[0], 784, 256), dense(ks[1], 256, 256), dense(ks[2], 256, 10)]

        def forward(p, x):
            h = jnp.tanh(x @ p[0]["w"] + p[0]["b"])
            h = jnp.tanh(h @ p[1]["w"] + p[1]["b"])
            return h @ p[2]["w"] + p[2]["b"]
    else:
        ks = jax.random.split(key, 4)
        init = [jax.random.normal(ks[0], (3, 3, 3, 16), jnp.float32) * 0.3,
                jax.random.normal(ks[1], (3, 3, 16, 32), jnp.float32) * 0.1,
                dense(ks[2], 8 * 8 * 32, 128), dense(ks[3], 128, 10)]

        def conv(x, k):
            return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

        def pool(x):
            b, h, w, c = x.shape
            return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

        def forward(p, x):
            h = pool(jax.nn.relu(conv(x, p[0])))
            h = pool(jax.nn.relu(conv(h, p[1])))
            h = h.reshape(h.shape[0], -1)
            h = jax.nn.relu(h @ p[2]["w"] + p[2]["b"])
            return h @ p[3]["w"] + p[3]["b"]

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(forward(p, x), y).mean()

    grad = jax.grad(loss)
    tmap = jax.tree_util.tree_map

    def sgd(p):
        return tmap(lambda a, g: a - LR * g, p, grad(p))

    def fgr(p):
        g1 = grad(p)
        g2 = grad(tmap(lambda a, g: a + EPS * g, p, g1))
        return tmap(lambda a, u, v: a - LR * (u + (GAMMA / EPS) * (v - u)), p, g1, g2)

    def db(p):
        def regularized(q):
            g = grad(q)
            return loss(q) + 0.5 * GAMMA * sum(jnp.vdot(t, t) for t in jax.tree_util.tree_leaves(g))
        return tmap(lambda a, g: a - LR * g, p, jax.grad(regularized)(p))

    sam_opt = optax.contrib.sam(optax.sgd(LR), optax.chain(optax.contrib.normalize(), optax.sgd(RHO)),
                                opaque_mode=True)

    def sam(state):
        p, s = state
        updates, s = sam_opt.update(grad(p), s, p, grad_fn=lambda q, _: grad(q))
        return optax.apply_updates(p, updates), s

    def runner(fn, state):
        fn = jax.jit(fn)
        box = [state]

        def step():
            box[0] = fn(box[0])
            jax.block_until_ready(box[0])
        return step

    return {"SGD": runner(sgd, init), "F-GR": runner(fgr, init), "DB": runner(db, init),
            "SAM": runner(sam, (init, sam_opt.init(init)))}


GRADREG_NAMES = {"base (SGD)": "SGD", "ForwardDifference": "F-GR", "SAM": "SAM", "DoubleBackprop": "DB"}
COLUMNS = ["gradreg, pure Go", "gradreg, pure Go + grgrad", "gradreg, XLA CPU", "gradreg, XLA CPU + grgrad",
           "PyTorch CPU", "JAX CPU"]
XLA_GRDOT = COLUMNS[3]  # the column compared with PyTorch and JAX


def table(path):
    """Prints the Markdown tables of run.sh from the JSON lines in path (medians over all rounds)."""
    import statistics

    times = {}  # (model, column, method) → {"cpu": [...], "wall": [...]}
    threads, versions = set(), {}
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if d["framework"] == "gradreg":
                column = COLUMNS[2] if d["backend"].startswith("XLA") else COLUMNS[0]
                if d["backend"].endswith("+ grgrad"):  # bench -gradients=both: grgrad's gradients of matrix products
                    column = COLUMNS[COLUMNS.index(column) + 1]
                method = GRADREG_NAMES.get(d["method"])
                if method is None:
                    continue
            else:
                column = {"pytorch": COLUMNS[4], "jax": COLUMNS[5]}[d["framework"]]
                method = d["method"]
            threads.add(d["threads"])
            t = times.setdefault((d["model"], column, method), {"cpu": [], "wall": []})
            t["cpu"] += d["cpu_ms"]
            t["wall"] += d["wall_ms"]
    med = {k: {m: statistics.median(v[m]) for m in v} for k, v in times.items()}
    rounds = {k: len(v["cpu"]) for k, v in times.items()}
    titles = {"mlp": "MLP 784-256-256-10, batch 64", "cnn": "dconv CNN, batch 32"}
    for model in ["mlp", "cnn"]:
        if not any(k[0] == model for k in med):
            continue
        for kind, what in [("cpu", "process CPU time"), ("wall", "wall time")]:
            n = sorted({rounds[k] for k in rounds if k[0] == model})
            print(f"\n{titles[model]}, float32, {what} per step in ms (median of {'/'.join(map(str, n))} steps) "
                  f"and × the framework's own SGD; threads {'/'.join(map(str, sorted(threads)))}.\n")
            print("| method | " + " | ".join(COLUMNS) + " | gradreg XLA + grgrad ÷ PyTorch | gradreg XLA + grgrad ÷ JAX |")
            print("|---|" + "---:|" * (len(COLUMNS) + 2))
            for method in METHODS:
                cells = []
                for col in COLUMNS:
                    v, base = med.get((model, col, method)), med.get((model, col, "SGD"))
                    cells.append("—" if v is None else f"{v[kind]:.2f} ({v[kind] / base[kind]:.2f}×)")
                xla = med.get((model, XLA_GRDOT, method))
                for peer in COLUMNS[4:]:
                    p = med.get((model, peer, method))
                    cells.append("—" if xla is None or p is None else f"{xla[kind] / p[kind]:.2f}×")
                print(f"| {method} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", metavar="JSONL", help="print the Markdown tables of the times in this file and exit")
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--frameworks", default="pytorch,jax")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    if args.table:
        table(args.table)
        return
    import numpy as np

    threads = os.cpu_count()
    runs = []  # (framework, model, method, step)
    for model in args.models.split(","):
        if model not in MODELS:
            sys.exit(f"peers.py: unknown model {model!r}: valid values are mlp|cnn")
        x, y = data(model, np.random.default_rng(1))
        for fw in args.frameworks.split(","):
            if fw == "pytorch":
                import torch
                torch.set_num_threads(threads)
                steps = torch_steps(model, x, y)
            elif fw == "jax":
                steps = jax_steps(model, x, y)
            else:
                sys.exit(f"peers.py: unknown framework {fw!r}: valid values are pytorch|jax")
            runs += [(fw, model, m, steps[m]) for m in METHODS]
    for run in runs:
        for _ in range(args.warmup):
            run[3]()
    cpu = {r[:3]: [] for r in runs}
    wall = {r[:3]: [] for r in runs}
    for _ in range(args.rounds):
        for run in runs:
            w0, c0 = time.perf_counter(), time.process_time()
            run[3]()
            c1, w1 = time.process_time(), time.perf_counter()
            cpu[run[:3]].append((c1 - c0) * 1e3)
            wall[run[:3]].append((w1 - w0) * 1e3)
    for key in cpu:
        fw, model, method = key
        print(json.dumps({"framework": fw, "model": model, "method": method, "threads": threads,
                          "cpu_ms": cpu[key], "wall_ms": wall[key]}), flush=True)


if __name__ == "__main__":
    main()
