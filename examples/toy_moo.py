"""Plain PyTorch loop on a toy 3-objective regression; the method is one argument.

    python examples/toy_moo.py vs            # also: vc, vm, joint, mean
    python examples/toy_moo.py vm pcgrad     # any weighting of osoup.moo.WEIGHTINGS in the levels
    python examples/toy_moo.py vs modo 1     # layer selection: 1 of the 2 backbone layers is MOO
Objectives: two supervised regressions (task_a, task_b, each with its own head) sharing a
backbone, and a head-less "ssl" objective; only the Soup object changes between methods.
"""
import sys

import torch

from osoup.moo import make_soup, split_optimizers

torch.manual_seed(0)
method = sys.argv[1] if len(sys.argv) > 1 else "vs"
weighting = sys.argv[2] if len(sys.argv) > 2 else "modo"
moo_layers = int(sys.argv[3]) if len(sys.argv) > 3 else None
names = ["reg_a", "reg_b", "ssl"]
backbone = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh())
groups = {"layer0": list(backbone[0].parameters()), "layer1": list(backbone[2].parameters())}
heads = {n: torch.nn.Linear(16, 1) for n in names[:2]}
truth = {n: torch.randn(8, 1) for n in names[:2]}


def loss(name: str) -> torch.Tensor:
    x = torch.randn(32, 8)  # a fresh, independent draw for each half
    z = backbone(x)
    if name == "ssl":
        return (z.mean(0) ** 2).mean()  # toy unsupervised objective: centred features
    return ((heads[name](z) - x @ truth[name]) ** 2).mean()


head_params = {n: list(m.parameters()) for n, m in heads.items()}
soup = make_soup(method, list(backbone.parameters()), head_params, names, ssl="ssl",
                 levels="reg_a>reg_b>ssl" if method == "vm" else None,
                 modo={"gamma": 0.05} if method in ("vs", "vc", "vm") else None,
                 weighting=weighting, layer_groups=groups, moo_layers=moo_layers, conflict_interval=20)
opt_theta, opt_heads = split_optimizers(backbone.parameters(), head_params, 1e-2, 1e-2)
steps_per_epoch = 50
for step in range(500):
    soup.begin_step(step / steps_per_epoch)  # lower levels' weights known at backward time
    for name in soup.objectives:
        for half in (0, 1):
            soup.backward(name, half, loss(name))
    stats = soup.step(epoch=step / steps_per_epoch)
    opt_theta.step(), opt_heads.step()
    soup.zero_grad()
    if step % 100 == 99 and moo_layers:
        print(f"MOO layers: {soup.selected_layers}")
    if step % 100 == 99:
        with torch.no_grad():
            msg = " ".join(f"{n}={loss(n).item():.3f}" for n in names)
        print(f"step {step + 1} {msg} weights={[round(float(stats[f'weight/{n}']), 3) for n in names]}")
