"""TorchNeighborSampler on the real MovieLens-100K graph: real edges, exact fan-outs, uniform and
seeded draws, and exact equivalence with full-graph message passing at unlimited fan-out.

The tests that take ``device`` run the sampler on the CPU and, where there is one, on a CUDA GPU."""

from __future__ import annotations

import math
from itertools import combinations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.nn import SAGEConv, to_hetero
from torch_geometric.sampler import HeteroSamplerOutput, NodeSamplerInput
from torch_geometric.utils import degree, scatter

from graphrec.data.convert import ConvertConfig, convert
from graphrec.graph import GraphConfig, build_graph
from graphrec.sampling import TorchNeighborSampler, merge_nodes, sample_csc

INTERACTS = ("user", "interacts", "item")
REV_INTERACTS = ("item", "rev_interacts", "user")
HAS_GENRE = ("item", "has_genre", "genre")
REV_HAS_GENRE = ("genre", "rev_has_genre", "item")


@pytest.fixture(scope="module")
def graph(shared_data, tmp_path_factory) -> HeteroData:
    result = convert("movielens", shared_data / "ml-100k", tmp_path_factory.mktemp("sampling") / "ml",
                     ConvertConfig(min_rating=3, split="random"))
    # users, items and genres: the fan-outs below name each of their edge types
    return build_graph(result.dataset, GraphConfig(user_entities=()))


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="needs a CUDA GPU"))]


def sample(sampler: TorchNeighborSampler, node_type: str, seeds: Tensor) -> HeteroSamplerOutput:
    """The sampled computation graph, checked to be on the sampler's device and returned on the CPU."""
    out = sampler.sample_from_nodes(NodeSamplerInput(None, seeds, input_type=node_type))
    tensors = [*out.node.values(), *out.row.values(), *out.col.values(), *out.edge.values()]
    assert {tensor.device for tensor in tensors} == {sampler.device}
    return HeteroSamplerOutput(
        node={key: value.cpu() for key, value in out.node.items()},
        row={key: value.cpu() for key, value in out.row.items()},
        col={key: value.cpu() for key, value in out.col.items()},
        edge={key: value.cpu() for key, value in out.edge.items()},
        num_sampled_nodes=out.num_sampled_nodes, num_sampled_edges=out.num_sampled_edges)


def in_degree(graph: HeteroData, edge_type) -> Tensor:
    return degree(graph[edge_type].edge_index[1], graph[edge_type[2]].num_nodes).long()


# ---------------------------------------------------------------------------- structure
@pytest.mark.parametrize("device", DEVICES)
def test_sampled_edges_are_real_edges_with_their_ids(graph, device):
    seeds = torch.randperm(graph["user"].num_nodes, generator=torch.Generator().manual_seed(0))[:200]
    out = sample(TorchNeighborSampler(graph, [10, 5, 3], seed=0, device=device), "user", seeds)

    assert torch.equal(out.node["user"][:200], seeds)  # seeds first, in input order
    for node_type, nodes in out.node.items():
        assert torch.unique(nodes).numel() == nodes.numel(), node_type
        assert sum(out.num_sampled_nodes[node_type]) == nodes.numel()
    total_edges = 0
    for edge_type in graph.edge_types:
        source, _, target = edge_type
        edge_index = graph[edge_type].edge_index
        sampled = torch.stack([out.node[source][out.row[edge_type]], out.node[target][out.col[edge_type]]])
        # ``edge`` holds original edge ids, so it also pins down the exact edge.
        assert torch.equal(edge_index[:, out.edge[edge_type]], sampled), edge_type
        keys = edge_index[0] * graph[target].num_nodes + edge_index[1]
        assert torch.isin(sampled[0] * graph[target].num_nodes + sampled[1], keys).all()
        assert sum(out.num_sampled_edges[edge_type]) == sampled.size(1)
        total_edges += sampled.size(1)
    assert total_edges > 1000  # the check above was not vacuous


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("replace", [False, True])
def test_fan_out_is_exact_per_hop_and_edge_type(graph, replace, device):
    fan_out = {INTERACTS: [3, 2, 4], REV_INTERACTS: [4, -1, 2], HAS_GENRE: [2, 1, 0], REV_HAS_GENRE: [1, 0, 2]}
    seeds = torch.arange(0, 300, 3)
    sampler = TorchNeighborSampler(graph, fan_out, replace=replace, seed=1, device=device)
    out = sample(sampler, "user", seeds)

    # The nodes added at hop h (the seeds for h = 0) are the destinations sampled at hop h + 1.
    added = {node_type: torch.tensor(counts).cumsum(0) for node_type, counts in out.num_sampled_nodes.items()}
    checked = 0
    for edge_type, counts in out.num_sampled_edges.items():
        target = edge_type[2]
        full_degree = in_degree(graph, edge_type)
        edge_start = 0
        for hop, count in enumerate(counts):
            cols = out.col[edge_type][edge_start:edge_start + count]
            edge_start += count
            first, last = (0 if hop == 0 else int(added[target][hop - 1])), int(added[target][hop])
            frontier = torch.arange(first, last)
            assert bool(((cols >= first) & (cols < last)).all()), (edge_type, hop)
            got = torch.bincount(cols - first, minlength=frontier.numel()) if frontier.numel() else cols
            deg = full_degree[out.node[target][frontier]]
            k = fan_out[edge_type][hop]
            if k == -1:
                expected = deg
            elif replace:
                expected = torch.where(deg > 0, k, 0)
            else:
                expected = deg.clamp(max=k)
            assert torch.equal(got, expected), (edge_type, hop)
            checked += int((deg > k).sum()) if k > 0 else 0
        assert edge_start == out.col[edge_type].numel()
    assert checked > 50  # plenty of nodes had more neighbours than the fan-out


@pytest.mark.parametrize("device", DEVICES)
def test_without_replacement_neighbours_are_distinct(graph, device):
    out = sample(TorchNeighborSampler(graph, [8, 8], seed=3, device=device), "item", torch.arange(400))
    for edge_type in graph.edge_types:
        pairs = torch.stack([out.row[edge_type], out.col[edge_type]])
        assert pairs.size(1) > 0 and pairs.unique(dim=1).size(1) == pairs.size(1), edge_type


# ---------------------------------------------------------------------------- uniformity
def hub(graph: HeteroData, edge_type) -> tuple[int, int]:
    deg = in_degree(graph, edge_type)
    node = int(deg.argmax())
    return node, int(deg[node])


def csc(graph: HeteroData, edge_type) -> tuple[Tensor, Tensor]:
    sampler = TorchNeighborSampler(graph, [1], seed=0)
    return sampler.colptr[edge_type], sampler.row[edge_type]


@pytest.mark.parametrize("fan_out", [1, 7])
def test_draws_from_a_hub_are_uniform(graph, fan_out):
    node, deg = hub(graph, HAS_GENRE)  # the largest genre: hundreds of items
    assert deg > 20 * fan_out
    colptr, _ = csc(graph, HAS_GENRE)
    trials = math.ceil(20 * deg / fan_out)  # ~20 expected draws per neighbour
    generator = torch.Generator().manual_seed(12345)
    position, owner = sample_csc(colptr, torch.full((trials,), node), fan_out, generator=generator)
    assert torch.equal(torch.bincount(owner, minlength=trials), torch.full((trials,), fan_out))
    counts = torch.bincount(position - colptr[node], minlength=deg)
    assert counts.numel() == deg
    assert chisquare(counts.numpy()).pvalue > 1e-3


def test_draws_with_replacement_are_uniform(graph):
    node, deg = hub(graph, HAS_GENRE)
    colptr, _ = csc(graph, HAS_GENRE)
    generator = torch.Generator().manual_seed(7)
    position, _ = sample_csc(colptr, torch.full((4 * deg,), node), 5, replace=True, generator=generator)
    counts = torch.bincount(position - colptr[node], minlength=deg)
    assert chisquare(counts.numpy()).pvalue > 1e-3


def test_every_subset_is_equally_likely(graph):
    # Floyd's algorithm must give each k-subset the same probability, not just each element.
    deg = in_degree(graph, INTERACTS)
    node = int((deg == 6).nonzero()[0])
    colptr, _ = csc(graph, INTERACTS)
    trials, k = 6000, 3
    position, _ = sample_csc(colptr, torch.full((trials,), node), k,
                             generator=torch.Generator().manual_seed(99))
    chosen = (position - colptr[node]).view(trials, k).sort(dim=1).values
    subsets = {subset: index for index, subset in enumerate(combinations(range(6), k))}
    codes = torch.tensor([subsets[tuple(row)] for row in chosen.tolist()])
    counts = torch.bincount(codes, minlength=len(subsets))
    assert counts.numel() == 20 and bool((counts > 0).all())
    assert chisquare(counts.numpy()).pvalue > 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_sampler_draws_are_uniform_end_to_end(graph, device):
    # On a GPU every batch re-seeds the device's generator: the draws must stay uniform across batches.
    deg = in_degree(graph, INTERACTS)
    item = int(((deg >= 30) & (deg <= 40)).nonzero()[0])
    users = graph[INTERACTS].edge_index[0][graph[INTERACTS].edge_index[1] == item]
    fan_out = {edge_type: [4 if edge_type == INTERACTS else 0] for edge_type in graph.edge_types}
    sampler = TorchNeighborSampler(graph, fan_out, seed=2024, device=device)
    drawn = torch.cat([sample(sampler, "item", torch.tensor([item])).node["user"] for _ in range(250)])
    assert torch.isin(drawn, users).all()
    counts = torch.bincount(torch.searchsorted(users.sort().values, drawn), minlength=users.numel())
    assert counts.sum() == 250 * 4
    assert chisquare(counts.numpy()).pvalue > 1e-3


# ---------------------------------------------------------------------------- seeding
def outputs_equal(a: HeteroSamplerOutput, b: HeteroSamplerOutput) -> bool:
    return (all(torch.equal(a.node[key], b.node[key]) for key in a.node)
            and all(torch.equal(getattr(a, field)[key], getattr(b, field)[key])
                    for field in ("row", "col", "edge") for key in a.row))


@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_same_sample_different_seed_different_sample(graph, device):
    seeds = torch.arange(100)
    first = [sample(TorchNeighborSampler(graph, [5, 5], seed=11, device=device), "user", seeds) for _ in range(2)]
    assert outputs_equal(*first)
    other = sample(TorchNeighborSampler(graph, [5, 5], seed=12, device=device), "user", seeds)
    assert not outputs_equal(first[0], other)
    sampler = TorchNeighborSampler(graph, [5, 5], seed=11, device=device)
    assert outputs_equal(sample(sampler, "user", seeds), first[0])
    assert not outputs_equal(sample(sampler, "user", seeds), first[0])  # the stream moves on


@pytest.mark.parametrize("device", DEVICES)
def test_the_cpu_generator_state_is_the_whole_random_state(graph, device):
    # What a training checkpoint saves (sampler.generator) must replay the samples, on a GPU too.
    seeds = torch.arange(100)
    sampler = TorchNeighborSampler(graph, [5, 5], seed=3, device=device)
    sample(sampler, "user", seeds)
    state = sampler.generator.get_state()
    expected = [sample(sampler, "user", seeds) for _ in range(2)]
    restored = TorchNeighborSampler(graph, [5, 5], seed=99, device=device)
    restored.generator.set_state(state)
    assert all(outputs_equal(sample(restored, "user", seeds), out) for out in expected)


# ---------------------------------------------------------------------------- equivalence
def features(graph: HeteroData, dim: int = 8) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {node_type: torch.randn(graph[node_type].num_nodes, dim, generator=generator)
            for node_type in graph.node_types}


class TwoLayerSAGE(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = SAGEConv((-1, -1), 16)
        self.conv2 = SAGEConv((-1, -1), 8)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


def normalised_propagation(x: dict[str, Tensor], edge_index: dict, weight: dict, num_nodes: dict,
                           layers: int) -> dict[str, Tensor]:
    """LightGCN-style: x_d <- sum over relations and in-edges of w_sd * x_s, ``layers`` times."""
    for _ in range(layers):
        out = {node_type: torch.zeros(count, x[node_type].size(1)) for node_type, count in num_nodes.items()}
        for edge_type, (row, col) in edge_index.items():
            out[edge_type[2]] += scatter(weight[edge_type].unsqueeze(1) * x[edge_type[0]][row], col, 0,
                                         dim_size=num_nodes[edge_type[2]], reduce="sum")
        x = out
    return x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed_type", ["user", "item"])
def test_unlimited_fan_out_reproduces_full_graph_propagation(graph, seed_type, device):
    seeds = torch.randperm(graph[seed_type].num_nodes, generator=torch.Generator().manual_seed(5))[:64]
    out = sample(TorchNeighborSampler(graph, [-1, -1], seed=0, device=device), seed_type, seeds)
    x = features(graph)
    sub_x = {node_type: x[node_type][out.node[node_type]] for node_type in graph.node_types}
    sub_edges = {edge_type: torch.stack([out.row[edge_type], out.col[edge_type]]) for edge_type in graph.edge_types}
    full_edges = {edge_type: graph[edge_type].edge_index for edge_type in graph.edge_types}

    torch.manual_seed(0)
    model = to_hetero(TwoLayerSAGE(), graph.metadata(), aggr="sum")
    with torch.no_grad():
        full = model(x, full_edges)[seed_type][seeds]
        sampled = model(sub_x, sub_edges)[seed_type][:seeds.numel()]
    torch.testing.assert_close(sampled, full, rtol=1e-5, atol=1e-5)

    # Symmetric normalisation with the *full-graph* degrees (a LightGCN layer per relation).
    def weights(edges: dict, ids: dict | None) -> dict:
        result = {}
        for edge_type, (row, col) in edges.items():
            source, _, target = edge_type
            out_degree = degree(full_edges[edge_type][0], graph[source].num_nodes)
            in_deg = degree(full_edges[edge_type][1], graph[target].num_nodes)
            global_row = row if ids is None else ids[source][row]
            global_col = col if ids is None else ids[target][col]
            result[edge_type] = (out_degree[global_row] * in_deg[global_col]).rsqrt()
        return result

    num_nodes = {node_type: graph[node_type].num_nodes for node_type in graph.node_types}
    full = normalised_propagation(x, full_edges, weights(full_edges, None), num_nodes, 2)[seed_type][seeds]
    sub_nodes = {node_type: nodes.numel() for node_type, nodes in out.node.items()}
    sampled = normalised_propagation(sub_x, sub_edges, weights(sub_edges, out.node), sub_nodes, 2)[seed_type]
    torch.testing.assert_close(sampled[:seeds.numel()], full, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- helpers and errors
def test_merge_nodes_keeps_first_occurrence_order():
    nodes, local = merge_nodes(torch.tensor([5, 3]), torch.tensor([7, 3, 9, 7, 5, 1]))
    assert nodes.tolist() == [5, 3, 7, 9, 1]
    assert local.tolist() == [2, 1, 3, 2, 0, 4]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), unique=True, max_size=10), st.lists(st.integers(0, 30), max_size=40))
def test_merge_nodes_matches_a_dictionary(existing, candidates):
    expected_nodes, position = list(existing), {node: index for index, node in enumerate(existing)}
    for node in candidates:
        if node not in position:
            position[node] = len(expected_nodes)
            expected_nodes.append(node)
    nodes, local = merge_nodes(torch.tensor(existing, dtype=torch.long), torch.tensor(candidates, dtype=torch.long))
    assert nodes.tolist() == expected_nodes
    assert local.tolist() == [position[node] for node in candidates]


def test_bad_input_is_refused(graph):
    sampler = TorchNeighborSampler(graph, [2], seed=0)
    with pytest.raises(ValueError, match="duplicates"):
        sample(sampler, "user", torch.tensor([1, 2, 1]))
    with pytest.raises(ValueError, match=r"\[0, 943\)"):
        sample(sampler, "user", torch.tensor([1, 943]))
    with pytest.raises(ValueError, match="node type"):
        sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor([0])))
    with pytest.raises(ValueError, match="fan-outs"):
        TorchNeighborSampler(graph, [2, -3])
    with pytest.raises(ValueError, match="Missing number of neighbors"):
        TorchNeighborSampler(graph, {INTERACTS: [2]})
    with pytest.raises(TypeError, match="heterogeneous"):
        TorchNeighborSampler(Data(edge_index=torch.tensor([[0], [1]]), num_nodes=2), [2])
