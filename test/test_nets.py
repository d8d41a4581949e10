"""Tests for osoup.nets: shapes, padding invariance, causality, losses against direct
computations, SSL losses that learn, frozen BEST-RQ quantizer, SpecAugment, CMVN, sizes."""
from __future__ import annotations

import copy
import importlib.util
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from osoup.nets import (BESTRQ_CODEBOOK_SIZE, CPC, MODEL_CONFIGS, BestRQ, ConformerEncoder,
                        CTCHead, GlobalCMVN, SpecAugment, ctc_loss_sum)
from osoup.nets.attention import RelPositionMultiHeadAttention, rel_shift, rel_sinusoids
from osoup.nets.model import SoupModel
from osoup.nets.conformer import MaskedBatchNorm1d
from osoup.nets.subsampling import _output_length, output_lengths

# Outputs that must be equal whatever the length, padding or batch composition are compared in
# float64 (model.double(), float64 inputs): float32 kernels accumulate in shape-dependent orders,
# so the same value differs by a few ulps (~1e-6) from one CPU to another, while float64
# round-off stays near 1e-15. 1e-12 is exact in practice and still catches any real leak.
EXACT = dict(atol=1e-12, rtol=0.0)
F64 = torch.float64

SMALL = dict(idim=80, d_model=32, n_heads=4, n_blocks=2, ff_mult=2, conv_kernel=7,
             conv_norm="layer", dropout=0.0, subsampling_channels=8)


def small_encoder(**over) -> ConformerEncoder:
    torch.manual_seed(0)
    return ConformerEncoder(**{**SMALL, **over})


# ----------------------------------------------------------------------------- shapes / lengths

def test_output_length_formula_and_shapes():
    for t in range(0, 60):
        assert _output_length(t) == max(((t - 1) // 2 - 1) // 2, 0)
    enc = small_encoder().eval()
    lengths = torch.tensor([57, 40, 23, 7])
    feats = torch.randn(4, 57, 80)
    for causal in (False, True):
        out = enc(feats, lengths, causal=causal)
        assert out.out.shape == (4, 13, 32) and out.frontend.shape == (4, 13, 32)
        assert out.lengths.tolist() == [13, 9, 5, 1]
    assert output_lengths(torch.arange(0, 300)).tolist() == [_output_length(t) for t in range(300)]
    with pytest.raises(ValueError):
        enc(torch.randn(1, 6, 80), torch.tensor([6]))


def test_output_length_agrees_with_data_filter():
    if importlib.util.find_spec("osoup.data.filter") is None:
        pytest.skip("osoup.data.filter not written yet")
    from osoup.data.filter import subsampled_length
    for t in range(0, 400):
        assert subsampled_length(t) == _output_length(t), t


# ----------------------------------------------------------------------------- attention

def test_rel_shift_matches_index_formula():
    t = 5
    x = torch.randn(2, 3, t, 2 * t - 1)
    y = rel_shift(x)
    for i, j in itertools.product(range(t), range(t)):
        # column (T-1) - (i-j) holds offset i - j
        assert torch.equal(y[..., i, j], x[..., i, t - 1 - (i - j)])


def test_rel_attention_matches_direct_formula():
    torch.manual_seed(1)
    d, h, t = 16, 2, 6
    att = RelPositionMultiHeadAttention(d, h).double().eval()
    x = torch.randn(1, t, d, dtype=F64)
    pos = rel_sinusoids(t, d, dtype=F64)
    mask = torch.ones(1, t, t, dtype=torch.bool).tril()  # causal, to check the mask as well
    got = att(x, pos, mask)
    dh = d // h
    q = att.linear_q(x)[0].view(t, h, dh)
    k = att.linear_k(x)[0].view(t, h, dh)
    v = att.linear_v(x)[0].view(t, h, dh)
    out = torch.zeros(t, h, dh, dtype=F64)
    for head in range(h):
        for i in range(t):
            scores = []
            for j in range(i + 1):
                r = pos[t - 1 - (i - j)]  # embedding of offset i - j
                p = att.linear_pos(r).view(h, dh)[head]
                s = (q[i, head] + att.pos_bias_u[head]) @ k[j, head] \
                    + (q[i, head] + att.pos_bias_v[head]) @ p
                scores.append(s / math.sqrt(dh))
            w = torch.softmax(torch.stack(scores), dim=0)
            out[i, head] = (w[:, None] * v[: i + 1, head]).sum(0)
    want = att.linear_out(out.reshape(t, d))
    torch.testing.assert_close(got[0], want, **EXACT)
    # offset embedding: row j is offset T-1-j
    offs = torch.arange(t - 1, -t, -1).float()
    pos = rel_sinusoids(t, d)
    torch.testing.assert_close(pos[:, 0], torch.sin(offs))
    torch.testing.assert_close(pos[:, 1], torch.cos(offs))


# ----------------------------------------------------------------------------- padding

@pytest.mark.parametrize("conv_norm,train", [("layer", False), ("layer", True), ("batch", False)])
@pytest.mark.parametrize("causal", [False, True])
def test_padding_does_not_change_valid_outputs(conv_norm, train, causal):
    enc = small_encoder(conv_norm=conv_norm).double().train(train)
    torch.manual_seed(2)
    a = torch.randn(1, 45, 80, dtype=F64)
    b = torch.randn(1, 70, 80, dtype=F64)
    alone = enc(a, torch.tensor([45]), causal=causal)
    batch = torch.cat([F.pad(a, (0, 0, 0, 25), value=7.0), b])
    padded = enc(batch, torch.tensor([45, 70]), causal=causal)
    n = alone.lengths[0].item()
    assert padded.lengths[0].item() == n == 10
    torch.testing.assert_close(padded.out[0, :n], alone.out[0], **EXACT)
    torch.testing.assert_close(padded.frontend[0, :n], alone.frontend[0], **EXACT)


def test_batchnorm_training_ignores_padding_values():
    enc = small_encoder(conv_norm="batch").double().train()
    torch.manual_seed(3)
    feats = torch.randn(2, 60, 80, dtype=F64)
    lengths = torch.tensor([60, 33])
    other = feats.clone()
    other[1, 33:] = 100.0 * torch.randn(27, 80, dtype=F64)
    e1, e2 = copy.deepcopy(enc), copy.deepcopy(enc)
    o1, o2 = e1(feats, lengths), e2(other, lengths)
    n = o1.lengths[1].item()
    torch.testing.assert_close(o1.out[0], o2.out[0], **EXACT)
    torch.testing.assert_close(o1.out[1, :n], o2.out[1, :n], **EXACT)
    for m1, m2 in zip(e1.modules(), e2.modules()):
        if isinstance(m1, MaskedBatchNorm1d):
            torch.testing.assert_close(m1.running_var, m2.running_var, **EXACT)


def test_masked_batchnorm_matches_torch_batchnorm_on_valid_frames():
    torch.manual_seed(4)
    x = torch.randn(3, 5, 9, dtype=torch.float64)  # float64: exact up to rounding on any CPU
    valid = torch.arange(9)[None] < torch.tensor([9, 4, 6])[:, None]
    ours = MaskedBatchNorm1d(5).double().train()
    ref = torch.nn.BatchNorm1d(5).double().train()
    y = ours(x, valid)
    assert y.dtype == torch.float64
    flat = x.transpose(1, 2)[valid]  # [n_valid, C]
    want = ref(flat)
    torch.testing.assert_close(y.transpose(1, 2)[valid], want, atol=1e-12, rtol=0)
    torch.testing.assert_close(ours.running_mean, ref.running_mean, atol=1e-12, rtol=0)
    torch.testing.assert_close(ours.running_var, ref.running_var, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- causality

def _perturb_after(feats: torch.Tensor, t0: int) -> torch.Tensor:
    out = feats.clone()
    out[:, t0:] += 3.0 * torch.randn_like(out[:, t0:])
    return out


@pytest.mark.parametrize("conv_norm,train", [("layer", False), ("layer", True),
                                             ("batch", False), ("batch", True)])
def test_causal_mode_never_sees_the_future(conv_norm, train):
    enc = small_encoder(conv_norm=conv_norm).double().train(train)
    torch.manual_seed(5)
    feats = torch.randn(2, 80, 80, dtype=F64)
    lengths = torch.tensor([80, 80])
    t0 = 41
    later = _perturb_after(feats, t0)
    # deep copies: a causal training pass updates BN running stats after using them
    e1, e2 = copy.deepcopy(enc), copy.deepcopy(enc)
    c1, c2 = e1(feats, lengths, causal=True), e2(later, lengths, causal=True)
    past = [u for u in range(c1.out.size(1)) if 4 * u < t0]  # causal frame u reads <= 4u
    assert past == list(range(11))
    torch.testing.assert_close(c1.out[:, past], c2.out[:, past], **EXACT)
    torch.testing.assert_close(c1.frontend[:, past], c2.frontend[:, past], **EXACT)
    assert not torch.allclose(c1.out[:, past[-1] + 1:], c2.out[:, past[-1] + 1:], atol=1e-3)
    # The same weights without the causal mask do look ahead: the past frames change.
    e1, e2 = copy.deepcopy(enc), copy.deepcopy(enc)
    n1, n2 = e1(feats, lengths), e2(later, lengths)
    assert (n1.out[:, past] - n2.out[:, past]).abs().amax() > 1e-3


def test_cpc_context_equals_context_of_truncated_utterance():
    enc = small_encoder(conv_norm="batch").double().eval()
    torch.manual_seed(6)
    feats = torch.randn(1, 90, 80, dtype=F64)
    full = enc(feats, torch.tensor([90]), causal=True)
    for t_cut in (30, 51, 64):
        cut = enc(feats[:, :t_cut], torch.tensor([t_cut]), causal=True)
        n = cut.out.size(1)
        torch.testing.assert_close(full.out[:, :n], cut.out, **EXACT)
        torch.testing.assert_close(full.frontend[:, :n], cut.frontend, **EXACT)


# ----------------------------------------------------------------------------- CTC

def _brute_force_ctc_nll(log_probs: torch.Tensor, target: list[int]) -> float:
    """-log sum over all frame labelings that collapse to ``target`` (blank 0)."""
    t, v = log_probs.shape
    total = 0.0
    for path in itertools.product(range(v), repeat=t):
        collapsed = [s for i, s in enumerate(path) if s != 0 and (i == 0 or path[i - 1] != s)]
        if collapsed == target:
            total += math.exp(sum(log_probs[i, s].item() for i, s in enumerate(path)))
    return -math.log(total)


def test_ctc_loss_sum_matches_brute_force_and_target_layouts():
    torch.manual_seed(7)
    head = CTCHead(8, 3)
    enc_out = torch.randn(2, 5, 8, dtype=torch.float64)
    logits = head.double()(enc_out)
    lengths = torch.tensor([5, 4])
    targets = [[1, 2, 2], [2]]
    padded = torch.tensor([[1, 2, 2], [2, 0, 0]])
    tlen = torch.tensor([3, 1])
    got = ctc_loss_sum(logits, lengths, padded, tlen)
    lp = F.log_softmax(logits.float(), dim=-1)
    want = sum(_brute_force_ctc_nll(lp[b, : lengths[b]], targets[b]) for b in range(2))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-4)
    concat = ctc_loss_sum(logits, lengths, torch.tensor([1, 2, 2, 2]), tlen)
    assert concat.item() == pytest.approx(got.item(), rel=1e-6)
    # bf16 logits are handled in fp32; an infeasible utterance counts 0, not inf
    inf = ctc_loss_sum(logits.bfloat16(), torch.tensor([5, 1]), torch.tensor([[1, 2, 2], [1, 1, 0]]),
                       torch.tensor([3, 2]))
    assert torch.isfinite(inf)


# ----------------------------------------------------------------------------- CPC

def test_cpc_count_and_never_uses_positive_or_padding_as_negative():
    t, big = 20, 30.0
    lengths = torch.tensor([20, 13])
    cpc = CPC(t, n_predict=3, n_negatives=12)
    eye = torch.eye(t)
    c = eye.expand(2, t, t).clone()  # c_t = e_t
    z = big * eye.expand(2, t, t).clone()  # z_x = big * e_x
    z[1, 13:] = 1e4  # padding frames would dominate any score they took part in
    with torch.no_grad():
        for k, lin in enumerate(cpc.predictors, start=1):
            lin.bias.zero_()
            lin.weight.copy_(big * torch.diag(torch.ones(t - k), -k))  # e_t -> big * e_{t+k}
    torch.manual_seed(8)
    loss, count = cpc.loss(z, c, lengths)
    assert count.item() == sum(max(0, n - k) for n in (20, 13) for k in (1, 2, 3))
    # positive scores big^2 = 900, negatives 0: any duplicated positive would add >= log 2
    assert loss.item() < 1e-6 * count.item()


def test_cpc_loss_ignores_padding_and_equals_log_candidates_when_uninformative():
    torch.manual_seed(9)
    cpc = CPC(16, n_predict=4, n_negatives=5).double()  # float64: exact up to rounding on any CPU
    z, c = torch.randn(2, 25, 16, dtype=torch.float64), torch.randn(2, 25, 16, dtype=torch.float64)
    lengths = torch.tensor([25, 17])
    z2, c2 = z.clone(), c.clone()
    z2[1, 17:], c2[1, 17:] = 50.0, -50.0
    torch.manual_seed(10)
    l1, n1 = cpc.loss(z, c, lengths)
    torch.manual_seed(10)
    l2, n2 = cpc.loss(z2, c2, lengths)
    assert n1.item() == n2.item()
    assert l1.dtype == torch.float64
    assert l1.item() == pytest.approx(l2.item(), rel=1e-12)
    # With one frame repeated everywhere every candidate scores the same: loss = log(1 + N).
    flat = z[:, :1].expand(2, 25, 16)
    l3, n3 = cpc.loss(flat, c, lengths)
    assert l3.item() / n3.item() == pytest.approx(math.log(6), rel=1e-12)


def _toy_batch(b: int = 4, t: int = 160, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth, predictable 'speech': per-utterance sums of slow sinusoids over time and mel."""
    g = torch.Generator().manual_seed(seed)
    time = torch.arange(t).float()[None, :, None]
    mel = torch.arange(80).float()[None, None, :]
    feats = torch.zeros(b, t, 80)
    for _ in range(3):
        f_t = 0.02 + 0.1 * torch.rand(b, 1, 1, generator=g)
        f_m = 0.05 + 0.2 * torch.rand(b, 1, 1, generator=g)
        ph = 6.28 * torch.rand(b, 1, 1, generator=g)
        feats += torch.sin(f_t * time + ph) * torch.cos(f_m * mel + ph)
    feats += 0.1 * torch.randn(b, t, 80, generator=g)
    feats = (feats - feats.mean()) / feats.std()
    return feats, torch.tensor([t, t - 20, t - 45, t - 7][:b])


def test_cpc_loss_falls_on_toy_batch():
    torch.manual_seed(11)
    enc = ConformerEncoder(**{**MODEL_CONFIGS["tiny"], "dropout": 0.0}).train()
    cpc = CPC(enc.d_model)
    opt = torch.optim.Adam(list(enc.parameters()) + list(cpc.parameters()), lr=1e-3)
    feats, lengths = _toy_batch()
    losses = []
    for _ in range(20):
        out = enc(feats, lengths, causal=True)
        loss_sum, count = cpc.loss(out.frontend, out.out, out.lengths)
        loss = loss_sum / count
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    start, end = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert end < 0.7 * start, losses


# ----------------------------------------------------------------------------- BEST-RQ

def test_bestrq_targets_match_direct_nearest_code_and_are_deterministic():
    q1, q2 = BestRQ(d_model=16, codebook_size=32, seed=3), BestRQ(d_model=16, codebook_size=32, seed=3)
    assert torch.equal(q1.projection, q2.projection) and torch.equal(q1.codebook, q2.codebook)
    assert not any(p is q1.projection or p is q1.codebook for p in q1.parameters())
    torch.testing.assert_close(q1.codebook.norm(dim=-1), torch.ones(32))
    feats = torch.randn(2, 30, 80)
    ids = q1.targets(feats, 6)
    for b, u in itertools.product(range(2), range(6)):
        v = feats[b, 4 * u: 4 * u + 4].reshape(-1)
        v = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + 1e-5)
        p = v @ q1.projection
        dist = ((q1.codebook - p / p.norm()) ** 2).sum(-1)  # nearest unit code = highest cosine
        assert ids[b, u].item() == dist.argmin().item()


def test_bestrq_mask_within_lengths_and_rate():
    q = BestRQ(d_model=16, codebook_size=32)
    torch.manual_seed(12)
    out_len = torch.tensor([500, 300, 3, 0])
    m = q.sample_mask(out_len, 500)
    for b, n in enumerate(out_len.tolist()):
        assert not m[b, n:].any()
    assert m[2].any()  # every non-empty utterance gets a span
    big = q.sample_mask(torch.full((64,), 500), 500)
    p_start = 1 - (1 - 0.01) ** 4
    expected = 1 - (1 - p_start) ** 10  # ~0.33 away from the start of the utterance
    assert abs(big[:, 20:].float().mean().item() - expected) < 0.03


def test_bestrq_quantizer_frozen_loss_falls_and_is_seeded():
    torch.manual_seed(13)
    enc = ConformerEncoder(**{**MODEL_CONFIGS["tiny"], "dropout": 0.0}).train()
    brq = BestRQ(d_model=enc.d_model, codebook_size=BESTRQ_CODEBOOK_SIZE["tiny"], mask_prob=0.02)
    proj0, code0 = brq.projection.clone(), brq.codebook.clone()
    opt = torch.optim.Adam(list(enc.parameters()) + list(brq.parameters()), lr=1e-3)
    feats, lengths = _toy_batch(seed=1)
    losses = []
    for step in range(20):
        loss_sum, count = brq.loss(enc, feats, lengths)
        assert count.item() > 0
        loss = loss_sum / count
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step == 0:
            assert brq.projection.grad is None and brq.codebook.grad is None
    assert torch.equal(brq.projection, proj0) and torch.equal(brq.codebook, code0)
    start, end = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert end < 0.7 * start, losses
    # same torch seed -> same masks, noise and loss
    enc.eval()
    torch.manual_seed(14)
    a = brq.loss(enc, feats, lengths)
    torch.manual_seed(14)
    b = brq.loss(enc, feats, lengths)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ----------------------------------------------------------------------------- SpecAugment / CMVN

def test_specaugment_identity_in_eval_and_masks_within_lengths_in_train():
    aug = SpecAugment(freq_masks=2, freq_width=27, time_masks=2, time_width=0.05)
    feats = torch.randn(8, 300, 80) + 10.0  # no natural zeros
    lengths = torch.tensor([300, 250, 200, 120, 300, 90, 60, 280])
    assert aug.eval()(feats, lengths) is feats
    aug.train()
    torch.manual_seed(15)
    any_time, any_freq = False, False
    for _ in range(20):
        out = aug(feats, lengths)
        zero = out == 0
        assert torch.equal(out[~zero], feats[~zero])  # only zeroing
        for b, n in enumerate(lengths.tolist()):
            assert torch.equal(out[b, n:], feats[b, n:])  # padding untouched
            full_t = zero[b, :n].all(dim=1)  # frames masked in every bin
            full_f = zero[b, :n].all(dim=0)  # bins masked in every frame
            assert full_t.sum() <= 2 * int(0.05 * n)
            assert full_f.sum() <= 2 * 27
            assert torch.equal(zero[b, :n], full_t[:, None] | full_f[None, :])
            any_time |= bool(full_t.any())
            any_freq |= bool(full_f.any())
    assert any_time and any_freq


def test_global_cmvn():
    mean, std = torch.randn(80), torch.rand(80) + 0.5
    cmvn = GlobalCMVN(mean, std)
    x = torch.randn(2, 7, 80)
    torch.testing.assert_close(cmvn(x), (x - mean) / std)
    assert set(dict(cmvn.named_buffers())) == {"mean", "std"}
    assert GlobalCMVN()(x) is x
    with pytest.raises(ValueError):
        cmvn(torch.randn(2, 7, 40))


# ----------------------------------------------------------------------------- sizes / groups

@pytest.mark.parametrize("name,target", [("58m", 58e6), ("100m", 100e6)])
def test_paper_model_sizes_on_meta_device(name, target):
    with torch.device("meta"):
        enc = ConformerEncoder(**MODEL_CONFIGS[name])
    n = sum(p.numel() for p in enc.parameters())
    assert abs(n - target) / target < 0.05, n
    assert all(p.is_meta for p in enc.parameters())


def test_layer_groups_partition_every_parameter_once():
    enc = ConformerEncoder(**MODEL_CONFIGS["tiny"])
    groups = enc.layer_groups()
    assert list(groups) == ["frontend"] + [f"block{i}" for i in range(4)]
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in enc.parameters()}


def test_bf16_autocast_runs_and_losses_stay_fp32():
    enc = small_encoder(conv_norm="batch").train()
    cpc, brq, head = CPC(32, n_predict=3), BestRQ(d_model=32, codebook_size=16), CTCHead(32, 9)
    feats, lengths = torch.randn(2, 60, 80), torch.tensor([60, 45])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc(feats, lengths)
        ctc = ctc_loss_sum(head(out.out), out.lengths, torch.tensor([[1, 2], [3, 0]]),
                           torch.tensor([2, 1]))
        causal = enc(feats, lengths, causal=True)
        cpc_sum, _ = cpc.loss(causal.frontend, causal.out, causal.lengths)
        brq_sum, _ = brq.loss(enc, feats, lengths)
    for loss in (ctc, cpc_sum, brq_sum):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    (ctc + cpc_sum + brq_sum).backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


def test_ctc_head_with_layers_ignores_padding_and_is_a_head_parameter():
    """A translation head with private Transformer layers: a valid frame's logits do not depend
    on padded frames, it needs the lengths, and its layers are head parameters, not θ."""
    torch.manual_seed(3)
    head = CTCHead(16, 7, layers=2).eval()
    x = torch.randn(2, 9, 16)
    lengths = torch.tensor([9, 5])
    y = head(x, lengths)
    x2 = x.clone()
    x2[1, 5:] = 1e3  # garbage in the padding
    assert torch.allclose(head(x2, lengths)[1, :5], y[1, :5], atol=1e-5)
    assert torch.allclose(head(x[1:, :5], lengths[1:])[0], y[1, :5], atol=1e-5)  # same as unpadded
    with pytest.raises(ValueError, match="lengths"):
        head(x)
    linear = CTCHead(16, 7)
    assert torch.equal(linear(x), linear.proj(x))  # the paper's head: a projection only
    model = SoupModel({**MODEL_CONFIGS["tiny"], "d_model": 16, "n_heads": 2, "n_blocks": 1},
                      {"asr_en": 5, "st_es": 7}, head_layers={"st_es": 1})
    theta = {id(p) for p in model.shared_parameters()}
    st = model.objective_head_parameters("st_es")
    assert len(st) > 2 and not theta & {id(p) for p in st}
    assert len(model.objective_head_parameters("asr_en")) == 2
