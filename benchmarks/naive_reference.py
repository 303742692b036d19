"""Baseline (c): a naive re-creation of the reference Edge Pruning training step for GPT-2.

This is *not* edgeprune. It re-creates, op for op, the way the authors' reference implementation
(princeton-nlp/Edge-Pruning, `modeling_fpt2.py` + `fpt2_ioi.py`, as specified in
docs/method.md sections 2.1-2.6 and 9 items 11-16) spends time and memory, so that edgeprune's
training step can be measured against it in the same run on the same device. Written from the
specification; no code is taken from the reference repository.

What it reproduces, deliberately, because these are the costs being measured:
- the hidden state is a (W, B, S, D) "stack" of writer outboxes; with E=2 the two embedding
  writers are placed into a full stack by multiplying with one-hot (W,) vectors (two full stacks
  plus their sum);
- per layer: 3 clean einsums "wbsd,wh->hbsd" over ALL W rows with the gates times the per-layer
  common (valid-prefix) mask, then 3 corrupted einsums over `corr_x` with (1 - gates) * common;
  the shared ln_1 applied to each of the 3H mixtures separately; per-head Q/K/V projections by
  einsum; eager attention (matmul, causal `where`, softmax, matmul); per-head output projection
  with the output bias split b_O / H;
- the node-mask mix y = n x + (1 - n) c, then a scatter into a full zero-padded (W, B, S, D)
  temporary through an einsum with a padded identity (H x W), then an out-of-place add into a new
  full stack; the MLP reads with two einsums "wbsd,w->bsd", runs ln_2 and the MLP, and writes
  through a one-hot (W x 1) einsum and another full add;
- the final read (two einsums over the whole stack), ln_f and the tied unembedding over every
  position (full (B, S, V) logits);
- hard-concrete masks sampled with uniforms drawn on the CPU and copied to the device on every
  call; in eval mode the deterministic mask with its per-tensor top-k (and a host sync);
- per step: a separate reference copy of the model in eval mode runs the clean input (target
  logits) and the corrupted input (returning its final stack, `corr_x`), both without gradient;
  then the pruned model runs the clean input with `corr_x`, the loss is the KL divergence
  KL(full || pruned) at the loss positions (a Python loop over the batch, as the reference does)
  plus the Lagrangian sparsity terms; one backward, gradient clipping at 1.0, an AdamW step with
  four parameter groups (multipliers by gradient ascent), a linear warm-up/decay schedule.

The GPT-2 weights come from a stock Hugging Face GPT2LMHeadModel (any config; random init in the
benchmarks). They are frozen in the pruned model, as in the reference.

Calibration (method.md 2.6): `python benchmarks/naive_reference.py --calibrate` counts the bytes
autograd saves for backward in the pruned forward at GPT-2 small structure, batch 2, sequence 64,
E=2, fp32 (reference: 1,858 MiB, of which 1,540 MiB are 26 stack-sized tensors).
"""
from __future__ import annotations

import argparse
import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# Hard-concrete constants (method.md 3.1)
LEFT, RIGHT, BETA, EPS, FACTOR = -0.1, 1.1, 2.0 / 3.0, 1e-6, 0.8


# ------------------------------------------------------------------------------ hard-concrete

def sample_mask(log_alpha: torch.Tensor) -> torch.Tensor:
    """Training-mode mask: uniforms drawn on the CPU and copied to the device (method.md 3.3)."""
    u = torch.empty(log_alpha.shape, dtype=torch.float32).uniform_(EPS, 1 - EPS).to(log_alpha.device)
    s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + log_alpha) / BETA)
    return F.hardtanh(s * (RIGHT - LEFT) + LEFT, 0.0, 1.0)


def deterministic_mask(log_alpha: torch.Tensor) -> torch.Tensor:
    """Eval-mode mask: sigma(1.2 log alpha) with the round(sum cdf(0)) smallest entries zeroed.

    k is computed per parameter tensor with a host sync, then a top-k, as the reference does.
    """
    n = log_alpha.numel()
    p_zero = torch.sigmoid(BETA * math.log(-LEFT / RIGHT) - log_alpha).clamp(EPS, 1 - EPS)
    k = int(torch.round(n - torch.sum(1 - p_zero)).item())
    soft = torch.sigmoid(log_alpha / BETA * FACTOR).reshape(-1)
    if k > 0:
        if soft.ndim == 0 or n == 1:
            soft = torch.zeros_like(soft)
        else:
            idx = torch.topk(soft, k=k, largest=False).indices
            soft = soft.clone()
            soft[idx] = 0
    return soft.reshape(log_alpha.shape)


# ------------------------------------------------------------------------------ graph sizes

def n_writers(n_layer: int, n_head: int, n_emb: int) -> int:
    return n_emb + n_layer * (n_head + 1)


def n_edges(n_layer: int, n_head: int, n_emb: int) -> int:
    """Closed form of method.md 1.4 (32,936 for GPT-2 small with E=2)."""
    return ((3 * n_head + 1) * (n_layer * n_emb + (n_head + 1) * n_layer * (n_layer - 1) // 2)
            + n_layer * n_head + n_writers(n_layer, n_head, n_emb))


def _init_log_alpha(*shape) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape).normal_(10.0, 0.01))


class _LayerGates(nn.Module):
    """The per-layer mask parameters and the fixed 0/1 buffers of one GPT-2 block (method.md 1.5)."""

    def __init__(self, layer: int, n_head: int, W: int, n_emb: int):
        super().__init__()
        H = n_head
        self.attn_off = n_emb + layer * (H + 1)       # first head writer of this layer = valid prefix
        self.mlp_off = self.attn_off + H              # the MLP writer = the MLP's valid prefix
        self.q_read_log_alpha = _init_log_alpha(W, H)
        self.k_read_log_alpha = _init_log_alpha(W, H)
        self.v_read_log_alpha = _init_log_alpha(W, H)
        self.mlp_read_log_alpha = _init_log_alpha(W)
        self.attn_write_log_alpha = _init_log_alpha(H)
        self.mlp_write_log_alpha = _init_log_alpha(1)
        attn_common = torch.zeros(W, 1)
        attn_common[: self.attn_off] = 1
        mlp_common = torch.zeros(W)
        mlp_common[: self.mlp_off] = 1
        attn_scatter = torch.zeros(H, W)                  # zero-padded identity
        attn_scatter[torch.arange(H), self.attn_off + torch.arange(H)] = 1
        mlp_scatter = torch.zeros(W, 1)                   # one-hot column
        mlp_scatter[self.mlp_off, 0] = 1
        self.register_buffer("attn_common", attn_common)
        self.register_buffer("mlp_common", mlp_common)
        self.register_buffer("attn_scatter", attn_scatter)
        self.register_buffer("mlp_scatter", mlp_scatter)


@dataclass
class NaiveOutput:
    logits: torch.Tensor
    writer_states: torch.Tensor | None
    edge_sparsity: torch.Tensor
    node_sparsity: torch.Tensor
    edge_loss: torch.Tensor | None
    node_loss: torch.Tensor | None


class NaiveFPT2(nn.Module):
    """GPT-2 run over the (W, B, S, D) writer stack, the reference way. Wraps an HF GPT2LMHeadModel."""

    def __init__(self, hf_model, with_embedding_nodes: bool = True):
        super().__init__()
        cfg = hf_model.config
        if getattr(cfg, "scale_attn_by_inverse_layer_idx", False) or getattr(cfg, "reorder_and_upcast_attn", False):
            raise NotImplementedError("only the plain GPT-2 attention is re-created")
        self.hf = hf_model
        self.L, self.H, self.D = cfg.n_layer, cfg.n_head, cfg.n_embd
        self.hd = self.D // self.H
        self.E = 2 if with_embedding_nodes else 0
        self.W = n_writers(self.L, self.H, self.E)
        self.n_edges = n_edges(self.L, self.H, self.E)
        self.n_nodes = self.W
        self.layers = nn.ModuleList(_LayerGates(l, self.H, self.W, self.E) for l in range(self.L))
        self.final_read_log_alpha = _init_log_alpha(self.W)
        if self.E:
            self.tok_write_log_alpha = _init_log_alpha(1)
            self.pos_write_log_alpha = _init_log_alpha(1)
            tok_onehot = torch.zeros(self.W)
            tok_onehot[0] = 1
            pos_onehot = torch.zeros(self.W)
            pos_onehot[1] = 1
            self.register_buffer("tok_onehot", tok_onehot)
            self.register_buffer("pos_onehot", pos_onehot)
        self.lambda_edges_1 = nn.Parameter(torch.zeros(1))
        self.lambda_edges_2 = nn.Parameter(torch.zeros(1))
        self.lambda_nodes_1 = nn.Parameter(torch.zeros(1))
        self.lambda_nodes_2 = nn.Parameter(torch.zeros(1))
        n_pos = cfg.n_positions
        self.register_buffer("causal", torch.tril(torch.ones(n_pos, n_pos, dtype=torch.bool)).view(1, 1, n_pos, n_pos),
                             persistent=False)
        self.to(device=hf_model.lm_head.weight.device)

    # -- masks
    def _mask(self, log_alpha):
        return sample_mask(log_alpha) if self.training else deterministic_mask(log_alpha)

    def pruning_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("hf.")]

    # -- embedding writers
    def _write_embeddings(self, tok, pos, corr_x):
        if not self.E:
            stack = torch.zeros(self.W, *tok.shape, dtype=tok.dtype, device=tok.device)
            return stack, tok + pos, 0
        z_tok = self._mask(self.tok_write_log_alpha).reshape(1, 1, 1)
        tok = tok * z_tok
        if corr_x is not None:
            tok = tok + corr_x[0] * (1 - z_tok)
        tok_stack = tok.unsqueeze(0) * self.tok_onehot.reshape(-1, 1, 1, 1)
        z_pos = self._mask(self.pos_write_log_alpha).reshape(1, 1, 1)
        pos = pos * z_pos
        if corr_x is not None:
            pos = pos + corr_x[1] * (1 - z_pos)
        pos_stack = pos.unsqueeze(0) * self.pos_onehot.reshape(-1, 1, 1, 1)
        return tok_stack + pos_stack, None, z_tok.sum() + z_pos.sum()

    # -- one block
    def _attention(self, blk, q_in, k_in, v_in):
        H, hd, D = self.H, self.hd, self.D
        w = blk.attn.c_attn.weight.view(D, 3, H, hd)
        b = blk.attn.c_attn.bias.view(3, 1, H, 1, hd)
        q = torch.einsum("nbld,dnh->bnlh", q_in, w[:, 0]) + b[0]
        k = torch.einsum("nbld,dnh->bnlh", k_in, w[:, 1]) + b[1]
        v = torch.einsum("nbld,dnh->bnlh", v_in, w[:, 2]) + b[2]
        scores = torch.matmul(q, k.transpose(-1, -2))
        scores = scores / torch.full([], hd ** 0.5, dtype=scores.dtype, device=scores.device)
        S = q.shape[-2]
        mask_value = torch.full([], torch.finfo(scores.dtype).min, dtype=scores.dtype, device=scores.device)
        scores = torch.where(self.causal[:, :, :S, :S], scores, mask_value)
        probs = F.softmax(scores, dim=-1).type(v.dtype)
        ctx = torch.matmul(probs, v)                                        # (B, H, S, hd)
        wo = blk.attn.c_proj.weight.view(H, hd, D)
        return torch.einsum("bnsh,nhd->nbsd", ctx, wo) + blk.attn.c_proj.bias.view(1, 1, 1, D) / H

    def _block(self, l, stack, corr_x, embeds):
        g, blk = self.layers[l], self.hf.transformer.h[l]
        # attention read: 3 clean + 3 corrupted einsums over all W rows
        zq, zk, zv = self._mask(g.q_read_log_alpha), self._mask(g.k_read_log_alpha), self._mask(g.v_read_log_alpha)
        zq_c, zk_c, zv_c = zq * g.attn_common, zk * g.attn_common, zv * g.attn_common
        xq = torch.einsum("wbsd,wh->hbsd", stack, zq_c)
        xk = torch.einsum("wbsd,wh->hbsd", stack, zk_c)
        xv = torch.einsum("wbsd,wh->hbsd", stack, zv_c)
        if embeds is not None:
            xq, xk, xv = xq + embeds.unsqueeze(0), xk + embeds.unsqueeze(0), xv + embeds.unsqueeze(0)
        if corr_x is not None:
            xq = xq + torch.einsum("wbsd,wh->hbsd", corr_x, (1 - zq) * g.attn_common)
            xk = xk + torch.einsum("wbsd,wh->hbsd", corr_x, (1 - zk) * g.attn_common)
            xv = xv + torch.einsum("wbsd,wh->hbsd", corr_x, (1 - zv) * g.attn_common)
        edges = zq_c.sum() + zk_c.sum() + zv_c.sum()
        # per-head LayerNorm of every mixture, then attention
        out = self._attention(blk, blk.ln_1(xq), blk.ln_1(xk), blk.ln_1(xv))     # (H, B, S, D)
        # attention write: node mix, scatter through the padded identity, new full stack
        zn = self._mask(g.attn_write_log_alpha).reshape(-1, 1, 1, 1)
        out = out * zn
        if corr_x is not None:
            out = out + corr_x[g.attn_off: g.attn_off + self.H] * (1 - zn)
        stack = stack + torch.einsum("nbsd,nw->wbsd", out, g.attn_scatter)
        nodes = zn.sum()
        # MLP read: two einsums over all W rows
        zm = self._mask(g.mlp_read_log_alpha)
        zm_c = zm * g.mlp_common
        xm = torch.einsum("wbsd,w->bsd", stack, zm_c)
        if embeds is not None:
            xm = xm + embeds
        if corr_x is not None:
            xm = xm + torch.einsum("wbsd,w->bsd", corr_x, (1 - zm) * g.mlp_common)
        edges = edges + zm_c.sum()
        h = blk.ln_2(xm)
        h = blk.mlp.c_proj(blk.mlp.act(blk.mlp.c_fc(h)))
        # MLP write: node mix, one-hot einsum, new full stack
        zw = self._mask(g.mlp_write_log_alpha).reshape(1, 1, 1)
        h = h * zw
        if corr_x is not None:
            h = h + corr_x[g.mlp_off] * (1 - zw)
        stack = stack + torch.einsum("ibsd,wi->wbsd", h.unsqueeze(0), g.mlp_scatter)
        return stack, edges, nodes + zw.sum()

    def forward(self, input_ids, corr_x=None, target_edge_sparsity=None, target_node_sparsity=None,
                output_writer_states=False) -> NaiveOutput:
        tr = self.hf.transformer
        B, S = input_ids.shape
        pos_ids = torch.arange(S, device=input_ids.device).unsqueeze(0)
        stack, embeds, nodes = self._write_embeddings(tr.wte(input_ids), tr.wpe(pos_ids), corr_x)
        edges = 0
        for l in range(self.L):
            stack, e, n = self._block(l, stack, corr_x, embeds)
            edges, nodes = edges + e, nodes + n
        writer_states = stack if output_writer_states else None
        # final read
        zf = self._mask(self.final_read_log_alpha)
        x = torch.einsum("wbsd,w->bsd", stack, zf)
        if embeds is not None:
            x = x + embeds
        if corr_x is not None:
            x = x + torch.einsum("wbsd,w->bsd", corr_x, 1 - zf)
        edges = edges + zf.sum()
        logits = self.hf.lm_head(tr.ln_f(x))
        s_edge = 1 - edges / self.n_edges
        s_node = 1 - nodes / self.n_nodes
        edge_loss = node_loss = None
        if target_edge_sparsity is not None:
            d = s_edge - target_edge_sparsity
            edge_loss = self.lambda_edges_1.reshape([]) * d + self.lambda_edges_2.reshape([]) * d ** 2
        if target_node_sparsity is not None:
            d = s_node - target_node_sparsity
            node_loss = self.lambda_nodes_1.reshape([]) * d + self.lambda_nodes_2.reshape([]) * d ** 2
        return NaiveOutput(logits, writer_states, s_edge, s_node, edge_loss, node_loss)


# ------------------------------------------------------------------------------ the training step

def _linear_warmup_decay(warmup: int, total: int):
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


class NaiveReferenceStep:
    """One reference-style optimisation step per call to `step()`; returns the loss as a float.

    clean_ids, corrupted_ids: (B, S) token ids; positions: (B,) loss position per example, or a
    (B, 2) tensor of [start, end) spans. Run settings default to the paper's IOI sweep (method.md 4.2:
    LRs 0.8, ramp 2,500 steps, warm-up 200, 3,000 steps, node loss disabled).
    """

    def __init__(self, hf_model, clean_ids, corrupted_ids, positions=None, edge_sparsity=0.98,
                 node_sparsity=0.72, with_embedding_nodes=True, lr=0.8, reg_lr=0.8, max_steps=3000,
                 warmup_steps=200, ramp_steps=2500, max_grad_norm=1.0, reference_copy=True):
        self.clean, self.corrupted = clean_ids, corrupted_ids
        B, S = clean_ids.shape
        if positions is None:
            positions = torch.full((B,), S - 1, dtype=torch.long)
        positions = torch.as_tensor(positions).cpu()
        if positions.ndim == 1:
            positions = torch.stack([positions, positions + 1], dim=1)
        self.spans = [(int(a), int(b)) for a, b in positions.tolist()]
        for p in hf_model.parameters():
            p.requires_grad_(False)
        ref_hf = copy.deepcopy(hf_model) if reference_copy else hf_model
        self.reference = NaiveFPT2(ref_hf, with_embedding_nodes).eval()
        for p in self.reference.parameters():
            p.requires_grad_(False)
        self.model = NaiveFPT2(hf_model, with_embedding_nodes).train()
        self.edge_target, self.node_target = edge_sparsity, node_sparsity
        self.ramp_steps, self.max_grad_norm = ramp_steps, max_grad_norm
        groups = {"edge": [], "lam_edge": [], "node": []}
        for n, p in self.model.named_parameters():
            if n.startswith("hf."):
                continue
            if "write_log_alpha" in n:
                groups["node"].append(p)
            elif "read_log_alpha" in n:
                groups["edge"].append(p)
            elif n.startswith("lambda_edges"):
                groups["lam_edge"].append(p)
            else:                                    # node multipliers: --disable_node_loss, stay 0
                p.requires_grad_(False)
        self.params = groups["edge"] + groups["lam_edge"] + groups["node"]
        self.optimizer = torch.optim.AdamW([
            {"params": groups["edge"], "lr": lr},
            {"params": groups["lam_edge"], "lr": reg_lr, "maximize": True},
            {"params": groups["node"], "lr": lr},
        ], lr=lr)
        schedule = _linear_warmup_decay(warmup_steps, max_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.global_step = 0

    def _targets(self):
        frac = min(1.0, self.global_step / self.ramp_steps) if self.ramp_steps else 1.0
        return self.edge_target * frac, self.node_target * frac

    def reference_passes(self):
        """The two no-grad passes of the reference copy: target logits and the corrupted stack corr_x."""
        with torch.no_grad():
            target_logits = self.reference(self.clean).logits
            corr_x = self.reference(self.corrupted, output_writer_states=True).writer_states
            corr_x = corr_x.transpose(0, 1)          # the trainer's (B, W, S, D) view ...
        return target_logits, corr_x.transpose(0, 1)  # ... and the LM-head wrapper's transpose back

    def forward_loss(self, reference_outputs=None):
        """The three forward passes (or the last one, given reference_outputs) and the loss."""
        target_logits, corr_x = reference_outputs if reference_outputs is not None else self.reference_passes()
        t_edge, t_node = self._targets()
        out = self.model(self.clean, corr_x=corr_x, target_edge_sparsity=t_edge, target_node_sparsity=t_node)
        kl = 0
        for i, (a, b) in enumerate(self.spans):
            lp = F.log_softmax(out.logits[i, a:b], dim=-1)
            lt = F.log_softmax(target_logits[i, a:b], dim=-1)
            kl = kl + F.kl_div(lp, lt, reduction="batchmean", log_target=True)
        kl = kl / len(self.spans)
        return kl + out.edge_loss + out.node_loss

    def step(self) -> float:
        loss = self.forward_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        return loss.item()


# ------------------------------------------------------------------------------ calibration

def saved_bytes(step: NaiveReferenceStep) -> dict:
    """Bytes autograd saves for backward in one pruned forward + loss, deduplicated by storage.

    Parameters and buffers of both models are excluded (they are resident anyway). Returns the
    total, the stack-sized part and the number of stack-sized storages (method.md 2.6 predicts
    2L+1 stacks plus corr_x).
    """
    exclude = set()
    for mod in (step.model, step.reference):
        for t in list(mod.parameters()) + list(mod.buffers()):
            exclude.add(t.untyped_storage().data_ptr())
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if st.nbytes() and ptr not in exclude:
            seen[ptr] = max(seen.get(ptr, 0), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step.forward_loss()
    m = step.model
    B, S = step.clean.shape
    stack_bytes = m.W * B * S * m.D * m.hf.lm_head.weight.element_size()
    n_stack = sum(1 for v in seen.values() if v == stack_bytes)
    del loss
    return {"total_bytes": sum(seen.values()), "n_storages": len(seen), "stack_bytes": stack_bytes,
            "n_stack_sized": n_stack, "stack_sized_bytes": n_stack * stack_bytes}


def peak_live_bytes(step: NaiveReferenceStep) -> int:
    """Peak bytes of live storages created during the pruned forward and backward (the reference
    passes run first, outside the window, as in method.md 2.6's measurement; CPU only)."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _memory import CpuMemoryTracker
    ref = step.reference_passes()
    tracker = CpuMemoryTracker()
    for mod in (step.model, step.reference):
        tracker.ignore(*mod.parameters(), *mod.buffers())
    tracker.ignore(step.clean, step.corrupted, *ref)
    with tracker:
        loss = step.forward_loss(ref)
        loss.backward()
        del loss
    step.optimizer.zero_grad(set_to_none=True)
    return tracker.peak


def gpt2_config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024):
    from transformers import GPT2Config
    eos = min(50256, vocab_size - 1)
    return GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size, n_positions=n_positions,
                      attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, bos_token_id=eos, eos_token_id=eos)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calibrate", action="store_true", help="count saved-for-backward bytes (method.md 2.6)")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--no-embedding-nodes", action="store_true")
    p.add_argument("--peak", action="store_true", help="also track the peak of live storages in forward+backward")
    args = p.parse_args(argv)
    from transformers import GPT2LMHeadModel
    torch.manual_seed(0)
    model = GPT2LMHeadModel(gpt2_config(args.layers, args.heads, args.width))
    V = model.config.vocab_size
    clean = torch.randint(0, V, (args.batch, args.seq))
    corr = torch.randint(0, V, (args.batch, args.seq))
    step = NaiveReferenceStep(model, clean, corr, with_embedding_nodes=not args.no_embedding_nodes)
    r = saved_bytes(step)
    mib = 2 ** 20
    print(f"GPT-2 L={args.layers} H={args.heads} D={args.width} E={step.model.E} W={step.model.W} "
          f"B={args.batch} S={args.seq} fp32")
    print(f"saved for backward: {r['total_bytes'] / mib:,.1f} MiB in {r['n_storages']} storages; "
          f"{r['n_stack_sized']} stack-sized ({r['stack_bytes'] / mib:.2f} MiB each) = "
          f"{r['stack_sized_bytes'] / mib:,.1f} MiB  [2L+2 = {2 * args.layers + 2}]")
    if args.peak:
        print(f"peak of live storages in the pruned forward + backward: {peak_live_bytes(step) / mib:,.1f} MiB "
              "(reference passes, corr_x and weights outside the window)")


if __name__ == "__main__":
    main()
