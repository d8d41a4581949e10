"""Learning-rate schedules of a phase (osoup/train/phase_setup.py:make_scheduler)."""
from __future__ import annotations

import math

import pytest
import torch

from osoup.fileio import DataError
from osoup.train.phase_setup import make_scheduler


def _lrs(kind: str, epochs: int, n: int) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-3)
    sch = make_scheduler(opt, kind, step_size=3, patience=1, epochs=epochs)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    return out


def test_cosine_follows_the_half_cosine_to_one_percent_and_stays_there():
    got = _lrs("cosine", epochs=8, n=11)
    want = [2e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(e, 8) / 8))) for e in range(11)]
    assert got == pytest.approx(want, rel=1e-12)
    assert got[0] == pytest.approx(2e-3) and got[8] == pytest.approx(2e-5) and got[10] == pytest.approx(2e-5)


def test_cosine_scheduler_resumes_from_its_state():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sch = make_scheduler(opt, "cosine", 1, 1, epochs=6)
    for _ in range(2):
        opt.step()
        sch.step()
    state, lr = sch.state_dict(), opt.param_groups[0]["lr"]
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sch2 = make_scheduler(opt2, "cosine", 1, 1, epochs=6)
    sch2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = lr  # the optimizer's own state holds it in a checkpoint
    opt.step(), sch.step(), opt2.step(), sch2.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_step_schedule_and_unknown_kind():
    assert _lrs("step", epochs=8, n=7) == pytest.approx([2e-3] * 3 + [2e-4] * 3 + [2e-5])
    with pytest.raises(DataError, match="cosine"):
        make_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), "noam", 1, 1)
