"""The experiment-directory contract (osoup.train.experiment): file names, discovery, model
loading with clear errors for missing, truncated or mismatched files, and the packed model."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from osoup.fileio import DataError
from osoup.train import experiment as E
from test_conflict import _fake_experiment


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_layout_names_and_writers():
    assert E.epoch_checkpoint_name(7) == "checkpoint.7.pt"
    assert E.average_name(5) == "avg5.pt"
    assert E.train_log_name(0) == "train.log" and E.train_log_name(2) == "train.rank2.log"
    assert E.trace_name() == "trace.jsonl" and E.trace_name(1) == "trace.rank1.jsonl"
    assert E.hyp_path("exp/a", "beam10", "test_fr", "st") == Path("exp/a/decode_beam10/test_fr/hyp.st")
    assert E.decode_dir("exp/a", "greedy") / E.DECODE_CONF == Path("exp/a/decode_greedy/decode.yaml")
    for name in (E.CONFIG, E.OBJECTIVES, E.BEST, E.LATEST, "checkpoint.12.pt", "avg3.pt", E.TRAIN_SUMMARY,
                 E.train_log_name(3), E.trace_name(), E.trace_name(2), E.TENSORBOARD):
        assert E.written_by(name) == "osoup-train (recipe stage 6)", name
    assert "stage 7" in E.written_by("hyp.asr") and "stage 7" in E.written_by(E.DECODE_CONF)
    assert "stage 8" in E.written_by(E.RESULTS_JSON) and "stage 8" in E.written_by(E.RESULTS_MD)
    assert "--pack-out" in E.written_by(E.PACKED)
    assert "not a file of the experiment layout" in E.written_by("checkpoint.x.pt")


def test_hyp_files_and_model_files(tmp_path):
    for rel in ("decode_greedy/test_fr/hyp.asr", "decode_greedy/test_fr/hyp.st", "decode_beam4/test_en/hyp.asr",
                "decode_beam4/test_en/hyp.xx", "decode_beam4/test_en/ref.asr", "other/test_en/hyp.asr"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("u1 a\n", encoding="utf-8")
    found = [(h.dtag, h.set_name, h.task, h.path.relative_to(tmp_path).as_posix()) for h in E.hyp_files(tmp_path)]
    assert found == [
        ("beam4", "test_en", "asr", "decode_beam4/test_en/hyp.asr"),
        ("beam4", "test_en", "xx", "decode_beam4/test_en/hyp.xx"),  # kept: the scorer reports unknown tasks
        ("greedy", "test_fr", "asr", "decode_greedy/test_fr/hyp.asr"),
        ("greedy", "test_fr", "st", "decode_greedy/test_fr/hyp.st"),
    ]
    assert E.hyp_path(tmp_path, "greedy", "test_fr", "st") == tmp_path / found[3][3]
    for name in ("checkpoint.2.pt", "checkpoint.10.pt", "latest.pt", "avg10.pt", "avg2.pt", "best.pt",
                 "model.pack.pt", ".best.pt.x.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert E.model_files(tmp_path) == ["best.pt", "avg2.pt", "avg10.pt", "latest.pt", "checkpoint.10.pt",
                                       "checkpoint.2.pt"]
    assert [p.name for p in E.epoch_checkpoints(tmp_path)] == ["checkpoint.2.pt", "checkpoint.10.pt"]


def test_load_experiment_model_matches_saved_weights(tmp_path):
    exp, meta = _fake_experiment(tmp_path)
    saved = torch.load(exp / "best.pt", weights_only=False)
    model, got_meta = E.load_experiment_model(exp)
    assert got_meta == meta
    assert not model.training and model.specaug is None
    state = model.state_dict()
    assert set(state) == set(saved["model"])
    assert all(torch.equal(state[k], saved["model"][k]) for k in state)
    model2, toks = E.load_experiment(exp, E.BEST)
    assert sorted(toks) == sorted(meta["token_dirs"])
    assert all(toks[n].vocab_size == model2.heads[n].vocab_size for n in toks)


def test_truncated_checkpoint_is_one_error_naming_file_and_others(tmp_path):
    exp, _ = _fake_experiment(tmp_path)
    shutil.copy(exp / "best.pt", exp / "checkpoint.3.pt")
    _truncate(exp / "best.pt")
    with pytest.raises(DataError) as e:
        E.load_experiment_model(exp, "best.pt")
    msg = _one_line(e)
    assert msg.startswith(f"{exp / 'best.pt'}: cannot read this model checkpoint (")
    assert "truncated or corrupt" in msg and "other model files in" in msg and "checkpoint.3.pt" in msg
    assert "failed reading zip archive" in msg and "miniz" not in msg  # torch's reason, first sentence only
    E.load_experiment_model(exp, "checkpoint.3.pt")  # the one it names loads
    (exp / "checkpoint.3.pt").write_bytes(b"not a zip file at all")
    with pytest.raises(DataError) as e:
        E.load_experiment_model(exp, "checkpoint.3.pt")
    assert "checkpoint.3.pt: cannot read" in _one_line(e) and "best.pt" in str(e.value)


def test_missing_files_name_the_stage_that_writes_them(tmp_path):
    exp, _ = _fake_experiment(tmp_path)
    with pytest.raises(DataError) as e:
        E.load_experiment_model(exp, "avg5.pt")
    assert _one_line(e) == (f"{exp / 'avg5.pt'}: not found (written by osoup-train (recipe stage 6)); "
                            f"other model files in {exp}: best.pt (choose one with --model)")
    (exp / "objectives.json").unlink()
    with pytest.raises(DataError, match=r"objectives.json: not found \(written by osoup-train \(recipe stage 6\)\)"):
        E.load_experiment_model(exp)
    with pytest.raises(DataError, match=r"model.pack.pt: packed model not found \(written by osoup-decode --exp-dir EXP"):
        E.read_packed(exp / "model.pack.pt")


def test_checkpoint_that_is_not_a_model_or_does_not_fit(tmp_path):
    exp, _ = _fake_experiment(tmp_path)
    ckpt = torch.load(exp / "best.pt", weights_only=False)
    torch.save({"model": ckpt["model"]}, exp / "latest.pt")
    with pytest.raises(DataError) as e:
        E.load_experiment_model(exp, "latest.pt")
    assert "latest.pt: not a model checkpoint (no 'model_conf')" in _one_line(e)
    conf = dict(ckpt["model_conf"], encoder_conf=dict(ckpt["model_conf"]["encoder_conf"], n_blocks=3))
    torch.save({"model": ckpt["model"], "model_conf": conf}, exp / "latest.pt")
    with pytest.raises(DataError) as e:
        E.load_experiment_model(exp, "latest.pt")
    assert "latest.pt: its weights do not fit its model_conf (" in _one_line(e) and "missing" in str(e.value)


def test_objectives_and_config_errors(tmp_path):
    exp, _ = _fake_experiment(tmp_path)
    assert E.read_config(exp)["max_utts"] == 4
    (exp / "config.yaml").write_text("a: [1,\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        E.read_config(exp)
    assert _one_line(e).startswith(f"{exp / 'config.yaml'}: not valid YAML")
    (exp / "config.yaml").unlink()
    assert E.read_config(exp) == {}
    (exp / "objectives.json").write_text('{"objectives": []}', encoding="utf-8")
    with pytest.raises(DataError, match="objectives.json: no 'objectives' list"):
        E.read_objectives(exp)


def test_packed_model_round_trip(tmp_path):
    exp, meta = _fake_experiment(tmp_path)
    for d in meta["token_dirs"].values():  # stage 5 leaves its marker in every token dir
        (Path(d) / ".done").write_text("signature\n", encoding="utf-8")
    pack = tmp_path / "model.pack.pt"
    E.write_packed(exp, "best.pt", pack)
    assert not list(tmp_path.glob(".model.pack.pt*"))  # no temp file left
    model, toks = E.read_packed(pack)
    ref, ref_toks = E.load_experiment(exp)
    assert not model.training and model.specaug is None
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    assert sorted(toks) == sorted(ref_toks) == sorted(meta["token_dirs"])
    for name, tok in toks.items():
        assert not tok.dir.exists()  # tokenizers were read into memory from a removed temp dir
        ids = ref_toks[name].encode("the cat sat on a mat")
        assert tok.encode("the cat sat on a mat") == ids and tok.decode(ids) == ref_toks[name].decode(ids)
    feats = torch.randn(1, 120, 80)
    with torch.no_grad():
        a = model.log_probs("st_fr", feats, torch.tensor([120]))[0]
        b = ref.log_probs("st_fr", feats, torch.tensor([120]))[0]
    assert torch.allclose(a, b)


def test_packed_model_corrupt_or_incomplete(tmp_path):
    exp, _ = _fake_experiment(tmp_path)
    pack = tmp_path / "model.pack.pt"
    E.write_packed(exp, "best.pt", pack)
    obj = torch.load(pack, weights_only=False)
    del obj["tokenizers"]["asr_en"]["tokens.txt"]
    bad = tmp_path / "bad.pack.pt"
    torch.save(obj, bad)
    with pytest.raises(DataError) as e:
        E.read_packed(bad)
    assert "packed tokenizer 'asr_en' is incomplete or malformed (missing tokens.txt)" in _one_line(e)
    torch.save({"model": obj["model"]}, bad)
    with pytest.raises(DataError, match="bad.pack.pt: not a packed model \\(no 'model_conf', 'tokenizers'\\)"):
        E.read_packed(bad)
    _truncate(pack)
    with pytest.raises(DataError) as e:
        E.read_packed(pack)
    msg = _one_line(e)
    assert msg.startswith(f"{pack}: cannot read this packed model (") and "truncated or corrupt" in msg
    assert "re-create it with osoup-decode --exp-dir EXP --pack-out FILE" in msg


def test_pack_needs_the_token_dirs(tmp_path):
    exp, meta = _fake_experiment(tmp_path)
    shutil.rmtree(meta["token_dirs"]["asr_fr"])
    with pytest.raises(DataError) as e:
        E.write_packed(exp, "best.pt", tmp_path / "p.pt")
    assert f"token dir {meta['token_dirs']['asr_fr']} of asr_fr not found" in _one_line(e)
    assert "osoup-train-spm, recipe stage 5" in str(e.value) and not (tmp_path / "p.pt").exists()
