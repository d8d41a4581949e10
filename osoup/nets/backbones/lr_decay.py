"""Layer-wise learning-rate decay over a backbone's layer groups (common practice when
fine-tuning a pretrained encoder such as XLS-R; ``docs/backbones.md``)."""
from __future__ import annotations

from typing import Mapping, Sequence

from torch.nn import Parameter


def layer_lr_scales(groups: Mapping[str, Sequence[Parameter]], decay: float) -> list[tuple[list[Parameter], float]]:
    """(parameters, learning-rate factor) per layer group, ``groups`` ordered bottom to top as
    ``layer_groups()`` returns them: the top group gets 1, each group below ``decay`` times the
    one above it. ``decay`` 1 gives every group 1."""
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"layer-wise lr decay must be in (0, 1], got {decay}")
    ordered = [list(ps) for ps in groups.values()]
    n = len(ordered)
    return [(ps, decay ** (n - 1 - i)) for i, ps in enumerate(ordered)]
