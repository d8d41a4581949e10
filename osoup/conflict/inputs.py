"""What one conflict analysis reads: the data settings (the experiment's ``config.yaml`` unless
overridden) and the objectives (the experiment's ``objectives.json`` unless overridden),
checked against the trained model. Layout of the experiment dir: ``docs/design.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from osoup.fileio import DataError
from osoup.nets.model import SSL_OBJECTIVE, SoupModel
from osoup.train.experiment import read_config


@dataclass
class DataSettings:
    """Where the objectives' data lives and how it is batched (as in training)."""

    dump_dir: str
    token_dir: str
    ssl_sets: list[str]
    train_split: str
    dev_split: str
    max_frames: int
    max_utts: int
    st_units: str = ""

    def split_name(self, split: str) -> str:
        """The data set name of ``split`` ("train" or "dev")."""
        return self.train_split if split == "train" else self.dev_split


def resolve_data_settings(
    exp_dir: str | Path,
    dump_dir: str | None = None,
    token_dir: str | None = None,
    ssl_sets: str | None = None,
    train_split: str | None = None,
    dev_split: str | None = None,
    max_frames: int | None = None,
    max_utts: int | None = None,
) -> DataSettings:
    """Each setting as given, else the experiment's ``config.yaml`` value, else the training
    command's default."""
    cfg = read_config(exp_dir)
    return DataSettings(
        dump_dir=dump_dir or cfg.get("dump_dir") or "dump",
        token_dir=token_dir or cfg.get("token_dir") or "data/token",
        ssl_sets=(ssl_sets if ssl_sets is not None else cfg.get("ssl_sets") or "").split(),
        train_split=train_split or cfg.get("train_split") or "train",
        dev_split=dev_split or cfg.get("dev_split") or "dev",
        max_frames=max_frames or int(cfg.get("max_frames") or 12000),
        max_utts=max_utts or int(cfg.get("max_utts") or 64),
        st_units=str(cfg.get("st_units") or ""),
    )


@dataclass
class ObjectiveChoice:
    """The objectives to analyse: ASR and translation languages and the SSL kind (or None)."""

    asr_langs: list[str]
    st_langs: list[str]
    ssl: str | None

    @property
    def count(self) -> int:
        return len(self.asr_langs) + len(self.st_langs) + (self.ssl is not None)


def resolve_objectives(
    meta: dict,
    model: SoupModel,
    where: str | Path,
    asr_langs: str | None = None,
    st_langs: str | None = None,
    ssl: str | None = None,
) -> ObjectiveChoice:
    """Languages (space-separated) and SSL kind ("none": no SSL) as given, else the
    experiment's (``meta`` is its objectives.json); every one must exist in the model, and
    at least two objectives must remain."""
    names = meta["objectives"]
    asr = asr_langs.split() if asr_langs is not None else [n[4:] for n in names if n.startswith("asr_")]
    st = st_langs.split() if st_langs is not None else [n[3:] for n in names if n.startswith("st_")]
    if ssl is not None:
        kind = None if ssl == "none" else ssl
    else:
        kind = meta.get("ssl") if SSL_OBJECTIVE in names else None
    missing = [n for n in [f"asr_{l}" for l in asr] + [f"st_{l}" for l in st] if n not in model.heads]
    if missing:
        raise DataError(f"{where}: the model has no head for {missing} (heads: {sorted(model.heads)})")
    if kind is not None and kind != model.ssl_kind:
        raise DataError(f"{where}: --ssl {kind} but the model was trained with ssl={model.ssl_kind}")
    choice = ObjectiveChoice(asr, st, kind)
    if choice.count < 2:
        raise DataError("conflict analysis needs at least two objectives")
    return choice
