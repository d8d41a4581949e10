"""One training step (paper Algorithm 1 with double sampling; ``docs/design.md``).

Every objective of the phase draws its own minibatch, split into two disjoint halves, read and
padded in this process or ahead of time by loader workers (:mod:`osoup.train.prefetch`); each
half's loss (:func:`osoup.train.loss.half_loss`) is handed to the update rule (a Soup, or
HeadsOnly). Then, in order: data-parallel reduction (and fp16 unscaling), one finiteness check
of every loss and gradient (the step's one host synchronisation), the λ update and combined
direction (``update.step``), clipping, and the optimizers' steps. A step whose losses or
gradients are not finite changes nothing: no parameter, buffer, optimizer or λ change.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from osoup.nets.model import SoupModel
from osoup.train import distributed as D
from osoup.train import loss as L
from osoup.train.amp import LossScaler, autocast
from osoup.train.batch import ReadyHalf, StepBatch
from osoup.train.data import TrainData
from osoup.train.phase_setup import PhaseSetup
from osoup.train.phases import Phase
from osoup.train.prefetch import StepSource


class Outcome(enum.Enum):
    TAKEN = "taken"
    SKIPPED = "skipped"  # a non-finite loss or gradient
    OVERFLOW = "overflow"  # fp16: the scaled gradients overflowed, the loss scale was halved


@dataclass
class StepResult:
    """``losses``: each objective's loss (mean of its halves; global under torchrun);
    ``stats``: what ``update.step`` reported (λ, η, conflict probes); ``reason``: for a
    skipped step, what was not finite."""

    outcome: Outcome
    losses: list[float]
    frames: int
    stats: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    data_wait: float = 0.0  # seconds the step waited for its input (osoup.train.prefetch)


def forward_backward(model: SoupModel, phase: Phase, update: Any, batch: StepBatch, cfg: Any, scale: float,
                     device: torch.device, distributed: bool, data: TrainData) -> tuple[torch.Tensor, int]:
    """Both halves of every objective's minibatch(es) (``batch``, in the order of
    :func:`osoup.train.data.draw_step`) through the model and into ``update``; returns the
    objectives' losses (a device tensor, no sync) and the frames seen."""
    losses, frames = [], 0
    for k, ((name, idx), hb) in enumerate(zip(batch.plan, batch.halves)):
        with autocast(device, cfg.amp):
            loss, n = L.half_loss(model, name, ReadyHalf(data.train_sets[name], hb), idx, device, distributed)
        update.backward(name, k % 2, loss * (scale / cfg.accum_grad) if scale != 1.0 else loss / cfg.accum_grad)
        losses.append(loss.detach())
        frames += n
    return torch.stack(losses).view(len(phase.objectives), -1).float().mean(1), frames


def reduce_gradients(update: Any, shared: list, heads: list, per_t: torch.Tensor, grads: list[torch.Tensor],
                     scale: float, distributed: bool) -> None:
    """Sum over ranks: the update's pending per-objective gradients and losses in ONE collective
    before λ, then the other gradients in buckets; with fp16, unscale all of them (a scaled
    Gramian would change MoDo's step size γ)."""
    if not (distributed or scale != 1.0):
        return

    def reduce(ts: list[torch.Tensor]) -> None:
        D.all_reduce_fused(ts)
        if scale != 1.0:
            torch._foreach_mul_(ts, 1.0 / scale)  # the update's losses were scaled too

    update.reduce_pending(reduce)
    direct = {id(p) for p in update.direct_params()}
    D.all_reduce_buckets([p.grad for p in shared if p.grad is not None and id(p) in direct]
                         + [p.grad for p in heads if p.grad is not None] + [per_t])
    if scale != 1.0 and grads:
        torch._foreach_mul_(grads, 1.0 / scale)


def all_finite(losses: torch.Tensor, *tensor_lists: Sequence[torch.Tensor]) -> torch.Tensor:
    """A device bool: every loss and every gradient entry is finite (no host sync)."""
    flags = [torch.isfinite(losses).all()]
    grads = [t for ts in tensor_lists for t in ts if t.numel() > 0]
    if grads:
        norms = torch._foreach_norm(grads)  # inf/nan anywhere makes the norm non-finite
        flags.append(torch.isfinite(torch.stack([n.float() for n in norms])).all())
    return torch.stack(flags).all()


def describe_nonfinite(model: SoupModel, objectives: list[str], losses: list[float]) -> str:
    """Which objective made the step non-finite: its loss, else its head's gradient, else θ's."""
    bad = [n for n, v in zip(objectives, losses) if not math.isfinite(v)]
    if bad:
        return "non-finite loss of " + ",".join(bad)
    bad = [n for n in objectives if any(p.grad is not None and not bool(torch.isfinite(p.grad).all())
                                        for p in model.objective_head_parameters(n))]
    if bad:
        return "non-finite gradient of " + ",".join(bad)
    return "non-finite gradient of the shared backbone (losses finite: " + ",".join(objectives) + ")"


def clip_gradients(shared: Sequence[torch.nn.Parameter], heads: Mapping[str, Sequence[torch.nn.Parameter]],
                   max_norm: float) -> None:
    """Clip θ's combined gradient, then each head's gradient on its own: heads are independent
    (eq. 14), so one head's large gradient must not shrink another's."""
    if max_norm <= 0:
        return
    if shared:
        torch.nn.utils.clip_grad_norm_(shared, max_norm)
    for params in heads.values():
        if params:
            torch.nn.utils.clip_grad_norm_(params, max_norm)


def check_lambda(stats: Mapping[str, Any]) -> None:
    """Under torchrun: λ must be bit-identical on every rank (else the ranks diverge)."""
    lams = [v for k, v in stats.items() if k.startswith("lambda/")]
    if lams:
        D.assert_same_on_all_ranks(torch.cat([v.flatten().float() for v in lams]), "λ")


def _drop(model: SoupModel, update: Any, buffers_before: list) -> None:
    """Forget a dropped step: its gradients, and the buffers (BatchNorm statistics) its forward
    passes changed. λ and the update's step counter are untouched."""
    update.zero_grad()
    with torch.no_grad():
        for b, saved in buffers_before:
            b.copy_(saved)


def train_step(model: SoupModel, phase: Phase, setup: PhaseSetup, data: TrainData, cfg: Any, scaler: LossScaler,
               device: torch.device, dist: D.DistContext, epoch: float, verify_lambda: bool = False,
               source: StepSource | None = None) -> StepResult:
    """One step of ``phase`` at fractional epoch ``epoch``. ``verify_lambda``: under torchrun,
    check λ on every rank after its update. ``source``: where the input comes from (default:
    read in this process from ``data``'s samplers)."""
    batch, wait = (source or StepSource(data, phase.objectives, cfg.accum_grad)).next()
    batch = batch.to(device)
    update = setup.update
    update.zero_grad()
    for opt, _ in setup.optimizers():
        opt.zero_grad(set_to_none=True)
    update.begin_step(epoch)
    buffers_before = [(b, b.detach().clone()) for b in model.buffers()]
    scale = scaler.scale
    per_t, frames = forward_backward(model, phase, update, batch, cfg, scale, device, dist.enabled, data)
    shared = model.shared_parameters()
    heads = {n: model.objective_head_parameters(n) for n in phase.objectives}
    head_list = [p for ps in heads.values() for p in ps]
    grads = [p.grad for p in shared + head_list if p.grad is not None]
    reduce_gradients(update, shared, head_list, per_t, grads, scale, dist.enabled)
    # before update.step: a NaN Gramian must never reach the λ update
    finite = all_finite(per_t, update.pending_buffers(), grads)
    flags = torch.cat([finite.float().view(1), per_t.detach()]).tolist()  # the step's one host sync
    losses = flags[1:]
    if flags[0] != 1.0:
        overflow = scale > 1.0 and all(math.isfinite(v) for v in losses)
        reason = "" if overflow else describe_nonfinite(model, phase.objectives, losses)
        _drop(model, update, buffers_before)
        if overflow:
            scaler.update(overflow=True)
        return StepResult(Outcome.OVERFLOW if overflow else Outcome.SKIPPED, losses, frames, reason=reason,
                          data_wait=wait)
    stats = update.step(epoch)
    scaler.update(overflow=False)
    if dist.enabled and verify_lambda:
        check_lambda(stats)
    clip_gradients(shared, heads, cfg.grad_clip)
    for opt, _ in setup.optimizers():
        opt.step()
    return StepResult(Outcome.TAKEN, losses, frames, stats, data_wait=wait)
