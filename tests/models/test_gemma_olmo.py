"""The pieces Gemma 2 and 3 and OLMo 2 add: soft-capped attention, OLMo 2's q/k norm, refused switches."""
import pytest
import torch
from transformers.models.gemma2 import modeling_gemma2
from transformers.models.olmo2.modeling_olmo2 import apply_rotary_pos_emb

import edgeprune
from edgeprune.models.forward import attention_mask_for, softcapped_flex, softcapped_math
from helpers import mib

B, H, K, S, DH = 2, 4, 2, 9, 8


class _Causal:
    causal = True


def _qkv(seed=0):
    g = torch.Generator().manual_seed(seed)
    # large enough that the cap of 5 binds: logits of tens before capping
    return (torch.randn(B, H, S, DH, generator=g) * 4, torch.randn(B, K, S, DH, generator=g) * 4,
            torch.randn(B, K, S, DH, generator=g))


def _masks():
    padded = torch.ones(B, S, dtype=torch.long)
    padded[1, :3] = 0  # left padding in the second row
    return {"causal": None, "window": attention_mask_for(_Causal, None, S, "cpu", 4),
            "padding": attention_mask_for(_Causal, padded, S, "cpu", None),
            "window and padding": attention_mask_for(_Causal, padded, S, "cpu", 4)}


@pytest.mark.parametrize("kind", list(_masks()))
def test_softcapped_math_matches_hugging_face_eager(kind):
    """The CPU path against transformers' own eager Gemma 2 attention, given the same mask."""
    mask = _masks()[kind]
    q, k, v = _qkv()
    ours = softcapped_math(q, k, v, mask, 0.25, 5.0)
    allowed = mask if mask is not None else torch.ones(S, S, dtype=torch.bool).tril()[None, None]
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    module = torch.nn.Module()
    module.num_key_value_groups, module.training = H // K, False
    theirs, _ = modeling_gemma2.eager_attention_forward(module, q, k, v, additive, scaling=0.25, softcap=5.0)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    # the cap binds at these logits: without it the result differs
    assert (ours - softcapped_math(q, k, v, mask, 0.25, 1e6)).abs().max() > 1e-2


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("kind", list(_masks()))
def test_flex_score_mod_matches_math_path(kind):
    """The CUDA path's FlexAttention score_mod (run by FlexAttention's eager reference on the CPU,
    forward only: the CPU has no FlexAttention backward)."""
    mask = _masks()[kind]
    q, k, v = _qkv(1)
    torch.testing.assert_close(softcapped_flex(q, k, v, mask, 0.25, 5.0, compiled=False),
                               softcapped_math(q, k, v, mask, 0.25, 5.0), rtol=1e-5, atol=1e-5)


def test_olmo2_qk_norm_spans_the_concatenated_heads():
    """Each query head projects its own reader's mixture; the norm's rms is over all heads together."""
    model = mib.shared("allenai/OLMo-2-0425-1B")
    adapter = edgeprune.prunable(model).adapter
    attn = model.model.layers[0].self_attn
    heads, kv, dh = adapter.num_heads, adapter.num_kv_heads, adapter.head_dim
    g = torch.Generator().manual_seed(0)
    readers = torch.randn(heads + 2 * kv, 1, 5, adapter.d_model, generator=g)
    pos = torch.arange(5)[None]
    q, k, _ = adapter.attention_inputs(0, readers, pos)

    def expected(x, proj, norm, n):  # each head's slice of the projection on its own mixture, then the norm
        parts = [x[h] @ proj.weight.view(n, dh, -1)[h].T for h in range(n)]
        return norm(torch.cat(parts, -1)).view(1, 5, n, dh).transpose(1, 2)

    whole_q, whole_k = expected(readers[:heads], attn.q_proj, attn.q_norm, heads), \
        expected(readers[heads:heads + kv], attn.k_proj, attn.k_norm, kv)
    cos, sin = model.model.rotary_emb(readers, pos)
    want_q, want_k = apply_rotary_pos_emb(whole_q, whole_k, cos, sin)
    torch.testing.assert_close(q, want_q)
    torch.testing.assert_close(k, want_k)
    # the readers differ, so this is not a per-head norm: each head normed over its own dh differs
    eps, gain = attn.q_norm.variance_epsilon, attn.q_norm.weight.view(heads, dh)
    own = [readers[h] @ attn.q_proj.weight.view(heads, dh, -1)[h].T for h in range(heads)]
    own = torch.stack([gain[h] * p * torch.rsqrt(p.pow(2).mean(-1, keepdim=True) + eps) for h, p in enumerate(own)], 1)
    assert (own - whole_q).abs().max() > 1e-2
