"""PyG's NodeLoader / LinkLoader driven by graphrec's samplers on the real MovieLens-100K graph,
and BPR subgraphs."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.loader import LinkLoader, NodeLoader
from torch_geometric.sampler import BaseSampler, NeighborSampler

from graphrec.data.convert import ConvertConfig, convert
from graphrec.graph import build_graph
from graphrec.sampling import (
    TorchNeighborSampler,
    bpr_subgraph,
    link_neighbor_loader,
    make_neighbor_sampler,
    neighbor_loader,
    sliceable_view,
    uses_pyg_lib,
)

INTERACTS = ("user", "interacts", "item")


@pytest.fixture(scope="module")
def graph(shared_data, tmp_path_factory) -> HeteroData:
    result = convert("movielens", shared_data / "ml-100k", tmp_path_factory.mktemp("loader") / "ml",
                     ConvertConfig(min_rating=3, split="random"))
    return build_graph(result.dataset)


def assert_valid_batch(batch: HeteroData, graph: HeteroData) -> int:
    """The structural contract of a sampled mini-batch; returns its number of edges."""
    assert isinstance(batch, HeteroData)
    for node_type in graph.node_types:
        n_id = batch[node_type].n_id
        assert batch[node_type].num_nodes == n_id.numel()
        assert torch.unique(n_id).numel() == n_id.numel()
        if n_id.numel():
            assert int(n_id.min()) >= 0 and int(n_id.max()) < graph[node_type].num_nodes
        assert sum(batch[node_type].num_sampled_nodes) == n_id.numel()
    edges = 0
    for edge_type in graph.edge_types:
        source, _, target = edge_type
        local = batch[edge_type].edge_index
        global_pairs = torch.stack([batch[source].n_id[local[0]], batch[target].n_id[local[1]]])
        # e_id names the original edge, which must join exactly the two global nodes.
        assert torch.equal(graph[edge_type].edge_index[:, batch[edge_type].e_id], global_pairs), edge_type
        assert sum(batch[edge_type].num_sampled_edges) == local.size(1)
        edges += local.size(1)
    return edges


def samplers(graph: HeteroData, num_neighbors, seed: int) -> dict[str, BaseSampler]:
    return {"make_neighbor_sampler": make_neighbor_sampler(graph, num_neighbors, seed=seed),
            "TorchNeighborSampler": TorchNeighborSampler(graph, num_neighbors, seed=seed)}


# ---------------------------------------------------------------------------- sampler choice
def test_make_neighbor_sampler_picks_pyg_lib_when_available(graph):
    sampler = make_neighbor_sampler(graph, [5, 5], seed=0)
    if uses_pyg_lib():
        assert isinstance(sampler, NeighborSampler)
    else:
        # pyg-lib has no PyPI wheels and torch-sparse takes 15+ minutes to compile, so neither is
        # installed here and PyG's NeighborSampler cannot sample at all (it raises ImportError):
        # the PyG path cannot be exercised in this environment, the fallback must be chosen.
        assert isinstance(sampler, TorchNeighborSampler)
        with pytest.warns(UserWarning, match="pyg-lib"), pytest.raises(ImportError):
            pyg_sampler = NeighborSampler(graph, [5])
            next(iter(NodeLoader(graph, pyg_sampler, input_nodes="user", batch_size=4)))


@pytest.mark.parametrize("which", ["make_neighbor_sampler", "TorchNeighborSampler"])
def test_node_loader_over_all_users(graph, which):
    sampler = samplers(graph, [10, 5], seed=0)[which]
    # PyG's loaders cannot slice the genre ``names`` list; the view leaves it out and the
    # transform puts it back.
    view, transform = sliceable_view(graph)
    loader = NodeLoader(view, node_sampler=sampler, input_nodes="user", batch_size=128, shuffle=True,
                        generator=torch.Generator().manual_seed(0), transform=transform)
    seen, total_edges = [], 0
    for batch in loader:
        size = batch["user"].batch_size
        assert size == batch["user"].input_id.numel() == batch["user"].num_sampled_nodes[0]
        assert torch.equal(batch["user"].n_id[:size], batch["user"].input_id)  # seeds first
        assert batch["item"].num_sampled_nodes[0] == 0
        total_edges += assert_valid_batch(batch, graph)
        seen.append(batch["user"].input_id)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(graph["user"].num_nodes))
    assert total_edges > 10_000


@pytest.mark.parametrize("which", ["make_neighbor_sampler", "TorchNeighborSampler"])
def test_link_loader_over_interactions(graph, which):
    sampler = samplers(graph, [5, 3], seed=0)[which]
    edge_label_index = graph[INTERACTS].edge_index[:, :1000]
    view, transform = sliceable_view(graph)
    loader = LinkLoader(view, link_sampler=sampler, edge_label_index=(INTERACTS, edge_label_index),
                        neg_sampling="binary", batch_size=200, transform=transform)
    labelled = []
    for batch in loader:
        assert_valid_batch(batch, graph)
        store = batch[INTERACTS]
        pairs = torch.stack([batch["user"].n_id[store.edge_label_index[0]],
                             batch["item"].n_id[store.edge_label_index[1]]])
        positive = store.edge_label == 1
        assert int(positive.sum()) == int((~positive).sum()) == store.input_id.numel()
        assert torch.equal(pairs[:, positive], edge_label_index[:, store.input_id])
        labelled.append(store.input_id)
    assert torch.equal(torch.cat(labelled), torch.arange(1000))


def test_link_loader_with_triplets_and_seeded_negatives(graph):
    def batches(seed: int) -> list[HeteroData]:
        return list(link_neighbor_loader(graph, [4, 2], (INTERACTS, graph[INTERACTS].edge_index[:, :600]),
                                         batch_size=150, shuffle=True, seed=seed, neg_sampling="triplet"))

    first, again, other = batches(3), batches(3), batches(4)
    edges = graph[INTERACTS].edge_index
    for batch in first:
        assert_valid_batch(batch, graph)
        ids = batch[INTERACTS].input_id
        users = batch["user"].n_id[batch["user"].src_index]
        assert torch.equal(users, edges[0, ids])
        assert torch.equal(batch["item"].n_id[batch["item"].dst_pos_index], edges[1, ids])
        assert batch["item"].dst_neg_index.shape == ids.shape
    def negatives(batches: list[HeteroData]) -> Tensor:
        return torch.cat([batch["item"].n_id[batch["item"].dst_neg_index] for batch in batches])

    assert torch.equal(negatives(first), negatives(again))
    assert not torch.equal(negatives(first), negatives(other))
    assert same_batches(first, again)


# ---------------------------------------------------------------------------- neighbor_loader
def node_batches(graph: HeteroData, seed: int, **kwargs) -> list[HeteroData]:
    return list(neighbor_loader(graph, [6, 3], ("item", torch.arange(0, 600, 2)), batch_size=100, shuffle=True,
                                seed=seed, **kwargs))


def same_batches(a: list[HeteroData], b: list[HeteroData]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x[node_type].n_id, y[node_type].n_id) for x, y in zip(a, b) for node_type in x.node_types)


def test_neighbor_loader_is_seeded_and_keeps_entity_names(graph):
    first = node_batches(graph, seed=1)
    assert same_batches(first, node_batches(graph, seed=1))
    assert not same_batches(first, node_batches(graph, seed=2))
    names = graph["genre"].names
    for batch in first:
        assert_valid_batch(batch, graph)
        size = batch["item"].batch_size
        assert torch.equal(batch["item"].n_id[:size], batch["item"].input_id * 2)
        # Python-list node attributes are sliced along with the tensors.
        assert batch["genre"].names == [names[index] for index in batch["genre"].n_id.tolist()]
    assert "names" in graph["genre"]  # the caller's graph is left untouched


def test_neighbor_loader_in_worker_processes(graph):
    batches = node_batches(graph, seed=5, num_workers=2)
    assert same_batches(batches, node_batches(graph, seed=5, num_workers=2))
    for batch in batches:
        assert_valid_batch(batch, graph)


# ---------------------------------------------------------------------------- BPR subgraphs
@pytest.mark.parametrize("which", ["make_neighbor_sampler", "TorchNeighborSampler"])
@pytest.mark.parametrize("negatives", [1, 3])
def test_bpr_subgraph_positions_index_the_triplet_nodes(graph, which, negatives):
    generator = torch.Generator().manual_seed(negatives)
    edges = graph[INTERACTS].edge_index[:, torch.randint(graph[INTERACTS].num_edges, (64,), generator=generator)]
    users, pos = edges  # repeated users and items on purpose
    neg = torch.randint(graph["item"].num_nodes, (64, negatives), generator=generator).squeeze(1)
    batch = bpr_subgraph(samplers(graph, [5, 3], seed=0)[which], users, pos, neg)

    assert batch.batch_size == 64 and batch.neg.shape == neg.shape
    assert torch.equal(batch.data["user"].n_id[batch.users], users)
    assert torch.equal(batch.data["item"].n_id[batch.pos], pos)
    assert torch.equal(batch.data["item"].n_id[batch.neg], neg)
    # every distinct user and item of the batch is a seed, and nothing else is
    assert batch.data["user"].num_sampled_nodes[0] == torch.unique(users).numel()
    assert batch.data["item"].num_sampled_nodes[0] == torch.unique(torch.cat([pos, neg.reshape(-1)])).numel()
    assert int(batch.users.max()) < batch.data["user"].num_sampled_nodes[0]
    assert_valid_batch(batch.data, graph)


def test_bpr_subgraph_with_the_graph_slices_its_attributes(graph):
    users, pos = graph[INTERACTS].edge_index[:, :32]
    neg = torch.arange(32) + 100
    batch = bpr_subgraph(TorchNeighborSampler(graph, [4, 4], seed=0), users, pos, neg, data=graph)
    assert_valid_batch(batch.data, graph)
    assert batch.data["genre"].names == [graph["genre"].names[i] for i in batch.data["genre"].n_id.tolist()]
    assert torch.equal(batch.data["item"].n_id[batch.neg], neg)


def test_bpr_subgraph_refuses_mismatched_shapes(graph):
    sampler = TorchNeighborSampler(graph, [2], seed=0)
    with pytest.raises(ValueError, match="expected users"):
        bpr_subgraph(sampler, torch.arange(4), torch.arange(3), torch.arange(4))
    with pytest.raises(ValueError, match="expected users"):
        bpr_subgraph(sampler, torch.arange(4), torch.arange(4), torch.arange(5))



def test_sampled_propagation_refuses_a_graph_without_reverse_edges(graph):
    from graphrec.errors import GraphrecError
    from graphrec.graph.hetero import REV_INTERACTS
    from graphrec.models import LightGCN, ModalityGAT

    one_way = graph.clone()
    del one_way[REV_INTERACTS]
    users, items = one_way[INTERACTS].edge_index[:, :8]
    batch = bpr_subgraph(TorchNeighborSampler(one_way, [-1, -1], seed=0), users, items, items.roll(1))
    for model in (LightGCN.from_graph(graph, dim=4, num_layers=2), ModalityGAT.from_graph(graph, dim=4, num_layers=2)):
        with pytest.raises(GraphrecError, match="sample from a graph with the interactions in both directions"):
            model.embed_subgraph(batch.data)
