"""Pretrained speech backbones (osoup/nets/backbones, docs/backbones.md): tiny random wav2vec 2.0,
HuBERT and WavLM checkpoints saved in a temp dir and reloaded through the registry.

Frame counts, padding, layer groups, a ``vm`` step on the real SoupModel against its closed form
(θ moves by the combined direction, a frozen feature encoder does not move), the wav2vec 2.0
loss against transformers' own ``Wav2Vec2ForPreTraining``, checkpoint-dir errors, and the
Conformer path left exactly as it was.
"""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from osoup.bin import make_tiny_w2v2, train as train_bin  # noqa: E402
from osoup.fileio import DataError  # noqa: E402
from osoup.moo import make_soup  # noqa: E402
from osoup.nets.backbones import (  # noqa: E402
    architecture_only, backbone_from_conf, frames_for_samples, hf_encoder_conf, hf_frames_for_samples,
    layer_lr_scales)
from osoup.nets.backbones.hf_checkpoint import check_checkpoint_dir, read_weights  # noqa: E402
from osoup.nets.backbones.hf_wav2vec2 import normalize_waveforms  # noqa: E402
from osoup.nets.configs import MODEL_CONFIGS  # noqa: E402
from osoup.nets.conformer import ConformerEncoder  # noqa: E402
from osoup.nets.model import SoupModel  # noqa: E402
from osoup.train.experiment import build_model  # noqa: E402
from osoup.train.phase_setup import PhaseSetup, layer_decayed_optimizer, warm_up  # noqa: E402

HIDDEN = 32
OBJ = ["asr_en", "asr_fr", "st_fr", "ssl"]


@pytest.fixture(scope="module")
def w2v2_dir(tmp_path_factory):
    return make_tiny_w2v2.write_tiny_w2v2(tmp_path_factory.mktemp("ckpt") / "tiny_w2v2", hidden=HIDDEN, layers=2)


def _small_family_config(cls, **extra):
    conf = make_tiny_w2v2.tiny_config(HIDDEN, 2)
    keep = {k: v for k, v in conf.items() if k in cls().to_dict()}
    return cls(**keep, **extra)


@pytest.fixture(scope="module", params=["hubert", "wavlm"])
def family_dir(request, tmp_path_factory):
    """A tiny HubertModel / WavLMModel checkpoint (no quantizer)."""
    if request.param == "hubert":
        model = transformers.HubertModel(_small_family_config(transformers.HubertConfig))
    else:
        model = transformers.WavLMModel(_small_family_config(transformers.WavLMConfig, num_buckets=16,
                                                             max_bucket_distance=40))
    out = tmp_path_factory.mktemp(request.param) / "ckpt"
    model.save_pretrained(str(out))
    return out


def _wave(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), max(lengths), 1)
    for i, n in enumerate(lengths):
        x[i, :n, 0] = 0.3 * torch.randn(n, generator=g)
    return x, torch.tensor(lengths)


def _backbone(ckpt, freeze: bool = True):
    return backbone_from_conf(hf_encoder_conf(str(ckpt), freeze_feature_encoder=freeze))


# --------------------------------------------------------------------------- frames and forward
@pytest.mark.parametrize("n", [400, 401, 721, 1001, 12345, 16001])
def test_frame_count_equals_frames_for_samples(w2v2_dir, n):
    enc = _backbone(w2v2_dir).eval()
    conf = json.loads((w2v2_dir / "config.json").read_text(encoding="utf-8"))
    x, lengths = _wave([n])
    with torch.no_grad():
        out = enc(x, lengths)
    expected = frames_for_samples(n, conf["conv_kernel"], conf["conv_stride"])
    assert out.out.shape == (1, expected, HIDDEN)
    assert out.lengths.tolist() == [expected] == [hf_frames_for_samples(w2v2_dir, n)]
    assert expected == (n - 400) // 320 + 1  # wav2vec 2.0's CNN: 25 ms window, 20 ms hop


def test_frames_for_samples_by_hand():
    assert frames_for_samples(9, [3, 3], [2, 2]) == 1  # 9 -> (9-3)//2+1 = 4 -> (4-3)//2+1 = 1
    assert frames_for_samples(11, [3, 3], [2, 2]) == 2  # 11 -> 5 -> 2
    assert frames_for_samples(2, [3, 3], [2, 2]) == 0  # shorter than the first kernel
    w2v2 = ([10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2])
    assert [frames_for_samples(n, *w2v2) for n in (399, 400, 719, 720, 16000)] == [0, 1, 1, 2, 49]
    with pytest.raises(ValueError, match="differ in length"):
        frames_for_samples(100, [3], [2, 2])


def test_batched_forward_matches_each_utterance_alone(w2v2_dir):
    """Padding changes no valid frame: per-utterance normalisation over valid samples, the
    attention mask, and zeroed padding before the positional convolution."""
    enc = _backbone(w2v2_dir).eval()
    lens = [16001, 9871, 4003]
    x, lengths = _wave(lens, seed=3)
    with torch.no_grad():
        batch = enc(x, lengths)
        for i, n in enumerate(lens):
            alone = enc(x[i:i + 1, :n], lengths[i:i + 1])
            assert int(batch.lengths[i]) == alone.out.size(1)
            torch.testing.assert_close(batch.out[i, : alone.out.size(1)], alone.out[0], atol=2e-5, rtol=1e-4)


def test_normalize_waveforms_uses_valid_samples_only():
    x = torch.tensor([[1.0, 3.0, 5.0, 100.0], [2.0, 2.0, 4.0, 4.0]])
    y = normalize_waveforms(x, torch.tensor([3, 4]))
    assert y[0, 3] == 0.0
    torch.testing.assert_close(y[0, :3].mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(y[0, :3].pow(2).mean(), torch.tensor(1.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[1], torch.tensor([-1.0, -1.0, 1.0, 1.0]), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- layer groups
def _cover(groups) -> list[int]:
    return [id(p) for ps in groups.values() for p in ps]


def test_layer_groups_cover_every_parameter_once(w2v2_dir):
    enc = _backbone(w2v2_dir, freeze=False)
    groups = enc.layer_groups()
    assert list(groups) == ["feature_encoder", "feature_projection", "layer0", "layer1"]
    ids = _cover(groups)
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in enc.parameters()}
    assert {id(p) for p in groups["feature_encoder"]} == {id(p) for p in enc.model.feature_extractor.parameters()}


def test_frozen_feature_encoder_leaves_theta_and_the_groups(w2v2_dir):
    model = SoupModel(hf_encoder_conf(str(w2v2_dir)), {"asr_en": 7})
    frozen = {id(p) for p in model.encoder.model.feature_extractor.parameters()}
    shared = {id(p) for p in model.shared_parameters()}
    assert frozen and not frozen & shared
    groups = model.encoder.layer_groups()
    assert "feature_encoder" not in groups and set(_cover(groups)) == shared and len(_cover(groups)) == len(shared)
    model.set_backbone_trainable(False)
    assert model.shared_parameters() == []
    model.set_backbone_trainable(True)  # a later phase unfreezes θ, never the frozen CNN
    assert {id(p) for p in model.shared_parameters()} == shared


# --------------------------------------------------------------------------- one vm step
def _brute_projection(v: torch.Tensor) -> torch.Tensor:
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1
    k = torch.arange(1, v.numel() + 1, dtype=v.dtype)
    rho = int((u - css / k > 0).nonzero().max())
    return torch.clamp(v - css[rho] / (rho + 1), min=0)


class _Losses:
    """Fixed batches and SSL masks/negatives per (objective, half), so losses are repeatable."""

    def __init__(self, model: SoupModel):
        self.model = model
        self.data = {}
        for i, (n, h) in enumerate((n, h) for n in OBJ for h in (0, 1)):
            x, lengths = _wave([4800 + 37 * i, 4321], seed=10 + i)
            if n == "ssl":
                out = model.encoder.output_lengths(lengths)
                torch.manual_seed(i)
                self.data[n, h] = (x, lengths, *model.ssl.sample(out, model.encoder.n_frames(x.size(1))))
            else:
                g = torch.Generator().manual_seed(i)
                self.data[n, h] = (x, lengths, torch.randint(1, 7, (2, 3), generator=g), torch.tensor([3, 2]))

    def __call__(self, n: str, h: int) -> torch.Tensor:
        if n == "ssl":
            s, count = self.model.ssl.loss_with(self.model.encoder, *self.data[n, h])
            return s / count
        x, lengths, targets, tlen = self.data[n, h]
        return self.model.supervised_loss(n, x, lengths, targets, tlen) / tlen.sum()


def test_vm_step_moves_theta_by_the_combined_direction(w2v2_dir):
    torch.manual_seed(0)
    model = SoupModel(hf_encoder_conf(str(w2v2_dir)), {n: 7 for n in OBJ if n != "ssl"}, ssl="w2v2").eval()
    loss = _Losses(model)
    shared = model.shared_parameters()
    cnn = [p.detach().clone() for p in model.encoder.model.feature_extractor.parameters()]
    grads = {}
    for n in OBJ:
        for h in (0, 1):
            g = torch.autograd.grad(loss(n, h), shared, allow_unused=True)
            grads[n, h] = torch.cat([(gi if gi is not None else torch.zeros_like(p)).flatten()
                                     for gi, p in zip(g, shared)])
    gamma, epoch, lr = 0.5, 2.0, 0.1
    eta1, eta2 = 0.1 + 0.02 * epoch, 0.02 * epoch
    expected = torch.zeros_like(grads["ssl", 0])
    for level, c in zip([["asr_en", "asr_fr"], ["st_fr"], ["ssl"]], [1.0, eta1, eta1 * eta2]):
        g1 = torch.stack([grads[n, 0] for n in level])
        g2 = torch.stack([grads[n, 1] for n in level])
        k = len(level)
        lam = _brute_projection(torch.full((k,), 1 / k) - gamma * (g1 @ g2.T) @ torch.full((k,), 1 / k))
        expected += c * (lam @ (g1 + g2)) / 2

    heads = {n: model.objective_head_parameters(n) for n in OBJ}
    soup = make_soup("vm", shared, heads, OBJ, "ssl", levels="asr>st>ssl", modo={"gamma": gamma},
                     layer_groups=model.encoder.layer_groups(), moo_layers=None)
    opt = torch.optim.SGD(shared, lr=lr)
    opt.zero_grad(set_to_none=True)
    theta0 = torch.cat([p.detach().flatten() for p in shared]).clone()
    for n in OBJ:
        for h in (0, 1):
            soup.backward(n, h, loss(n, h))
    soup.step(epoch)
    opt.step()
    theta1 = torch.cat([p.detach().flatten() for p in shared])
    assert expected.abs().max() > 0
    torch.testing.assert_close(theta1, theta0 - lr * expected, atol=1e-6, rtol=1e-5)
    for before, p in zip(cnn, model.encoder.model.feature_extractor.parameters()):
        assert p.grad is None and torch.equal(p.detach(), before)


def test_layer_selection_accepts_the_backbone_groups(w2v2_dir):
    model = SoupModel(hf_encoder_conf(str(w2v2_dir)), {"asr_en": 7, "asr_fr": 7}).eval()
    shared = model.shared_parameters()
    heads = {n: model.objective_head_parameters(n) for n in ("asr_en", "asr_fr")}
    soup = make_soup("vs", shared, heads, ["asr_en", "asr_fr"], None, layer_groups=model.encoder.layer_groups(),
                     moo_layers=1, conflict_interval=1)
    assert soup.layer_groups == ["feature_projection", "layer0", "layer1"]
    x, lengths = _wave([4000, 3500])
    for n in heads:
        for h in (0, 1):
            soup.backward(n, h, model.supervised_loss(n, x[h:h + 1], lengths[h:h + 1], torch.tensor([[1, 2]]),
                                                      torch.tensor([2])))
    soup.step(0.0)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in shared)


# --------------------------------------------------------------------------- layer-wise lr decay
def test_layer_lr_decay_param_groups_and_warm_up(w2v2_dir):
    model = SoupModel(hf_encoder_conf(str(w2v2_dir)), {"asr_en": 7})
    groups = model.encoder.layer_groups()
    opt = layer_decayed_optimizer(model, 1e-3, 0.5, 0.0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2.5e-4, 5e-4, 1e-3])
    assert [[id(p) for p in g["params"]] for g in opt.param_groups] == [[id(p) for p in ps] for ps in groups.values()]
    setup = PhaseSetup(None, opt, torch.optim.SGD(model.heads.parameters(), lr=1e-4), None, None)
    warm_up(setup, SimpleNamespace(lr_backbone=1e-3, lr_heads=1e-4), warmup_steps=4, step_in_phase=1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.25e-4, 2.5e-4, 5e-4])
    assert [f for _, f in layer_lr_scales(groups, 1.0)] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="decay"):
        layer_lr_scales(groups, 1.5)


# --------------------------------------------------------------------------- wav2vec 2.0 SSL loss
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_w2v2_loss_equals_wav2vec2_for_pretraining(w2v2_dir, mode):
    ref = transformers.Wav2Vec2ForPreTraining.from_pretrained(str(w2v2_dir), local_files_only=True)
    model = SoupModel(hf_encoder_conf(str(w2v2_dir), freeze_feature_encoder=False), {}, ssl="w2v2")
    for m in (ref, model):
        m.train(mode == "train")
    x, lengths = _wave([9000, 7777, 5003], seed=5)
    torch.manual_seed(0)
    mask, negatives = model.ssl.sample(model.encoder.output_lengths(lengths), model.encoder.n_frames(x.size(1)))
    assert mask.any() and not (mask & ~(torch.arange(mask.size(1)) < model.encoder.output_lengths(lengths)[:, None])).any()
    torch.manual_seed(1)
    ours, count = model.ssl.loss_with(model.encoder, x, lengths, mask, negatives)
    attention = (torch.arange(x.size(1))[None] < lengths[:, None]).long()
    torch.manual_seed(1)
    theirs = ref(normalize_waveforms(x[..., 0], lengths), attention_mask=attention, mask_time_indices=mask,
                 sampled_negative_indices=negatives)
    assert int(count) == int(mask.sum())
    torch.testing.assert_close(ours, theirs.loss, atol=1e-4, rtol=1e-5)
    ours.backward()
    theirs.loss.backward()
    torch.testing.assert_close(model.ssl.quantizer.codevectors.grad, ref.quantizer.codevectors.grad,
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.encoder.model.encoder.layers[0].attention.q_proj.weight.grad,
                               ref.wav2vec2.encoder.layers[0].attention.q_proj.weight.grad, atol=1e-5, rtol=1e-4)


def test_w2v2_draws_follow_the_torch_seed_and_leave_numpy_alone(w2v2_dir):
    model = SoupModel(hf_encoder_conf(str(w2v2_dir)), {}, ssl="w2v2")
    out = torch.tensor([40, 31])
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    draws = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        draws.append(model.ssl.sample(out, 40))
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    assert not (torch.equal(draws[0][0], draws[2][0]) and torch.equal(draws[0][1], draws[2][1]))
    assert (np.random.get_state()[1] == before).all()
    mask, negatives = draws[0]
    assert mask.sum(1).min() >= 2 and not mask[1, 31:].any()  # at least min_masks frames, none in padding
    assert negatives.shape == (2, 40, model.ssl.num_negatives) and int(negatives[1, :31].min()) >= 40
    assert int(negatives[1, :31].max()) < 40 + 31  # negatives of utterance 1: its own valid frames


def test_w2v2_ssl_starts_from_the_checkpoint_quantizer(w2v2_dir):
    model = SoupModel(hf_encoder_conf(str(w2v2_dir)), {}, ssl="w2v2")
    saved = read_weights(w2v2_dir, ("quantizer.",))
    assert torch.equal(model.ssl.quantizer.codevectors.detach(), saved["quantizer.codevectors"])
    assert model.objective_head_parameters("ssl") and not {id(p) for p in model.ssl.parameters()} & {
        id(p) for p in model.shared_parameters()}


# --------------------------------------------------------------------------- other families
def test_hubert_and_wavlm_load_and_train_bestrq(family_dir):
    model = SoupModel(hf_encoder_conf(str(family_dir), freeze_feature_encoder=False), {"asr_en": 7}, ssl="bestrq")
    enc = model.encoder
    groups = enc.layer_groups()
    assert list(groups)[:2] == ["feature_encoder", "feature_projection"] and len(groups) == 4
    ids = _cover(groups)
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in enc.parameters()}
    x, lengths = _wave([12001, 8000], seed=2)
    model.train()
    out = enc(x, lengths)
    assert out.out.shape == (2, hf_frames_for_samples(family_dir, 12001), HIDDEN)
    assert out.lengths.tolist() == [hf_frames_for_samples(family_dir, n) for n in (12001, 8000)]
    torch.manual_seed(0)
    s, count = model.ssl_loss(x, lengths)
    assert count > 0 and torch.isfinite(s)
    s.backward()
    assert enc.model.masked_spec_embed.grad is not None and enc.model.masked_spec_embed.grad.abs().sum() > 0
    assert model.ssl.out.weight.grad.abs().sum() > 0
    with pytest.raises(DataError, match="w2v2 needs a wav2vec2"):
        SoupModel(hf_encoder_conf(str(family_dir)), {}, ssl="w2v2")


# --------------------------------------------------------------------------- errors and commands
def test_missing_or_incomplete_checkpoint_dir(tmp_path, w2v2_dir):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'}: not found"):
        check_checkpoint_dir(tmp_path / "nope")
    part = tmp_path / "part"
    part.mkdir()
    with pytest.raises(DataError, match=f"backbone dir {part}: missing config.json"):
        hf_encoder_conf(str(part))
    shutil.copy(w2v2_dir / "config.json", part / "config.json")
    with pytest.raises(DataError, match=f"backbone dir {part}: missing the weights \\(model.safetensors or "
                                        f"pytorch_model.bin\\)"):
        hf_encoder_conf(str(part))


def _run_train(capsys, *argv: str) -> tuple[int, list[str]]:
    rc = train_bin.main(list(argv))
    return rc, [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ERROR: ")]


def test_train_options_check_the_backbone(tmp_path, capsys, w2v2_dir, family_dir):
    base = ["--exp-dir", str(tmp_path / "e"), "--asr-langs", "fr", "--st-langs", "fr"]
    rc, err = _run_train(capsys, *base, "--backbone", "hf_wav2vec2", "--backbone-dir", str(tmp_path / "none"),
                         "--ssl", "w2v2")
    assert rc == 1 and len(err) == 1 and "--backbone-dir" in err[0] and str(tmp_path / "none") in err[0]
    rc, err = _run_train(capsys, *base, "--backbone", "hf_wav2vec2", "--ssl", "w2v2")
    assert rc == 1 and err == ["ERROR: --backbone-dir None (default): required with --backbone hf_wav2vec2"]
    rc, err = _run_train(capsys, *base, "--backbone", "hf_wav2vec2", "--backbone-dir", str(w2v2_dir))
    assert rc == 1 and len(err) == 1 and "--ssl cpc (default)" in err[0] and "causal" in err[0]
    rc, err = _run_train(capsys, *base, "--backbone", "hf_wav2vec2", "--backbone-dir", str(family_dir),
                         "--ssl", "w2v2")
    assert rc == 1 and len(err) == 1 and "w2v2 needs a wav2vec2 checkpoint" in err[0]
    rc, err = _run_train(capsys, *base, "--ssl", "w2v2")
    assert rc == 1 and len(err) == 1 and "needs --backbone hf_wav2vec2" in err[0]
    rc, err = _run_train(capsys, *base, "--backbone", "hf_wav2vec2", "--backbone-dir", str(w2v2_dir),
                         "--ssl", "w2v2", "--moo-layers", "4")
    assert rc == 1 and "from 1 to 3 (feature projection + 2 transformer layers)" in err[0]
    rc, err = _run_train(capsys, *base, "--layer-lr-decay", "1.5")
    assert rc == 1 and "must be in (0, 1]" in err[0]
    args, _ = train_bin.parse_args([*base, "--backbone", "hf_wav2vec2", "--backbone-dir", str(w2v2_dir), "--ssl",
                                    "w2v2", "--moo-layers", "3", "--layer-lr-decay", "0.8",
                                    "--freeze-feature-encoder", "false"])
    assert (args.backbone, args.freeze_feature_encoder, args.layer_lr_decay, args.grad_checkpointing) == (
        "hf_wav2vec2", False, 0.8, False)


def test_make_tiny_w2v2_command(tmp_path, capsys):
    out = tmp_path / "w"
    assert make_tiny_w2v2.main([str(out), "--hidden", "16", "--layers", "1", "--seed", "3"]) == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "preprocessor_config.json"}
    pre = json.loads((out / "preprocessor_config.json").read_text(encoding="utf-8"))
    assert pre["sampling_rate"] == 16000 and pre["do_normalize"] is True
    model = transformers.Wav2Vec2ForPreTraining.from_pretrained(str(out), local_files_only=True)
    assert model.config.hidden_size == 16 and model.config.num_hidden_layers == 1
    assert make_tiny_w2v2.main([str(tmp_path / "bad"), "--hidden", "30"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "ERROR: --hidden 30: must be a positive multiple of 4"
    assert not (tmp_path / "bad").exists()


def test_saved_model_rebuilds_without_the_checkpoint_dir(tmp_path, w2v2_dir):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(w2v2_dir, ckpt)
    conf = {"encoder_conf": hf_encoder_conf(str(ckpt)), "head_vocab": {"asr_en": 7}, "ssl": "w2v2"}
    model = SoupModel(**conf).eval()
    shutil.rmtree(ckpt)
    assert architecture_only(conf["encoder_conf"])["pretrained"] is False
    again = build_model({"model": model.state_dict(), "model_conf": conf}, tmp_path / "best.pt")
    x, lengths = _wave([5000, 4000])
    with torch.no_grad():
        torch.testing.assert_close(again.log_probs("asr_en", x, lengths)[0], model.log_probs("asr_en", x, lengths)[0])


# --------------------------------------------------------------------------- conformer unchanged
def test_conformer_backbone_is_the_conformer_unchanged():
    conf = dict(MODEL_CONFIGS["tiny"], n_blocks=2)
    torch.manual_seed(0)
    ref = ConformerEncoder(**conf)
    torch.manual_seed(0)
    model = SoupModel(conf, {"asr_en": 5}, ssl="cpc")
    assert model.encoder.input_kind == "fbank" and isinstance(model.encoder, ConformerEncoder)
    assert list(model.encoder.state_dict()) == list(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[k], v), k
    feats = torch.randn(2, 60, 80)
    lengths = torch.tensor([60, 47])
    ref.eval(), model.eval()
    torch.testing.assert_close(model.encoder(feats, lengths).out, ref(feats, lengths).out, atol=0, rtol=0)
    assert list(model.encoder.layer_groups()) == list(ref.layer_groups())


def test_grad_checkpointing_gives_the_same_gradients_over_two_backward_passes(w2v2_dir):
    """Per-objective backward passes (as the Soup runs them) through checkpointed layers."""
    grads = []
    for ckpt in (False, True):
        conf = hf_encoder_conf(str(w2v2_dir), grad_checkpointing=ckpt)
        torch.manual_seed(0)  # the same random heads
        model = SoupModel(conf, {"asr_en": 7, "asr_fr": 7}).train()
        assert model.encoder.model.is_activation_checkpointing == ckpt
        model.encoder.model.config.mask_time_prob = 0.0  # no random masking: the two runs must match
        x, lengths = _wave([6000, 5000], seed=7)
        for n in ("asr_en", "asr_fr"):
            model.supervised_loss(n, x, lengths, torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1])).backward()
        grads.append(torch.cat([torch.zeros(p.numel()) if p.grad is None else p.grad.flatten()
                                for p in model.shared_parameters()]))  # the mask embedding: unused
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-5)


def test_w2v2_ssl_without_checkpoint_weights_is_initialised(w2v2_dir):
    """A model built from the config alone (the bench, a rebuilt model) gets wav2vec 2.0's
    quantizer initialisation, not uninitialised memory: a finite loss."""
    conf = architecture_only(hf_encoder_conf(str(w2v2_dir)))
    torch.manual_seed(0)
    model = SoupModel(conf, {}, ssl="w2v2").train()
    codes = model.ssl.quantizer.codevectors.detach()
    assert 0.0 <= float(codes.min()) and float(codes.max()) <= 1.0
    x, lengths = _wave([32000, 20000], seed=1)
    s, count = model.ssl_loss(x, lengths)
    assert count > 0 and torch.isfinite(s)


def test_missing_transformers_says_how_to_install(monkeypatch, tmp_path, w2v2_dir):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(DataError, match=r"pip install -e '\.\[hf\]'"):
        backbone_from_conf(hf_encoder_conf(str(w2v2_dir)))
    assert make_tiny_w2v2.main([str(tmp_path / "w")]) == 1
    assert hf_frames_for_samples(w2v2_dir, 16000) == 49  # frame counts need no transformers


def test_half_precision_checkpoint_loads_in_fp32(tmp_path, w2v2_dir):
    half = tmp_path / "half"
    transformers.Wav2Vec2ForPreTraining.from_pretrained(str(w2v2_dir), local_files_only=True).half().save_pretrained(
        str(half))
    model = SoupModel(hf_encoder_conf(str(half)), {"asr_en": 7}, ssl="w2v2")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    rebuilt = SoupModel(architecture_only(hf_encoder_conf(str(half))), {"asr_en": 7})  # from the config alone
    assert {p.dtype for p in rebuilt.parameters()} == {torch.float32}


def test_setup_phase_on_the_backbone_with_layer_selection_and_lr_decay(w2v2_dir):
    """The trainer's phase set-up: Soup with --moo-layers over the backbone's groups (the frozen
    CNN in none), θ's AdamW in decayed groups, a heads-only phase that freezes and a later phase
    that unfreezes θ without the CNN."""
    from osoup.train.options import TrainConfig
    from osoup.train.phase_setup import setup_phase
    from osoup.train.phases import Phase

    model = SoupModel(hf_encoder_conf(str(w2v2_dir)), {n: 7 for n in OBJ if n != "ssl"}, ssl="w2v2")
    cfg = TrainConfig(method="vm", levels="asr>st>ssl", moo_layers=1, layer_lr_decay=0.5)
    phase = Phase("vm", "vm", list(OBJ), 2, 1e-3, 1e-4, "none")
    setup = setup_phase(cfg, phase, model, {})
    assert setup.update.layer_groups == ["feature_projection", "layer0", "layer1"]
    assert [g["lr"] for g in setup.opt_backbone.param_groups] == pytest.approx([2.5e-4, 5e-4, 1e-3])
    heads_only = setup_phase(cfg, Phase("heads", "mean", ["asr_en"], 1, 1e-3, 1e-4, "none", train_backbone=False),
                             model, {})
    assert heads_only.opt_backbone is None and model.shared_parameters() == []
    setup_phase(cfg, phase, model, {})
    assert not any(p.requires_grad for p in model.encoder.model.feature_extractor.parameters())
    assert len(model.shared_parameters()) == len(_cover(model.encoder.layer_groups())) > 0


def test_resource_timing_counts_raw_samples_as_16k_seconds(w2v2_dir, tmp_path):
    """The resource table's decoding time on a raw-waveform model: audio seconds are samples /
    16000, and an utterance shorter than the CNN's receptive field is skipped, as decoding does."""
    import kaldiio

    from osoup.decode.chunked import model_input
    from osoup.train import resources as R

    model = SoupModel(hf_encoder_conf(str(w2v2_dir)), {"asr_fr": 7}).eval()
    kind, frontend, rate = model_input(model)
    assert (kind, rate) == ("raw", 16000) and frontend.factor > 1
    rng = np.random.default_rng(0)
    lens = [frontend.reach - 1, 4001, 6400, 3203]
    d = tmp_path / "test_fr"
    d.mkdir()
    feats = {f"u{i}": rng.normal(size=(n, 1)).astype(np.float32) for i, n in enumerate(lens)}
    kaldiio.save_ark(str(d / "feats.ark"), feats, scp=str(d / "feats.scp"))
    got = R.time_decoding(model, {}, tmp_path, split="test", n_utts=10)["test_fr"]
    assert got["utts"] == 3
    assert got["audio_sec"] == pytest.approx(sum(lens[1:]) / 16000)
