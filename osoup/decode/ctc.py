"""CTC decoding on batched log-probabilities: greedy search and prefix beam search.

Both functions take ``log_probs[B, T, V]`` (log-softmax output of a CTC head) and the valid
frame count of each utterance, and return token-index sequences (CTC indices, blank removed),
one list per utterance. Frames at or beyond an utterance's length are ignored.

Prefix beam search follows Graves (2012) / Hannun et al. (2014): every prefix keeps two
log-probabilities, of all alignments ending in blank (``pb``) and ending in its last token
(``pnb``). A token equal to the prefix's last token extends the prefix only from ``pb`` (the
repeat must be separated by a blank); from ``pnb`` it collapses into the same prefix.

The search is run on tensors for the whole batch and beam at once: each frame makes, for every
(utterance, beam slot), one "stay" candidate and ``prune_topk`` "extend" candidates, merges
candidates that denote the same prefix (identified by a double polynomial hash, merged with a
scatter log-sum-exp), and keeps the ``beam`` best. Prefixes are recovered at the end through
per-frame back-pointers. The only Python loop is over frames.
"""
from __future__ import annotations

import torch
from torch import Tensor

# Two 31-bit polynomial hashes of the token sequence, packed into one int64 key. Products
# stay below 2**62, so nothing overflows; a collision needs both hashes to agree.
_M1, _P1 = 2_147_483_647, 1_000_003
_M2, _P2 = 2_147_483_629, 911_382_323


def _check_inputs(log_probs: Tensor, lengths: Tensor) -> Tensor:
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be [B, T, V], got shape {tuple(log_probs.shape)}")
    lengths = torch.as_tensor(lengths, device=log_probs.device).long()
    if lengths.shape != (log_probs.shape[0],):
        raise ValueError(f"lengths must be [B={log_probs.shape[0]}], got shape {tuple(lengths.shape)}")
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > log_probs.shape[1]):
        raise ValueError(f"lengths must lie in [0, T={log_probs.shape[1]}], got {lengths.tolist()}")
    return lengths


def _split_rows(values: Tensor, keep: Tensor) -> list[list[int]]:
    """Per row of ``values[B, T]``, the entries where ``keep`` is true, as Python lists."""
    counts = keep.sum(dim=1).tolist()
    flat = values[keep].tolist()
    out, start = [], 0
    for n in counts:
        out.append(flat[start:start + n])
        start += n
    return out


def greedy_search(log_probs: Tensor, lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """Best-path decoding: argmax per frame, merge repeats, drop blanks.

    Runs on whole-batch tensors; frames at or beyond ``lengths[b]`` are ignored.
    """
    lengths = _check_inputs(log_probs, lengths)
    return collapse_best_path(log_probs.argmax(dim=-1), lengths, blank)


def collapse_best_path(best: Tensor, lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """Token sequences of per-frame best ids ``best[B, T]``: merge repeats, drop blanks.

    Split out of :func:`greedy_search` so that long-form decoding (``osoup.decode.chunked``)
    can keep only the ids of each chunk instead of its posteriors.
    """
    T = best.shape[1]
    valid = torch.arange(T, device=best.device)[None, :] < lengths.to(best.device)[:, None]
    prev = torch.cat([torch.full_like(best[:, :1], -1), best[:, :-1]], dim=1)
    keep = valid & (best != blank) & (best != prev)
    return _split_rows(best.cpu(), keep.cpu())


def _scatter_logsumexp(src: Tensor, index: Tensor, n: int) -> Tensor:
    """Row-wise log-sum-exp of ``src[B, N]`` into ``n`` groups given by ``index[B, N]``."""
    neg_inf = torch.full((src.shape[0], n), float("-inf"), dtype=src.dtype, device=src.device)
    peak = neg_inf.scatter_reduce(1, index, src, reduce="amax", include_self=True)
    peak = torch.where(torch.isinf(peak), torch.zeros_like(peak), peak)
    summed = torch.zeros_like(peak).scatter_add(1, index, torch.exp(src - peak.gather(1, index)))
    return torch.log(summed) + peak


def prefix_beam_search_nbest(
    log_probs: Tensor,
    lengths: Tensor,
    beam: int = 10,
    blank: int = 0,
    prune_topk: int | None = None,
    nbest: int = 1,
) -> list[list[tuple[list[int], float]]]:
    """CTC prefix beam search; per utterance the ``nbest`` best (hypothesis, log-prob) pairs.

    ``log-prob`` is log P(prefix | x) summed over all alignments that survived the beam.
    At each frame a prefix may be extended only by the ``prune_topk`` most probable non-blank
    tokens of that frame (default: ``beam``; pass the vocabulary size for no pruning); staying
    (blank, or repeating the last token) is always considered.
    """
    lengths = _check_inputs(log_probs, lengths)
    if beam < 1 or nbest < 1:
        raise ValueError(f"beam and nbest must be >= 1, got beam={beam} nbest={nbest}")
    B, T, V = log_probs.shape
    if not 0 <= blank < V:
        raise ValueError(f"blank index {blank} outside the vocabulary of size {V}")
    if B == 0:
        return []
    dev = log_probs.device
    lp = log_probs if log_probs.dtype in (torch.float32, torch.float64) else log_probs.float()
    if prune_topk is not None and prune_topk < 1:
        raise ValueError(f"prune_topk must be >= 1, got {prune_topk}")
    K = min(prune_topk if prune_topk is not None else beam, V - 1)
    W = beam
    neg_inf = float("-inf")

    # Per-frame pruning once for the whole batch: top-K non-blank tokens of every frame.
    no_blank = lp.clone()
    no_blank[..., blank] = neg_inf
    top_vals, top_ids = no_blank.topk(K, dim=-1)
    blank_lp = lp[..., blank]  # [B, T]

    # Beam state: slot 0 holds the empty prefix; the others are empty (-inf).
    pb = torch.full((B, W), neg_inf, dtype=lp.dtype, device=dev)
    pb[:, 0] = 0.0
    pnb = torch.full_like(pb, neg_inf)
    last = torch.full((B, W), -1, dtype=torch.long, device=dev)
    h1 = torch.zeros((B, W), dtype=torch.long, device=dev)
    h2 = torch.zeros_like(h1)
    slots = torch.arange(W, device=dev).expand(B, W)
    parents, tokens = [], []  # per frame [B, W]: slot of the previous frame, appended token or -1

    for t in range(T):
        active = (t < lengths)[:, None]  # [B, 1]
        total = torch.logaddexp(pb, pnb)
        # "Stay" candidates: same prefix, through blank or by repeating its last token.
        lp_last = lp[:, t].gather(1, last.clamp(min=0))
        stay_pb = total + blank_lp[:, t, None]
        stay_pnb = torch.where(last >= 0, pnb + lp_last, torch.full_like(pnb, neg_inf))
        # "Extend" candidates [B, W, K]: prefix + c; a repeat of the last token needs a blank.
        c = top_ids[:, t, None, :].expand(B, W, K)
        base = torch.where(c == last[:, :, None], pb[:, :, None], total[:, :, None])
        ext_pnb = base + top_vals[:, t, None, :]
        ext_h1 = (h1[:, :, None] * _P1 + c + 1) % _M1
        ext_h2 = (h2[:, :, None] * _P2 + c + 1) % _M2

        cand_pb = torch.cat([stay_pb, torch.full_like(ext_pnb, neg_inf).flatten(1)], dim=1)
        cand_pnb = torch.cat([stay_pnb, ext_pnb.flatten(1)], dim=1)
        cand_key = torch.cat([h1 * _M2 + h2, (ext_h1 * _M2 + ext_h2).flatten(1)], dim=1)
        cand_last = torch.cat([last, c.flatten(1)], dim=1)
        cand_parent = torch.cat([slots, slots[:, :, None].expand(B, W, K).flatten(1)], dim=1)
        cand_token = torch.cat([torch.full_like(last, -1), c.flatten(1)], dim=1)
        cand_h1 = torch.cat([h1, ext_h1.flatten(1)], dim=1)
        cand_h2 = torch.cat([h2, ext_h2.flatten(1)], dim=1)
        N = cand_key.shape[1]

        # Merge candidates with the same prefix: sort keys, number the runs of equal keys.
        sorted_key, order = cand_key.sort(dim=1)
        new_run = torch.ones_like(sorted_key, dtype=torch.bool)
        new_run[:, 1:] = sorted_key[:, 1:] != sorted_key[:, :-1]
        group = torch.empty_like(order).scatter_(1, order, new_run.long().cumsum(dim=1) - 1)
        g_pb = _scatter_logsumexp(cand_pb, group, N)
        g_pnb = _scatter_logsumexp(cand_pnb, group, N)
        # One representative candidate per group (all members denote the same prefix).
        rep = torch.zeros((B, N), dtype=torch.long, device=dev).scatter_reduce(
            1, group, torch.arange(N, device=dev).expand(B, N), reduce="amax", include_self=True)

        _, best = torch.logaddexp(g_pb, g_pnb).topk(W, dim=1)
        pick = rep.gather(1, best)
        new = {
            "pb": g_pb.gather(1, best), "pnb": g_pnb.gather(1, best),
            "last": cand_last.gather(1, pick), "h1": cand_h1.gather(1, pick),
            "h2": cand_h2.gather(1, pick), "parent": cand_parent.gather(1, pick),
            "token": cand_token.gather(1, pick),
        }
        pb = torch.where(active, new["pb"], pb)
        pnb = torch.where(active, new["pnb"], pnb)
        last = torch.where(active, new["last"], last)
        h1 = torch.where(active, new["h1"], h1)
        h2 = torch.where(active, new["h2"], h2)
        parents.append(torch.where(active, new["parent"], slots))
        tokens.append(torch.where(active, new["token"], torch.full_like(last, -1)))

    scores = torch.logaddexp(pb, pnb)
    n = min(nbest, W)
    top_scores, top_slots = scores.topk(n, dim=1)  # [B, n]
    # Follow the back-pointers from the last frame to the first, for all B x n at once.
    cur = top_slots
    seq = []
    for t in range(T - 1, -1, -1):
        seq.append(tokens[t].gather(1, cur))
        cur = parents[t].gather(1, cur)
    if seq:
        path = torch.stack(seq[::-1], dim=2).reshape(B * n, T).cpu()  # [B*n, T]
    else:
        path = torch.empty((B * n, 0), dtype=torch.long)
    hyps = _split_rows(path, path >= 0)
    score_list = top_scores.reshape(-1).tolist()
    out = []
    for b in range(B):
        row = [(hyps[b * n + i], score_list[b * n + i]) for i in range(n)
               if score_list[b * n + i] != neg_inf]
        out.append(row or [([], neg_inf)])
    return out


def prefix_beam_search(
    log_probs: Tensor,
    lengths: Tensor,
    beam: int = 10,
    blank: int = 0,
    prune_topk: int | None = None,
) -> list[list[int]]:
    """CTC prefix beam search; the most probable labelling found for each utterance."""
    nbest = prefix_beam_search_nbest(log_probs, lengths, beam=beam, blank=blank,
                                     prune_topk=prune_topk, nbest=1)
    return [row[0][0] for row in nbest]
