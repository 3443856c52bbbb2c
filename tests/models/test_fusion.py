import pytest
import torch

from graphrec.models.fusion import FUSION_STRATEGIES, Fusion, masked_softmax

IN_DIMS = {"text": 5, "image": 3, "audio": 4}
OUT_DIM = 6


def inputs(num_rows: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(num_rows, dim, generator=generator) for name, dim in IN_DIMS.items()}


# rows: all present, text missing, only audio, nothing, image missing, all, text only
MASK = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0], [1, 0, 1], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)


def make(strategy: str) -> Fusion:
    torch.manual_seed(0)
    return Fusion(strategy, IN_DIMS, OUT_DIM)


@pytest.mark.parametrize("strategy", FUSION_STRATEGIES)
def test_output_shape_and_gradients(strategy):
    fusion = make(strategy)
    out = fusion(inputs(), MASK)
    width = OUT_DIM * len(IN_DIMS) if strategy == "late" else OUT_DIM
    assert out.shape == (7, width) and fusion.output_dim == width
    assert torch.isfinite(out).all()
    out.pow(2).sum().backward()
    for name, parameter in fusion.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("strategy", FUSION_STRATEGIES)
def test_masked_out_inputs_do_not_change_the_output(strategy):
    fusion = make(strategy)
    original = inputs()
    changed = {name: values.clone() for name, values in original.items()}
    for m, name in enumerate(IN_DIMS):
        missing = ~MASK[:, m]
        changed[name][missing] = torch.randn(int(missing.sum()), IN_DIMS[name]) * 100
    torch.testing.assert_close(fusion(changed, MASK), fusion(original, MASK))
    # ... while changing an available input does change it
    changed["text"][0] += 1.0
    assert not torch.allclose(fusion(changed, MASK)[0], fusion(original, MASK)[0])


@pytest.mark.parametrize("strategy", [s for s in FUSION_STRATEGIES if s != "concat"])
def test_a_row_without_modalities_fuses_to_zeros(strategy):
    out = make(strategy)(inputs(), MASK)
    assert torch.equal(out[3], torch.zeros_like(out[3]))


def test_concat_uses_learned_placeholders_for_missing_inputs():
    fusion = make("concat")
    x = inputs()
    out = fusion(x, MASK)
    row = 1  # text missing
    expected = fusion.projection(torch.cat([fusion.placeholders["text"], x["image"][row], x["audio"][row]]))
    torch.testing.assert_close(out[row], expected)
    assert not torch.allclose(out[3], torch.zeros(OUT_DIM))  # all placeholders, still a representation


def test_sum_mean_product_against_projections():
    x = inputs()
    for strategy in ("sum", "mean", "product"):
        fusion = make(strategy)
        projected = torch.stack([fusion.projections[name](x[name]) for name in IN_DIMS], dim=1)
        out = fusion(x, MASK)
        row = 4  # text and audio
        pair = projected[row, [0, 2]]
        expected = {"sum": pair.sum(0), "mean": pair.mean(0), "product": pair.prod(0)}[strategy]
        torch.testing.assert_close(out[row], expected)


def test_attention_weights_sum_to_one_over_available_modalities():
    fusion = make("attention")
    x = inputs()
    out = fusion(x, MASK)
    weights = fusion.last_weights
    assert weights.shape == (7, 3) and not weights.requires_grad
    assert torch.equal(weights[~MASK], torch.zeros(int((~MASK).sum())))
    has_any = MASK.any(1)
    torch.testing.assert_close(weights[has_any].sum(1), torch.ones(int(has_any.sum())))
    assert torch.equal(weights[3], torch.zeros(3))
    projected = torch.stack([fusion.projections[name](x[name]) for name in IN_DIMS], dim=1)
    torch.testing.assert_close(out, (weights.unsqueeze(-1) * projected).sum(1))


def test_gated_is_a_sigmoid_gated_sum():
    fusion = make("gated")
    x = inputs()
    out = fusion(x, MASK)
    row = 1  # image and audio
    parts = [fusion.projections[name](x[name][row]) for name in ("image", "audio")]
    expected = sum(torch.sigmoid(fusion.gates[name](part)) * part for name, part in zip(("image", "audio"), parts))
    torch.testing.assert_close(out[row], expected)


def test_late_fusion_scores_are_sums_of_per_modality_dot_products():
    fusion = make("late")
    x = inputs()
    items = fusion(x, MASK)
    users = torch.randn(7, OUT_DIM * 3)
    scores = (users * items).sum(1)
    per_modality = torch.zeros(7)
    for m, name in enumerate(IN_DIMS):
        block = users[:, m * OUT_DIM:(m + 1) * OUT_DIM]
        per_modality += MASK[:, m] * (block * fusion.projections[name](x[name])).sum(1)
    torch.testing.assert_close(scores, per_modality)


def test_list_inputs_and_no_mask():
    fusion = make("mean")
    x = inputs()
    as_list = Fusion("mean", list(IN_DIMS.values()), OUT_DIM)
    as_list.load_state_dict({key.replace("text", "0").replace("image", "1").replace("audio", "2"): value
                             for key, value in fusion.state_dict().items()})
    torch.testing.assert_close(as_list(list(x.values())), fusion(x))
    torch.testing.assert_close(fusion(x), fusion(x, torch.ones(7, 3, dtype=torch.bool)))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown fusion strategy 'max'; choose one of concat, sum, mean"):
        Fusion("max", IN_DIMS, OUT_DIM)
    fusion = make("sum")
    with pytest.raises(ValueError, match=r"lack modality \['audio'\]"):
        fusion({"text": torch.randn(2, 5), "image": torch.randn(2, 3)})
    with pytest.raises(ValueError, match="'image' must have shape \\(N, 3\\)"):
        fusion({"text": torch.randn(2, 5), "image": torch.randn(2, 4), "audio": torch.randn(2, 4)})
    with pytest.raises(ValueError, match="mask must have shape"):
        fusion(inputs(2), torch.ones(2, 2, dtype=torch.bool))


def test_masked_softmax_has_finite_gradients_on_empty_rows():
    scores = torch.randn(3, 4, requires_grad=True)
    mask = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    weights = masked_softmax(scores, mask)
    torch.testing.assert_close(weights.sum(1), torch.tensor([1.0, 0.0, 1.0]))
    (weights * torch.randn(3, 4)).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert torch.equal(scores.grad[1], torch.zeros(4))
