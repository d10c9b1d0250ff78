#!/usr/bin/env python
"""Train a small MLP on scikit-learn's bundled digits (8x8 images, 10 classes; nothing is downloaded) with several
optimizers side by side, from the same initial weights and the same batches, and compare their loss curves.

    python examples/train_digits.py                              # adamgen's adamw next to torch.optim.AdamW
    python examples/train_digits.py my_adamw.py adamw --plot curves.png --lr 3e-3
    python examples/train_digits.py nadam torch:NAdam --epochs 5 --json losses.json

Each optimizer is either an adamgen variant (a built-in name or a spec file, run through adamgen.torch.Optimizer) or
`torch:<Class>` for a torch.optim class. Hyperparameters (--lr, --weight-decay) go to every optimizer; anything else
keeps each optimizer's default. Prints the loss curves, the final test accuracy, and with --plot saves them as a PNG
(needs matplotlib: pip install matplotlib, or ".[plot]" in a checkout of adamgen).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

import adamgen.torch


def load_digits(seed: int = 0):
    """Standardised digits as float32 tensors: (x_train, y_train, x_test, y_test), a fixed 80/20 split."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    x = data.data.astype(np.float32) / 16.0
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    mean, std = x[:split].mean(0), x[:split].std(0) + 1e-3
    x = (x - mean) / std
    return (torch.from_numpy(x[:split]), torch.from_numpy(y[:split]),
            torch.from_numpy(x[split:]), torch.from_numpy(y[split:]))


def make_model(seed: int = 0, hidden: int = 128) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, hidden),
                               torch.nn.Tanh(), torch.nn.Linear(hidden, 10))


def make_optimizer(name: str, params, **hyperparameters):
    """`torch:AdamW` -> torch.optim.AdamW; anything else -> adamgen.torch.Optimizer(params, variant=name)."""
    if name.startswith("torch:"):
        return getattr(torch.optim, name.split(":", 1)[1])(params, **hyperparameters)
    return adamgen.torch.Optimizer(params, variant=name, **hyperparameters)


def train(name: str, data, epochs: int = 10, batch_size: int = 128, seed: int = 0, **hyperparameters):
    """Train a fresh model (same seed, same batches for every optimizer); returns (per-step losses, test accuracy)."""
    x_train, y_train, x_test, y_test = data
    model = make_model(seed)
    optimizer = make_optimizer(name, model.parameters(), **hyperparameters)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    return losses, accuracy


def warm_up(name: str, data, seed: int = 0, **hyperparameters) -> None:
    """Two steps on a throwaway model: compiles (or loads from the cache) whatever the optimizer's first steps need."""
    x_train, y_train = data[0][:32], data[1][:32]
    model = make_model(seed)
    optimizer = make_optimizer(name, model.parameters(), **hyperparameters)
    for _ in range(2):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x_train), y_train).backward()
        optimizer.step()


def plot(curves: dict, path: str) -> None:
    """Loss curves on a log scale, saved as a PNG (matplotlib, the `plot` extra)."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit('--plot needs matplotlib: pip install matplotlib (or ".[plot]" in a checkout of adamgen)') \
            from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, losses in curves.items():
        axes.plot(range(1, len(losses) + 1), losses, label=name, linewidth=1.2)
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("training loss (cross-entropy)")
    axes.set_title("digits MLP: loss per step")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("optimizers", nargs="*", default=["adamw", "torch:AdamW"],
                        help="adamgen variants (names or spec files) or torch:<Class> (default: adamw torch:AdamW)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, help="default: each optimizer's own")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=20, help="print the losses every this many steps")
    parser.add_argument("--plot", metavar="PNG", help="save the loss curves as a PNG")
    parser.add_argument("--json", metavar="FILE", help="save the losses and accuracies as JSON")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny model: 1 is fastest)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = load_digits(args.seed)
    hyperparameters = {"lr": args.lr}
    if args.weight_decay is not None:
        hyperparameters["weight_decay"] = args.weight_decay
    curves, accuracies, setup = {}, {}, {}
    for name in args.optimizers:  # one-time costs (kernel compilation or cache loads, torch's first call) come first,
        start = time.perf_counter()  # timed apart, so that the training times compare the optimizers alone
        warm_up(name, data, args.seed, **hyperparameters)
        setup[name] = time.perf_counter() - start
    for name in args.optimizers:
        start = time.perf_counter()
        curves[name], accuracies[name] = train(name, data, args.epochs, args.batch_size, args.seed, **hyperparameters)
        print(f"{name}: {len(curves[name])} steps in {time.perf_counter() - start:.2f} s (setup before: "
              f"{setup[name]:.2f} s), final loss {curves[name][-1]:.4f}, test accuracy {accuracies[name]:.3f}")

    names = list(curves)
    width = max(12, *(len(n) for n in names))
    print("\nstep  " + "  ".join(f"{n:>{width}s}" for n in names))
    steps = len(curves[names[0]])
    for step in sorted({*range(0, steps, args.every), steps - 1}):
        print(f"{step + 1:4d}  " + "  ".join(f"{curves[n][step]:>{width}.6f}" for n in names))
    if len(names) > 1:
        first = np.array(curves[names[0]])
        for name in names[1:]:
            difference = np.abs(np.array(curves[name]) - first).max()
            print(f"largest loss difference {names[0]} vs {name}: {difference:.3g}")
    if args.plot:
        plot(curves, args.plot)
        print(f"saved {args.plot}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"losses": curves, "test_accuracy": accuracies, "settings": vars(args)}, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
