"""Modality ablation on the synthetic set: text, image, audio and video, alone and together, warm and cold.

The synthetic generator plants in each modality a signal the others lack (texture only in the picture,
category and brand only in the text, the sound only in the clip, the motion only in the video; see
:mod:`graphrec.data.formats.synthetic`). This benchmark generates the set with 20% cold items, encodes
all four modalities -- text with the bundled all-MiniLM-L6-v2, pictures with a seeded random ResNet-18
(as the quickstart does), clips with a tiny seeded wav2vec 2.0, videos as key frames through the same
ResNet-18 (``--video-model r3d_18`` for the clip model, seeded too) -- and trains VBPR, ModalityGAT
(without entity nodes, so that only the modalities differ) and mmgf on each modality alone, on text and
image (the set's former content), and on all four, beside popularity and LightGCN, with
``multimodal.py``'s training budget and selection on the validation split.

The columns are test Recall@20 and NDCG@20 (training and validation items masked), Recall@20 among
the cold items, and the ratio of each row's test and cold Recall@20 to the same model on text and image
in the same run. Random weights carry no pretrained signal, so a modality whose row stays near
popularity may hold its signal in a form the untrained encoder does not bring out.

Run: ``.venv/bin/python benchmarks/modality_ablation.py`` (writes ``results/modality_ablation.json`` and
``.md``); ``--quick`` is a smoke run (a small set, one epoch, three modality sets) written to
``results/smoke/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import _omp_passive  # noqa: F401 -- sets OMP_WAIT_POLICY before torch loads
import torch
import torchvision
import transformers
from _common import ROOT, markdown_table, print_table, results_dir, write_markdown, write_results
from multimodal import QUICK_BUDGET, Budget

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import load_dataset
from graphrec.encoders import AudioEncoderConfig, ImageEncoderConfig, TextEncoderConfig, VideoEncoderConfig, encode
from graphrec.encoders.bundled import bundled_minilm
from graphrec.training.run import ModelConfig, train

MODALITIES = ("text", "image", "audio", "video")
#: The modality sets every content model is trained on.
SUBSETS: tuple[tuple[str, ...], ...] = (("text",), ("image",), ("audio",), ("video",), ("text", "image"),
                                        MODALITIES)
QUICK_SUBSETS: tuple[tuple[str, ...], ...] = (("audio",), ("text", "image"), MODALITIES)
#: The set the ratios are taken against: the synthetic set's content before it had clips and videos.
BASELINE_SUBSET = ("text", "image")
CONTENT_MODELS = ("vbpr", "gat", "mmgf")
SYNTHETIC_OPTIONS = {"users": 1000, "items": 400, "seed": 0, "cold_fraction": 0.2}
#: (30 cold items: test_cold ranks more than the 20 that Recall@20 needs.)
QUICK_SYNTHETIC_OPTIONS = {"users": 200, "items": 150, "seed": 0, "cold_fraction": 0.2}
COLUMNS = ["model", "modalities", "valid r@20", "test r@20", "test ndcg@20", "cold r@20", "test / text+image",
           "cold / text+image", "seconds"]


def prepare(work: Path, options: dict[str, Any], video_model: str, key_frames: int) -> Path:
    """Generate the synthetic set into ``work/data`` and encode its four modalities there."""
    path = work / "data"
    convert("synthetic", "-", path, ConvertConfig(seed=options["seed"]), overwrite=True, reader_options=options)
    torch.manual_seed(options["seed"])
    resnet = work / "resnet18.pt"
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), resnet)
    cache = work / "cache"
    encode(path, "text", TextEncoderConfig(model=str(bundled_minilm()), device="cpu"), cache_dir=cache / "text",
           log=None)
    encode(path, "image", ImageEncoderConfig(model="resnet18", weights=str(resnet), device="cpu"),
           cache_dir=cache / "image", log=None)
    encode(path, "audio", AudioEncoderConfig(str(tiny_wav2vec2(work / "wav2vec2", options["seed"])), max_seconds=1.0,
                                             device="cpu"), cache_dir=cache / "audio", log=None)
    if video_model == "r3d_18":
        torch.manual_seed(options["seed"])
        weights = work / "r3d_18.pt"
        torch.save(torchvision.models.get_model("r3d_18", weights=None).state_dict(), weights)
        video = VideoEncoderConfig("r3d_18", weights=str(weights), frames=8, device="cpu")
    else:
        video = VideoEncoderConfig("resnet18", weights=str(resnet), frames=key_frames, key_frames=True, device="cpu")
    encode(path, "video", video, cache_dir=cache / f"video-{video_model}", log=None)
    return path


def tiny_wav2vec2(directory: Path, seed: int) -> Path:
    """A small wav2vec 2.0 with seeded random weights, saved with its feature extractor (no weights can be
    downloaded here)."""
    torch.manual_seed(seed)
    config = transformers.Wav2Vec2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, conv_dim=(32, 32, 32),
        conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    transformers.Wav2Vec2Model(config).save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16_000, return_attention_mask=False).save_pretrained(directory)
    return directory


def arms(subsets: tuple[tuple[str, ...], ...], dim: int) -> list[tuple[str, tuple[str, ...], ModelConfig]]:
    rows: list[tuple[str, tuple[str, ...], ModelConfig]] = [
        ("popularity", (), ModelConfig("pop")), ("LightGCN", (), ModelConfig("lightgcn", dim=dim, layers=3))]
    for model in CONTENT_MODELS:
        for subset in subsets:
            options: dict[str, Any] = {"modalities": subset}
            if model != "mmgf":
                options["dim"] = dim
            if model == "gat":
                options.update(layers=1, entities=())
            rows.append((model, subset, ModelConfig(model, **options)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 users, 150 items, one epoch, three modality sets (writes results/smoke/)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "modality-ablation",
                        help="where the dataset, encoder weights and embedding caches go")
    parser.add_argument("--video-model", choices=["key-frames", "r3d_18"], default="key-frames")
    parser.add_argument("--key-frames", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=None, help="override the budget's epochs")
    args = parser.parse_args()

    budget = QUICK_BUDGET if args.quick else Budget()
    if args.epochs is not None:
        budget = Budget(epochs=args.epochs, eval_every=min(budget.eval_every, args.epochs))
    options = QUICK_SYNTHETIC_OPTIONS if args.quick else SYNTHETIC_OPTIONS
    work = args.work / ("quick" if args.quick else "full")
    path = prepare(work, options, args.video_model, args.key_frames)
    dataset = load_dataset(path)

    rows: list[dict[str, Any]] = []
    for label, subset, model in arms(QUICK_SUBSETS if args.quick else SUBSETS, budget.dim):
        started = time.perf_counter()
        metrics = train(dataset, model, budget.train_config(0, False), log=lambda _: None).metrics
        rows.append({"model": label, "modalities": "+".join(subset) or "-",
                     "valid r@20": metrics["valid"]["recall@20"], "test r@20": metrics["test"]["recall@20"],
                     "test ndcg@20": metrics["test"]["ndcg@20"], "cold r@20": metrics["test_cold"]["recall@20"],
                     "seconds": time.perf_counter() - started})
        print(f"[{label} {rows[-1]['modalities']}] test r@20 {rows[-1]['test r@20']:.4f}, "
              f"cold r@20 {rows[-1]['cold r@20']:.4f}", flush=True)
    baseline_label = "+".join(BASELINE_SUBSET)
    for row in rows:
        base = next((r for r in rows if r["model"] == row["model"] and r["modalities"] == baseline_label), None)
        if base is not None:
            for metric, column in (("test r@20", "test / text+image"), ("cold r@20", "cold / text+image")):
                row[column] = row[metric] / base[metric] if base[metric] > 0 else None

    print()
    print_table(rows, COLUMNS)
    directory = results_dir(args.quick or args.epochs is not None)
    write_results("modality_ablation", {
        "dataset": {"options": options, "users": dataset.num_users, "items": dataset.num_items,
                    "splits": dataset.split_counts(),
                    "modalities": {name: feature.dim for name, feature in dataset.features.items()}},
        "encoders": {"text": "all-MiniLM-L6-v2 (bundled)", "image": "resnet18, seeded random",
                     "audio": "wav2vec 2.0 (2 layers, 64-d), seeded random",
                     "video": ("r3d_18, 8 frames, seeded random" if args.video_model == "r3d_18"
                               else f"{args.key_frames} key frames through the image resnet18")},
        "budget": {"epochs": budget.epochs, "eval_every": budget.eval_every, "patience": budget.patience,
                   "dim": budget.dim},
        "rows": rows}, directory)
    lines = ["# Modality ablation on the synthetic set", "",
             f"{dataset.num_users} users, {dataset.num_items} items (20% cold); test metrics with selection on "
             f"the validation split; ratios against the same model on text+image in the same run. Produced by "
             f"`benchmarks/modality_ablation.py`{' --quick' if args.quick else ''}.", "",
             *markdown_table(rows, COLUMNS, cell=_cell), ""]
    write_markdown(directory / "modality_ablation.md", "\n".join(lines))


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "" if value is None else str(value)


if __name__ == "__main__":
    main()
