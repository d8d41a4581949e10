"""The training methods the core knows, and the paper's default penalty schedules.

A *method* is how the shared parameters' update combines the objectives (paper §3-4):
``vs`` (flat MoDo), ``vc`` (SSL as a penalised lower level), ``vm`` (multilevel), and the
single-level combinations ``joint``, ``mean``, ``static`` and ``ssl``. (A *recipe* is a
directory under ``egs/``.)
"""
from __future__ import annotations

from osoup.moo.schedule import PenaltySchedule

METHODS = ("vs", "vc", "vm", "joint", "mean", "static", "ssl")
PENALISED_METHODS = ("vc", "vm", "joint")

# The paper's schedules (appendix E): η(e) = min(init + rate·e, cap) per epoch e.
VC_PENALTY = PenaltySchedule(0.0, 0.02, 1.5)  # vc and joint: the SSL level's η
VM_PENALTY_FIRST = PenaltySchedule(0.1, 0.02, 1.5)  # vm: η_1, between levels 1 and 2
VM_PENALTY_REST = PenaltySchedule(0.0, 0.02, 1.5)  # vm: η_2, η_3, ...


def default_penalties(method: str, n_levels: int = 2) -> list[PenaltySchedule]:
    """The paper's penalty schedules of ``method`` with ``n_levels`` levels (one per level
    below the first); empty for methods without penalties."""
    if method in ("vc", "joint"):
        return [VC_PENALTY]
    if method == "vm":
        return [VM_PENALTY_FIRST] + [VM_PENALTY_REST] * max(0, n_levels - 2)
    return []
