"""Helpers of the audio and video encoder tests: real media files and real models with seeded random weights.

``write_tone`` writes a real WAV file with soundfile, ``write_video`` a real MP4 (MPEG-4 part 2) with
PyAV; ``set_column`` gives a dataset directory's items or users a column (file paths, a bio);
``tiny_wav2vec2`` saves a real wav2vec 2.0 architecture, tiny and seeded, with its feature extractor,
through ``save_pretrained``, so tests load it by path as a user loads a downloaded model; ``tiny_clap``
does the same for a CLAP model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import soundfile
import torch
import transformers


def write_tone(path: Path, frequency: float, seconds: float = 1.0, rate: int = 16_000, channels: int = 1,
               amplitude: float = 0.5) -> Path:
    """A sine tone (with a little seeded noise) as a 16-bit PCM WAV file."""
    t = np.arange(round(seconds * rate)) / rate
    noise = np.random.default_rng(round(frequency)).normal(0, 0.01, len(t))
    wave = amplitude * np.sin(2 * np.pi * frequency * t) + noise * (amplitude > 0)
    data = np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, data.astype(np.float32), rate, subtype="PCM_16")
    return path


def write_video(path: Path, colour: Sequence[int], frames: int = 12, size: int = 32, rate: int = 8,
                moving_line: bool = True) -> Path:
    """An MP4 of ``frames`` frames of one colour, with a white column that moves one step a frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            image = np.zeros((size, size, 3), dtype=np.uint8)
            image[...] = colour
            if moving_line:
                image[:, (index * 2) % size] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def set_column(dataset_dir: Path, table: str, column: str, values: Sequence[object]) -> None:
    """Give ``items.parquet`` or ``users.parquet`` (``table``) a column of ``values``, one per row."""
    file = dataset_dir / f"{table}.parquet"
    frame = pq.read_table(file).to_pandas()
    frame[column] = list(values)
    frame.to_parquet(file, index=False)


def tiny_wav2vec2(directory: Path, seed: int = 0, hidden_size: int = 32) -> Path:
    """A two-layer wav2vec 2.0 (``Wav2Vec2Config``) with seeded random weights and its feature extractor."""
    torch.manual_seed(seed)
    config = transformers.Wav2Vec2Config(
        hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * hidden_size,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, vocab_size=8)
    transformers.Wav2Vec2Model(config).save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, do_normalize=True,
                                          return_attention_mask=False).save_pretrained(directory)
    return directory


def tiny_hubert(directory: Path, seed: int = 0) -> Path:
    """A two-layer HuBERT (``HubertConfig``) with seeded random weights and a wav2vec 2.0 feature extractor."""
    torch.manual_seed(seed)
    config = transformers.HubertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
        conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    transformers.HubertModel(config).save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16_000, return_attention_mask=False).save_pretrained(directory)
    return directory


def tiny_ast(directory: Path, seed: int = 0) -> Path:
    """A one-layer Audio Spectrogram Transformer (``ASTConfig``, 32 mel bins, 128 frames) with seeded random
    weights and its feature extractor."""
    torch.manual_seed(seed)
    config = transformers.ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    max_length=128, num_mel_bins=32)
    transformers.ASTModel(config).save_pretrained(directory)
    transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=128).save_pretrained(directory)
    return directory


def tiny_clap(directory: Path, seed: int = 0) -> Path:
    """A CLAP model (HTSAT audio tower with fusion, one-layer text tower) with seeded random weights and its
    feature extractor; ``get_audio_features`` gives 16-d projected embeddings."""
    torch.manual_seed(seed)
    config = transformers.ClapConfig(
        text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                     "vocab_size": 100},
        audio_config={"patch_embeds_hidden_size": 16, "depths": [1, 1, 1, 1], "num_attention_heads": [1, 2, 4, 8],
                      "hidden_size": 128, "projection_hidden_size": 32, "enable_fusion": True},
        projection_dim=16)
    transformers.ClapModel(config).save_pretrained(directory)
    transformers.ClapFeatureExtractor().save_pretrained(directory)
    return directory
