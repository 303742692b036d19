"""Edge attribution on a stock Hugging Face GPT-2, with PyTorch hooks only (nothing of edgeprune's).

The independent reference for edgeprune.attribute. The graph is named as edgeprune names it
(writers `tok_embeds`, `pos_embeds`, `a{l}.h{h}`, `m{l}`; readers `a{l}.h{h}.q|k|v`, `m{l}`,
`resid_post`), and a score is m(with the edge) - m(without it), or its first-order estimate, summed
over positions and averaged over examples. Run it in float64.

How each quantity is read off the stock model:
- a writer's output: wte / wpe outputs; a head's, its slice of c_proj's input times its rows of
  c_proj's weight (the bias is shared and cancels in every difference); an MLP's, block.mlp's output;
- a reader's input gradient: ln_2 and ln_f get a fresh tensor from a forward pre-hook, whose
  gradient is the MLP's or the final read's alone; a head's q, k or v input gradient is its slice
  of c_attn's output gradient, pulled back through c_attn's weight columns and ln_1 (vjp);
- exact patching: the reader's input minus the writer's clean-minus-corrupted output, through the
  same hooks (c_attn's output slice recomputed for a head's q, k or v);
- a node group fixed (eap-ig-activations, the EAP-IG package's definition): wte's output, c_proj's
  output (the layer's attention) or the MLP's output replaced by a tensor that does not depend on
  the module's input, so no gradient flows back through it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .edge_names import edge_names, writer_names


class HookedGPT2:
    def __init__(self, model):
        self.model = model
        self.t = model.transformer
        cfg = model.config
        self.L, self.H, self.D = cfg.n_layer, cfg.n_head, cfg.n_embd
        self.dh = self.D // self.H

    # ------------------------------------------------------------------ names
    def writers(self, layer_limit: int | None = None, with_own_heads: bool = False) -> list[str]:
        """Writers a reader of `layer_limit` may read (all with None); the MLP also reads its own heads."""
        return writer_names(["tok_embeds", "pos_embeds"], self.L, self.H, layer_limit, with_own_heads)

    def edges(self) -> list[tuple[str, str]]:
        return edge_names(["tok_embeds", "pos_embeds"], self.L, self.H)

    # ------------------------------------------------------------------ one hooked run
    def run(self, ids, *, embed_tok=None, reader_inputs=None, patch=None, grads=False, outputs=None):
        """Logits of one forward, and what the hooks saw.

        embed_tok: replaces wte's output. reader_inputs(key, x) -> x': replaces the input of ln_1
        (key ("attn", l)), ln_2 (("mlp", l)) or ln_f (("final", None)) for that module only.
        patch: (reader name, tensor) subtracted from that one reader's input. outputs: {("attn" | "mlp",
        layer): tensor} replacing that layer's attention output (c_proj's) or MLP output.
        Returns (logits, seen) with seen["writers"][name] and, with grads, the tensors to
        differentiate: seen["ln_in"][key] (each module's input) and seen["qkv"][l] (c_attn's output).
        """
        seen = {"writers": {}, "ln_in": {}, "qkv": {}, "outputs": {}}
        outputs = outputs or {}
        handles = []
        t = self.t

        def on_wte(module, args, out):
            out = embed_tok if embed_tok is not None else out
            if grads:  # the model's own weights may be frozen: the graph starts here
                out = out.detach().requires_grad_()
            seen["writers"]["tok_embeds"] = out
            return out

        def on_wpe(module, args, out):
            seen["writers"]["pos_embeds"] = out[None] if out.dim() == 2 else out
            return out

        handles.append(t.wte.register_forward_hook(on_wte))
        handles.append(t.wpe.register_forward_hook(on_wpe))

        def ln_pre(key, reader):
            def hook(module, args):
                x = args[0]
                if reader_inputs is not None:
                    x = reader_inputs(key, x)
                if patch is not None and patch[0] == reader:
                    x = x - patch[1]
                x = x + 0.0  # a tensor of this module alone: its gradient is this reader's
                if grads:
                    x.retain_grad()
                seen["ln_in"][key] = x
                return (x,) + tuple(args[1:])
            return hook

        for layer, block in enumerate(t.h):
            handles.append(block.ln_1.register_forward_pre_hook(ln_pre(("attn", layer), None)))
            handles.append(block.ln_2.register_forward_pre_hook(ln_pre(("mlp", layer), f"m{layer}")))

            def on_c_attn(module, args, out, layer=layer, block=block):
                if patch is not None and patch[0].startswith(f"a{layer}.h"):
                    head, kind = patch[0].split(".")[1:]
                    h, col = int(head[1:]), "qkv".index(kind)
                    x = seen["ln_in"][("attn", layer)] - patch[1]
                    ln = block.ln_1  # called functionally: calling the modules would run these hooks again
                    fresh = F.layer_norm(x, (self.D,), ln.weight, ln.bias, ln.eps) @ module.weight + module.bias
                    sl = slice(col * self.D + h * self.dh, col * self.D + (h + 1) * self.dh)
                    out = out.clone()
                    out[..., sl] = fresh[..., sl]
                if grads:
                    out.retain_grad()
                seen["qkv"][layer] = out
                return out

            def on_c_proj(module, args, layer=layer):
                ctx = args[0]
                w = module.weight  # Conv1D: (D_in, D_out), out = ctx @ w + b
                for h in range(self.H):
                    rows = slice(h * self.dh, (h + 1) * self.dh)
                    seen["writers"][f"a{layer}.h{h}"] = ctx[..., rows] @ w[rows]

            def on_mlp(module, args, out, layer=layer):
                seen["outputs"][("mlp", layer)] = out
                seen["writers"][f"m{layer}"] = out
                return outputs.get(("mlp", layer), out)

            def on_c_proj_out(module, args, out, layer=layer):
                seen["outputs"][("attn", layer)] = out
                return outputs.get(("attn", layer), out)

            handles.append(block.attn.c_attn.register_forward_hook(on_c_attn))
            handles.append(block.attn.c_proj.register_forward_pre_hook(on_c_proj))
            handles.append(block.attn.c_proj.register_forward_hook(on_c_proj_out))
            handles.append(block.mlp.register_forward_hook(on_mlp))
        handles.append(t.ln_f.register_forward_pre_hook(ln_pre(("final", None), "resid_post")))
        try:
            with torch.set_grad_enabled(grads):
                logits = self.model(ids).logits
        finally:
            for handle in handles:
                handle.remove()
        return logits, seen

    def reader_grads(self, seen) -> dict[str, torch.Tensor]:
        """Each reader's input gradient, after backward on a run with grads=True."""
        def grad(t):  # None when nothing after t reached the metric (a fixed node group)
            return t.grad if t.grad is not None else torch.zeros_like(t)
        out = {"resid_post": grad(seen["ln_in"][("final", None)])}
        for layer, block in enumerate(self.t.h):
            out[f"m{layer}"] = grad(seen["ln_in"][("mlp", layer)])
            x = seen["ln_in"][("attn", layer)].detach()
            g_qkv = grad(seen["qkv"][layer])
            w = block.attn.c_attn.weight  # (D, 3D)
            for col, kind in enumerate("qkv"):
                for h in range(self.H):
                    sl = slice(col * self.D + h * self.dh, col * self.D + (h + 1) * self.dh)
                    g_ln_out = g_qkv[..., sl] @ w[:, sl].T
                    leaf = x.clone().requires_grad_()
                    (g,) = torch.autograd.grad(block.ln_1(leaf), leaf, g_ln_out)
                    out[f"a{layer}.h{h}.{kind}"] = g
        return out

    # ------------------------------------------------------------------ scores
    def _contract(self, deltas, grads, scale=1.0, into=None):
        into = {} if into is None else into
        for w, r in self.edges():
            into[(w, r)] = into.get((w, r), 0.0) + scale * float((deltas[w] * grads[r]).sum())
        return into

    def _grad_run(self, ids, metric, **kw):
        logits, seen = self.run(ids, grads=True, **kw)
        metric(logits).sum().backward()
        return seen, self.reader_grads(seen)

    def scores(self, clean, corrupted, metric, method: str, steps: int = 5, edges=None) -> dict[tuple[str, str], float]:
        """metric(logits) -> per-example m. Scores averaged over the batch's examples; exact scores
        only the given edges (default all)."""
        _, corr = self.run(corrupted)
        _, cln = self.run(clean)
        c_w, x_w = corr["writers"], cln["writers"]
        delta = {w: x_w[w] - c_w[w] for w in x_w}
        n = clean.shape[0]
        total: dict = {}
        if method in ("eap", "eap-ig-inputs", "clean-corrupted"):
            alphas = {"eap": [1.0], "clean-corrupted": [0.0, 1.0],
                      "eap-ig-inputs": [k / steps for k in range(steps)]}[method]
            for a in alphas:
                tok = c_w["tok_embeds"] + a * (x_w["tok_embeds"] - c_w["tok_embeds"])
                _, grads = self._grad_run(clean, metric, embed_tok=tok)
                self._contract(delta, grads, 1.0 / (n * len(alphas)), total)
            return total
        if method == "eap-ig-activations":  # the EAP-IG package's: one node group fixed at a time
            groups = [("input", None)] + [(kind, layer) for layer in range(self.L) for kind in ("attn", "mlp")]
            x_out, c_out = cln["outputs"], corr["outputs"]
            for group in groups:
                for k in range(1, steps + 1):
                    a = k / steps
                    if group[0] == "input":
                        tok = c_w["tok_embeds"] + a * (x_w["tok_embeds"] - c_w["tok_embeds"])
                        _, grads = self._grad_run(clean, metric, embed_tok=tok)
                    else:
                        fixed = (c_out[group] + a * (x_out[group] - c_out[group])).detach()
                        _, grads = self._grad_run(clean, metric, outputs={group: fixed})
                    self._contract(delta, grads, 1.0 / (n * len(groups) * steps), total)
            return total
        if method == "eap-ig-gates":
            corr_in = corr["ln_in"]
            for k in range(1, steps + 1):
                a = k / steps
                seen, grads = self._grad_run(clean, metric,
                                             reader_inputs=lambda key, x, a=a: corr_in[key] + a * (x - corr_in[key]))
                d = {w: seen["writers"][w].detach() - c_w[w] for w in c_w}
                self._contract(d, grads, 1.0 / (n * steps), total)
            return total
        if method == "exact":
            full = metric(self.run(clean)[0])
            for w, r in edges or self.edges():
                patched = metric(self.run(clean, patch=(r, delta[w]))[0])
                total[(w, r)] = float((full - patched).sum()) / n
            return total
        raise KeyError(method)


def logit_diff(positions, answers, distractors):
    """m(logits) per example: answer minus distractor logit at each example's position."""
    def m(logits):
        rows = torch.arange(logits.shape[0])
        at = logits[rows, positions]
        return at[rows, answers] - at[rows, distractors]
    return m


def neg_kl(positions, full_logits):
    """m(logits) = -KL(full || logits) at each example's position (a higher m is closer)."""
    rows = torch.arange(full_logits.shape[0])
    p = torch.log_softmax(full_logits[rows, positions], -1)

    def m(logits):
        q = torch.log_softmax(logits[rows, positions], -1)
        return -(p.exp() * (p - q)).sum(-1)
    return m
