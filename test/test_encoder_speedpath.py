"""The encoder's fast paths against direct computations (float64, forward and gradients).

Each fast path (head-major rel-pos attention with a fused q/k/v matmul, the explicit and the
SDPA ways to finish it, linear-layer pointwise convolutions, the one-affine masked batch norm,
no padding copy and in-place ReLU in the front-end) must give the formula it replaces, with the
same parameter names, so old checkpoints load unchanged.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from osoup.nets import MODEL_CONFIGS, ConformerEncoder
from osoup.nets.attention import (FastDropout, RelPositionMultiHeadAttention, fast_dropout,
                                  rel_shift, rel_sinusoids)
from osoup.nets.conformer import ConvModule, MaskedBatchNorm1d, valid_mask
from osoup.nets.subsampling import Conv2dSubsampling4

F64 = torch.float64
TIGHT = dict(atol=1e-12, rtol=0.0)


def _grads(module: torch.nn.Module, *inputs: torch.Tensor) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()] + [x.grad.clone() for x in inputs]


def _reset(module: torch.nn.Module, *inputs: torch.Tensor) -> None:
    for t in [*module.parameters(), *inputs]:
        t.grad = None


def direct_attention(att: RelPositionMultiHeadAttention, x, pos, mask):
    """The score formula of osoup/nets/attention.py's docstring, with separate q/k/v matmuls
    and the [B, H, T, T] layout (what the module computed before its fast path)."""
    b, t, d = x.shape
    h, dh = att.n_heads, att.d_head
    q = att.linear_q(x).view(b, t, h, dh).transpose(1, 2)
    k = att.linear_k(x).view(b, t, h, dh).transpose(1, 2)
    v = att.linear_v(x).view(b, t, h, dh).transpose(1, 2)
    p = att.linear_pos(pos).view(2 * t - 1, h, dh).permute(1, 2, 0)
    content = torch.matmul(q + att.pos_bias_u[:, None, :], k.transpose(2, 3))
    position = rel_shift(torch.matmul(q + att.pos_bias_v[:, None, :], p))
    scores = ((content + position) / math.sqrt(dh)).masked_fill(~mask[:, None], float("-inf"))
    out = torch.matmul(torch.softmax(scores, dim=-1), v)
    return att.linear_out(out.transpose(1, 2).reshape(b, t, d))


def _assert_same_output_and_grads(module, x, got, got_grads, want, weight) -> None:
    """The fast path's output and gradients (``got``, ``got_grads``) equal the direct
    computation's ``want`` and the gradients its backward leaves on ``module`` and ``x``."""
    (want * weight).sum().backward()
    torch.testing.assert_close(got, want, **TIGHT)
    for g, w in zip(got_grads, _grads(module, x)):
        torch.testing.assert_close(g, w, **TIGHT)


@pytest.mark.parametrize("use_sdpa", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_paths_match_direct_formula_and_gradients(use_sdpa, causal):
    torch.manual_seed(0)
    b, t, d, h = 3, 9, 24, 3
    att = RelPositionMultiHeadAttention(d, h, dropout=0.0, use_sdpa=use_sdpa).double().train()
    x = torch.randn(b, t, d, dtype=F64, requires_grad=True)
    pos = rel_sinusoids(t, d, dtype=F64)
    keys = valid_mask(torch.tensor([9, 5, 1]), t)
    mask = keys[:, None, :]
    if causal:
        mask = mask & torch.ones(t, t, dtype=torch.bool).tril()
    weight = torch.randn(b, t, d, dtype=F64)
    got = att(x, pos, mask)
    (got * weight).sum().backward()
    got_grads = _grads(att, x)
    _reset(att, x)
    want = direct_attention(att, x, pos, mask)
    _assert_same_output_and_grads(att, x, got, got_grads, want, weight)


def test_attention_dropout_is_applied_in_training_only():
    """Training dropout (explicit CPU path) keeps the output finite and changes it."""
    torch.manual_seed(1)
    att = RelPositionMultiHeadAttention(16, 2, dropout=0.5).double()
    x = torch.randn(2, 7, 16, dtype=F64)
    pos, mask = rel_sinusoids(7, 16, dtype=F64), torch.ones(2, 1, 7, dtype=torch.bool)
    train_out = att.train()(x, pos, mask)
    eval_out = att.eval()(x, pos, mask)
    assert torch.isfinite(train_out).all()
    assert not torch.allclose(train_out, eval_out)


def direct_conv_module(conv: ConvModule, x, valid, causal):
    """Conv1d pointwise layers, explicit padding copy and the textbook masked batch norm."""
    y = F.glu(conv.pointwise1(x.transpose(1, 2)), dim=1).masked_fill(~valid[:, None, :], 0.0)
    left = conv.kernel - 1 if causal else (conv.kernel - 1) // 2
    y = conv.depthwise(F.pad(y, (left, conv.kernel - 1 - left)))
    if conv.norm_type == "batch":
        bn = conv.norm
        if bn.training and not causal:
            m = valid[:, None, :].to(y.dtype)
            n = m.sum()
            mean = (y * m).sum(dim=(0, 2)) / n
            var = (((y - mean[None, :, None]) * m) ** 2).sum(dim=(0, 2)) / n
        else:
            mean, var = bn.running_mean, bn.running_var
        y = (y - mean[None, :, None]) / torch.sqrt(var[None, :, None] + bn.eps)
        y = y * bn.weight[None, :, None] + bn.bias[None, :, None]
    else:
        y = conv.norm(y.transpose(1, 2)).transpose(1, 2)
    return conv.pointwise2(F.silu(y)).transpose(1, 2)


@pytest.mark.parametrize("norm,train,causal", [("batch", True, False), ("batch", False, False),
                                               ("batch", False, True), ("layer", True, False),
                                               ("layer", True, True)])
def test_conv_module_matches_direct_formula_and_gradients(norm, train, causal):
    torch.manual_seed(2)
    conv = ConvModule(12, 5, norm, dropout=0.0).double().train(train)
    if norm == "batch":
        conv.norm.running_mean.uniform_(-1, 1)
        conv.norm.running_var.uniform_(0.5, 2)
    x = torch.randn(3, 11, 12, dtype=F64, requires_grad=True)
    valid = valid_mask(torch.tensor([11, 6, 2]), 11)
    weight = torch.randn(3, 11, 12, dtype=F64)
    state = {k: v.clone() for k, v in conv.state_dict().items()}
    got = conv(x, valid, causal)
    (got * weight).sum().backward()
    got_grads = _grads(conv, x)
    _reset(conv, x)
    conv.load_state_dict(state)  # same running statistics for the direct pass
    want = direct_conv_module(conv, x, valid, causal)
    _assert_same_output_and_grads(conv, x, got, got_grads, want, weight)


def test_masked_batchnorm_gradients_match_torch_batchnorm_on_valid_frames():
    torch.manual_seed(3)
    x = torch.randn(3, 4, 8, dtype=F64, requires_grad=True)
    valid = valid_mask(torch.tensor([8, 3, 5]), 8)
    ours = MaskedBatchNorm1d(4).double().train()
    ref = torch.nn.BatchNorm1d(4).double().train()
    w = torch.randn(3, 4, 8, dtype=F64)
    y = ours(x, valid)
    (y.transpose(1, 2)[valid] * w.transpose(1, 2)[valid]).sum().backward()
    flat = x.detach().transpose(1, 2)[valid].clone().requires_grad_()
    (ref(flat) * w.transpose(1, 2)[valid]).sum().backward()
    torch.testing.assert_close(x.grad.transpose(1, 2)[valid], flat.grad, **TIGHT)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, **TIGHT)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, **TIGHT)


@pytest.mark.parametrize("causal", [False, True])
def test_subsampling_matches_padded_convolutions_and_gradients(causal):
    torch.manual_seed(4)
    fe = Conv2dSubsampling4(20, 8, 6).double()
    feats = torch.randn(2, 31, 20, dtype=F64)
    got, _ = fe(feats, torch.tensor([31, 25]), causal)
    got.sum().backward()
    got_grads = _grads(fe)
    _reset(fe)
    pad = (0, 0, 2, 0) if causal else (0, 0, 0, 0)
    x = torch.relu(fe.conv1(F.pad(feats.unsqueeze(1), pad)))
    x = torch.relu(fe.conv2(F.pad(x, pad)))[:, :, :got.size(1)]
    want = fe.out(x.transpose(1, 2).reshape(2, got.size(1), -1))
    want.sum().backward()
    torch.testing.assert_close(got, want, **TIGHT)
    for g, w in zip(got_grads, _grads(fe)):
        torch.testing.assert_close(g, w, **TIGHT)


def test_checkpoint_names_and_shapes_unchanged():
    """The fast paths add no parameter: an encoder's state dict keeps the names and shapes
    that older checkpoints hold."""
    enc = ConformerEncoder(**{**MODEL_CONFIGS["tiny"], "n_blocks": 1})
    shapes = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    d = 144
    expected = {
        "blocks.0.att.linear_q.weight": (d, d), "blocks.0.att.linear_k.bias": (d,),
        "blocks.0.att.linear_v.weight": (d, d), "blocks.0.att.linear_pos.weight": (d, d),
        "blocks.0.att.pos_bias_u": (4, d // 4), "blocks.0.conv.pointwise1.weight": (2 * d, d, 1),
        "blocks.0.conv.depthwise.weight": (d, 1, 15), "blocks.0.conv.pointwise2.weight": (d, d, 1),
        "blocks.0.conv.norm.running_var": (d,), "frontend.conv2.weight": (64, 64, 3, 3),
    }
    for name, shape in expected.items():
        assert shapes[name] == shape, name
    assert not any("qkv" in k for k in shapes)
    clone = ConformerEncoder(**{**MODEL_CONFIGS["tiny"], "n_blocks": 1})
    clone.load_state_dict(enc.state_dict(), strict=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_dropout_has_the_law_of_dropout(dtype):
    torch.manual_seed(5)
    x = (torch.rand(400, 500) + 0.5).to(dtype).requires_grad_()
    y = fast_dropout(x, 0.1, True)
    assert y.dtype == dtype
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.005  # 200k draws: sd 0.0007
    torch.testing.assert_close(y[kept], (x[kept] / 0.9).to(dtype))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.to(dtype) / 0.9)
    assert fast_dropout(x, 0.1, False) is x and fast_dropout(x, 0.0, True) is x
    assert (fast_dropout(x, 1.0, True) == 0).all()
    module = FastDropout(0.3)
    assert isinstance(module, torch.nn.Dropout) and module.eval()(x) is x
