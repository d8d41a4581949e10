"""Parse the ``--levels`` hierarchy of the multilevel method (vm).

Grammar: groups separated by ``>``, highest priority first; inside a group, comma-separated
tokens. A token is an objective name (``asr_fr``, ``st_de``, ``ssl``), a task selector (``asr``:
every objective ``asr_*``) or a language selector (``zh``: every objective ``*_zh``). Objective
names follow ``<task>_<lang>``; the SSL objective has no such structure and is named as is.

    asr>st>ssl              UAS          st>asr>ssl      USA
    en>zh>ssl               UEC          zh>en>ssl       UCE
    asr_en,asr_fr>st>ssl    custom groups, any number of levels

Every objective must appear exactly once, and the SSL objective (when present) alone in the
last group. Anything else is a ValueError naming the offending token and the reason.
"""
from __future__ import annotations


def _select(token: str, objectives: list[str], ssl: str | None) -> list[str]:
    if token in objectives:
        return [token]
    supervised = [o for o in objectives if o != ssl]
    by_task = [o for o in supervised if o.startswith(token + "_")]
    by_lang = [o for o in supervised if o.endswith("_" + token)]
    if by_task and by_lang:
        raise ValueError(
            f"levels: token {token!r} is ambiguous: it selects the task objectives {by_task} "
            f"and the language objectives {by_lang}; name the objectives instead"
        )
    if not by_task and not by_lang:
        raise ValueError(
            f"levels: unknown token {token!r}: it is not an objective, a task or a language "
            f"of the objectives {objectives}"
        )
    return by_task or by_lang


def parse_levels(spec: str, objectives: list[str], ssl: str | None = "ssl") -> list[list[str]]:
    """Split ``objectives`` into priority levels following ``spec`` (highest first).

    Inside a level the objectives keep their order in ``objectives``, so the same grouping
    written in another token order gives the same λ indexing.
    """
    if len(set(objectives)) != len(objectives):
        dup = sorted({o for o in objectives if objectives.count(o) > 1})
        raise ValueError(f"levels: objective list has duplicates: {dup}")
    if not spec or not spec.strip():
        raise ValueError("levels: empty spec; expected e.g. 'asr>st>ssl'")
    order = {name: i for i, name in enumerate(objectives)}
    owner: dict[str, str] = {}
    levels: list[list[str]] = []
    for g, group in enumerate(spec.split(">"), start=1):
        if not group.strip():
            raise ValueError(f"levels: empty group {g} in {spec!r}")
        chosen: list[str] = []
        for token in (t.strip() for t in group.split(",")):
            if not token:
                raise ValueError(f"levels: empty token in group {g} ({group.strip()!r}) of {spec!r}")
            for name in _select(token, objectives, ssl):
                if name in owner:
                    raise ValueError(
                        f"levels: token {token!r} places objective {name!r} a second time "
                        f"(already placed by {owner[name]!r}); every objective must appear once"
                    )
                owner[name] = token
                chosen.append(name)
        levels.append(sorted(chosen, key=order.__getitem__))
    missing = [o for o in objectives if o not in owner]
    if missing:
        raise ValueError(f"levels: {spec!r} leaves out the objectives {missing}; every objective must appear once")
    if ssl is not None and ssl in order:
        if levels[-1] != [ssl]:
            where = next(i for i, lv in enumerate(levels, start=1) if ssl in lv)
            raise ValueError(
                f"levels: token {owner[ssl]!r} puts the SSL objective {ssl!r} in group {where} "
                f"with {[o for o in levels[where - 1] if o != ssl] or 'other groups after it'}; "
                f"SSL must be alone in the last group"
            )
    return levels
