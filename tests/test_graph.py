"""Edge counts and names of the computation graph (method.md section 1)."""
import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

import edgeprune
from edgeprune.graph import Graph, num_edges


@pytest.mark.parametrize("embedding_nodes,expected", [(2, 32_936), (1, 32_491), (0, 32_046)])
def test_gpt2_small_counts(embedding_nodes, expected):
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(GPT2Config())
    pm = edgeprune.prunable(model, embedding_nodes=embedding_nodes)
    assert pm.graph.num_edges == expected == num_edges(12, 12, embedding_nodes)
    assert len(pm.graph.edges) == expected and pm.graph.num_writers == 156 + embedding_nodes
    assert len(pm.graph.readers) == 445


def test_codellama_13b_count_from_config():
    config = LlamaConfig(num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=40, hidden_size=5120,
                         intermediate_size=13824, vocab_size=32016)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    pm = edgeprune.prunable(model)
    assert pm.graph.embedding_nodes == 0 and pm.graph.num_writers == 1640
    assert pm.graph.num_edges == 3_872_820 == num_edges(40, 40, 0, 40)
    assert num_edges(40, 40, 1, 40) == 3_877_661


def test_tracr_counts_and_gqa_names():
    assert num_edges(4, 1, 2) == 94 and num_edges(2, 1, 2) == 32
    g = Graph(num_layers=2, num_heads=4, num_kv_heads=2, embedding_nodes=1)
    assert g.attn_reader_names(1) == [f"a1.h{h}.q" for h in range(4)] + ["a1.h0.k", "a1.h1.k", "a1.h0.v", "a1.h1.v"]
    assert g.num_edges == num_edges(2, 4, 1, num_kv_heads=2) == len(g.edges)
    # validity: a layer's attention reads earlier layers only; its MLP also reads its own heads
    assert ("a1.h0", "a1.h2.q") not in g.edge_index and ("a1.h0", "m1") in g.edge_index
    assert ("m1", "resid_post") in g.edge_index and ("m1", "m0") not in g.edge_index


def test_embedding_nodes_validated():
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(LlamaConfig(num_hidden_layers=1, hidden_size=32, intermediate_size=8,
                                                             num_attention_heads=4, vocab_size=10))
    with pytest.raises(ValueError, match="embedding_nodes=2 is not valid for llama"):
        edgeprune.prunable(model, embedding_nodes=2)


def test_pythia_70m_parallel_residual_counts():
    """Pythia (GPT-NeoX, parallel residual): a layer's MLP does not read its own layer's heads."""
    from transformers import GPTNeoXConfig
    config = GPTNeoXConfig(num_hidden_layers=6, num_attention_heads=8, hidden_size=512, intermediate_size=2048,
                           vocab_size=50304, use_parallel_residual=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    g = edgeprune.prunable(model).graph
    assert g.parallel and g.num_writers == 54
    sequential = num_edges(6, 8, 0)
    # each of the 6 MLPs loses its 8 same-layer heads
    assert g.num_edges == num_edges(6, 8, 0, parallel=True) == sequential - 6 * 8 == len(g.edges)
    assert ("a1.h0", "m1") not in g.edge_index and ("a0.h0", "m1") in g.edge_index
    assert ("m0", "m1") in g.edge_index and ("m1", "a2.h0.q") in g.edge_index


# MIB's models and the other families with norms on the branch outputs, as published, default
# embedding nodes: (writers, edges) with one writer per head, and with one per layer's attention.
PUBLISHED_COUNTS = {"openai-community/gpt2": ((158, 32_936), (26, 5_810)),
                    "Qwen/Qwen2.5-0.5B": ((360, 79_356), (48, 10_560)),
                    "google/gemma-2-2b": ((234, 50_167), (52, 11_128)),
                    "meta-llama/Llama-3.1-8B": ((1_056, 804_112), (64, 48_704)),
                    "google/gemma-3-1b-pt": ((130, 11_609), (52, 4_628)),
                    "allenai/OLMo-2-0425-1B": ((272, 100_488), (32, 11_808))}


@pytest.mark.parametrize("name", list(PUBLISHED_COUNTS))
def test_published_counts_both_graphs(name):
    from transformers import AutoConfig
    from helpers.mib import PUBLISHED
    d = dict(PUBLISHED[name])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(d.pop("model_type"), **d))
    for writers, expected in zip(("heads", "layer"), PUBLISHED_COUNTS[name]):
        g = edgeprune.prunable(model, attention_writers=writers).graph
        assert (g.num_writers, g.num_edges) == expected
        assert g.num_edges == num_edges(g.num_layers, g.num_heads, g.embedding_nodes, g.num_kv_heads,
                                        attention_writers=writers)
    assert len(g.edges) == g.num_edges  # the enumeration, once (Llama-3.1-8B's per-head graph has 804k edges)


def test_attention_as_one_writer_per_layer():
    """The coarser graph: writers a0, a1 instead of heads; readers stay per head (GQA-numbered)."""
    g = Graph(num_layers=2, num_heads=4, num_kv_heads=2, embedding_nodes=1, attention_writers="layer")
    assert g.writers == ["embeds", "a0", "m0", "a1", "m1"]
    assert g.attn_reader_names(1) == Graph(2, 4, 2, 1).attn_reader_names(1)
    assert g.num_edges == len(g.edges) == num_edges(2, 4, 1, 2, attention_writers="layer") == 8 * 1 + 2 + 8 * 3 + 4 + 5
    assert ("a0", "a1.h3.q") in g.edge_index and ("a1", "m1") in g.edge_index and ("a1", "a1.h0.q") not in g.edge_index
    assert [s.name for s in g.node_segments] == ["embeds", "a0", "m0", "a1", "m1"]
    parallel = Graph(2, 4, 2, 1, parallel=True, attention_writers="layer")
    assert ("a1", "m1") not in parallel.edge_index and parallel.num_edges == g.num_edges - 2


def test_drawing_one_writer_per_layer():
    """A layer's heads' readers feed that layer's writer, so the cleaning keeps them."""
    from edgeprune.draw import clean_edges
    edges = [("embeds", "a0.h1.q"), ("embeds", "a0.h2.v"), ("a0", "resid_post"), ("embeds", "a1.h0.k")]
    assert clean_edges(edges, layer_writers=True) == set(edges[:3])  # a1 writes nowhere: its input goes
    assert clean_edges(edges) == {("a0", "resid_post")}                # per-head reading: a0.h1 is no writer


# MIB's grouped-query models as published, one input node, key and value readers per query head:
# MIB's own edge counts (its evaluator's denominators).
MIB_GROUPED_COUNTS = {"Qwen/Qwen2.5-0.5B": 179_749, "google/gemma-2-2b": 74_218, "meta-llama/Llama-3.1-8B": 1_592_881}


@pytest.mark.parametrize("name", list(MIB_GROUPED_COUNTS))
def test_key_and_value_edges_per_query_head_give_mibs_counts(name):
    from transformers import AutoConfig
    from edgeprune.mib import MIBGraph
    from helpers.mib import PUBLISHED
    d = dict(PUBLISHED[name])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(d.pop("model_type"), **d))
    g = edgeprune.prunable(model, embedding_nodes=1, kv_edges="query").graph
    L, H, K = g.num_layers, g.num_heads, g.num_kv_heads
    assert K < H and g.num_kv_readers == H and len(g.attn_reader_names(0)) == 3 * H
    assert g.num_edges == MIB_GROUPED_COUNTS[name] == MIBGraph(g).num_edges == num_edges(L, H, 1, K, kv_edges="query")
    grouped = edgeprune.prunable(model, embedding_nodes=1).graph
    # each layer's 2 (H - K) extra key and value readers read its attention prefix
    assert g.num_edges - grouped.num_edges == sum(2 * (H - K) * g.attn_prefix(layer) for layer in range(L))


def test_kv_edges_per_query_head_name_keys_and_values_by_query_head():
    g = Graph(2, 4, 2, 1, kv_edges="query")
    assert g.attn_reader_names(1) == [f"a1.h{h}.{x}" for x in "qkv" for h in range(4)]
    assert g.num_edges == len(g.edges) == num_edges(2, 4, 1, 2, kv_edges="query") == 3 * 4 * (1 + 6) + 5 + 10 + 11
    assert [s.rows for s in g.segments[:3]] == [4, 4, 4]
    # without grouped-query attention the two choices are one graph (recorded as "query")
    assert Graph(2, 4, 4, 1) == Graph(2, 4, 4, 1, kv_edges="query") and Graph(2, 4, 4, 1).kv_edges == "query"
    assert Graph(2, 4, 2, 1) != g and Graph(2, 4, 2, 1).grouped_kv and not g.grouped_kv
