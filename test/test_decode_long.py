"""Decoding very short and very long audio: empty hypotheses for audio under 7 frames,
chunked encoding with bounded window size for long audio, one bad file never loses the others."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from osoup.bin.decode import audio_features, decode_mats
from osoup.decode.chunked import chunked_best_path, chunked_log_probs, output_frames, plan_windows
from osoup.decode.ctc import greedy_search

HEAD = "asr_fr"
ENCODER_CONF = dict(idim=80, d_model=32, n_heads=2, n_blocks=1, ff_mult=2, conv_kernel=5,
                    conv_norm="batch", dropout=0.0, subsampling_channels=8)


# -- fixtures shared with test_io_errors.py ------------------------------------------------------
def tiny_model(vocab_size: int, seed: int = 0):
    """A random SoupModel in eval mode with one head ``asr_fr``."""
    from osoup.nets.model import SoupModel

    torch.manual_seed(seed)
    return SoupModel(encoder_conf=ENCODER_CONF, head_vocab={HEAD: vocab_size}).eval()


def packed_model(root: Path) -> Path:
    """``root/model.pack.pt`` as ``osoup-decode --pack-out`` writes it (char tokenizer)."""
    from osoup.text.spm import train_spm
    from osoup.text.tokenizer import Tokenizer
    from osoup.train.checkpoint import save_atomic

    tok_dir = root / HEAD
    train_spm(["le chat noir dort", "un petit chien", "bonjour tout le monde"], tok_dir, "asr", "fr",
              vocab_size=20, model_type="char")
    vocab = Tokenizer(tok_dir).vocab_size
    files = {f.name: f.read_bytes() for f in tok_dir.iterdir() if f.is_file()}
    out = root / "model.pack.pt"
    save_atomic({"model": tiny_model(vocab).state_dict(),
                 "model_conf": {"encoder_conf": ENCODER_CONF, "head_vocab": {HEAD: vocab}},
                 "tokenizers": {HEAD: files}}, out)
    return out


def write_wav(path: Path, seconds: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
    return path


class IdTokenizer:
    """Token ids as text, so that hypotheses can be compared id by id."""

    def decode(self, ids) -> str:
        return " ".join(str(i) for i in ids)


def _decode_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "osoup.bin.decode", *args], capture_output=True,
                          text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


# -- window plan -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n_frames", [0, 6, 7, 8, 11, 250, 251, 252, 253, 254, 255, 256, 999, 4003, 12345])
@pytest.mark.parametrize("chunk,context", [(100, 0), (100, 20), (64, 16), (10, 3)])
def test_windows_cover_every_output_frame_once(n_frames, chunk, context):
    windows = plan_windows(n_frames, chunk, context)
    kept = []
    for w in windows:
        assert w.start % 4 == 0 and 0 <= w.start <= w.end <= n_frames
        # The window's own output frames reach its kept ones, and map onto global frames.
        assert output_frames(w.end - w.start) >= w.keep_to
        kept.extend(range(w.start // 4 + w.keep_from, w.start // 4 + w.keep_to))
        # Bounded: never more than chunk + 2 x context (rounded to x4) + the front-end's reach.
        if len(windows) > 1:
            assert w.end - w.start <= 4 * (-(-chunk // 4) + 2 * -(-context // 4)) + 3
    assert kept == list(range(output_frames(n_frames)))


def test_short_input_is_one_plain_window():
    assert plan_windows(180, chunk=100, context=40) == [(0, 180, 0, output_frames(180))]
    with pytest.raises(ValueError, match="chunk"):
        plan_windows(100, chunk=0, context=0)


def _local_forward(feats, lengths):
    """A stand-in encoder whose output frame u reads only input frames 4u .. 4u+6."""
    x = feats[0].sum(dim=1)
    n = output_frames(x.shape[0])
    rf = torch.stack([x[4 * u:4 * u + 7] for u in range(n)]) if n else torch.zeros(0, 7)
    logits = torch.stack([rf.sum(1), rf[:, 0] - rf[:, 6], rf[:, 3], -rf.sum(1)], dim=1)
    return torch.log_softmax(logits, dim=-1)[None], torch.tensor([n])


@pytest.mark.parametrize("n_frames", [7, 300, 301, 302, 303, 2000])
def test_chunked_posteriors_equal_a_full_pass_for_a_local_encoder(n_frames):
    feats = torch.randn(n_frames, 80, generator=torch.Generator().manual_seed(n_frames))
    full, n = _local_forward(feats[None], torch.tensor([n_frames]))
    chunked = chunked_log_probs(_local_forward, feats, chunk=40, context=8)
    assert chunked.shape == full[0].shape
    assert torch.allclose(chunked, full[0], atol=1e-5)
    best = chunked_best_path(_local_forward, feats, chunk=40, context=8)
    assert torch.equal(best, full[0].argmax(-1))


# -- decode_mats with a real (tiny, random) model --------------------------------------------------
def _spy_encoder(model, seen: list[int]):
    forward = model.encoder.forward

    def spy(feats, lengths, causal=False):
        seen.append(feats.shape[1])
        return forward(feats, lengths, causal)

    model.encoder.forward = spy


def test_long_audio_encoder_sees_bounded_windows():
    model = tiny_model(12)
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((n, 80)).astype(np.float32) for n in (3000, 12000)]  # 30 s, 2 min
    seen: list[int] = []
    _spy_encoder(model, seen)
    with torch.inference_mode():
        greedy = decode_mats(model, HEAD, IdTokenizer(), mats, "greedy", 4, "cpu", chunk=200, context=40)
        beam = decode_mats(model, HEAD, IdTokenizer(), mats, "beam", 4, "cpu", chunk=200, context=40)
    # The largest encoder input does not grow with the audio: 2 min sees what 30 s sees.
    assert max(seen) <= 200 + 2 * 40 + 3
    assert len(seen) == 2 * (len(plan_windows(3000, 200, 40)) + len(plan_windows(12000, 200, 40)))
    # Greedy keeps ids only; beam search runs on the concatenated posteriors: same frames.
    forward = lambda x, lens: model.log_probs(HEAD, x, lens)  # noqa: E731
    for mat, text in zip(mats, greedy):
        lp = chunked_log_probs(forward, torch.from_numpy(mat), 200, 40)
        assert lp.shape[0] == output_frames(mat.shape[0])
        assert text == IdTokenizer().decode(greedy_search(lp[None], torch.tensor([lp.shape[0]]))[0])
    assert all(len(t) > 0 for t in greedy + beam)


def test_chunking_leaves_utterances_up_to_one_window_unchanged():
    model = tiny_model(12)
    rng = np.random.default_rng(1)
    mats = [rng.standard_normal((n, 80)).astype(np.float32) for n in (150, 283, 90)]
    with torch.inference_mode():
        plain = decode_mats(model, HEAD, IdTokenizer(), mats, "beam", 4, "cpu")
        chunked = decode_mats(model, HEAD, IdTokenizer(), mats, "beam", 4, "cpu", chunk=200, context=40)
    assert plain == chunked


def test_too_short_audio_gives_empty_hypothesis_with_warning(caplog):
    model = tiny_model(12)
    rng = np.random.default_rng(2)
    mats = [rng.standard_normal((n, 80)).astype(np.float32) for n in (3, 120, 0, 6)]
    with torch.inference_mode(), caplog.at_level(logging.WARNING):
        hyps = decode_mats(model, HEAD, IdTokenizer(), mats, "greedy", 4, "cpu",
                           names=["tiny_a", "normal", "empty_b", "six_c"])
        alone = decode_mats(model, HEAD, IdTokenizer(), mats[1:2], "greedy", 4, "cpu")
        # A batch made only of too-short audio (the old crash) decodes too.
        only_short = decode_mats(model, HEAD, IdTokenizer(), [mats[0], mats[3]], "beam", 4, "cpu")
    assert hyps[0] == hyps[2] == hyps[3] == "" and only_short == ["", ""]
    assert hyps[1] == alone[0] != ""
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for name in ("tiny_a", "empty_b", "six_c"):
        assert name in warned
    assert "normal" not in warned


def test_audio_features_in_pieces_equal_one_pass(tmp_path):
    from osoup.data.audio import load_audio
    from osoup.data.features import compute_fbank

    wav = write_wav(tmp_path / "a.wav", 3.0)
    whole = compute_fbank(load_audio(wav, 16000))
    pieces = audio_features(str(wav), piece_frames=37)
    assert pieces.shape == whole.shape == (298, 80)
    np.testing.assert_allclose(pieces, whole, rtol=1e-5, atol=1e-4)


# -- packed mode end to end ------------------------------------------------------------------------
def test_packed_short_and_bad_files_keep_the_others(tmp_path):
    pack = packed_model(tmp_path)
    good = write_wav(tmp_path / "good.wav", 1.5)
    short = write_wav(tmp_path / "short.wav", 0.05)  # 3 frames
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    out = tmp_path / "hyp.txt"
    r = _decode_cli("--packed", str(pack), "--head", HEAD, "--out", str(out), "--chunk-sec", "0.5",
                    "--chunk-context-sec", "0.1", str(good), str(short), str(bad))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("ERROR:")]
    assert len(errors) == 1 and "broken" in errors[0] and "good" not in errors[0]
    assert "short (" in r.stderr and "too short" in r.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [ln.split(" ", 1)[0] for ln in lines] == ["good", "short"]
    assert lines[1] == "short "


def test_negative_chunk_is_an_error(tmp_path):
    pack = packed_model(tmp_path)
    good = write_wav(tmp_path / "good.wav", 0.5)
    r = _decode_cli("--packed", str(pack), "--head", HEAD, "--chunk-sec", "-1", str(good))
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("ERROR: --chunk-sec")
