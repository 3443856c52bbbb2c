"""The audio encoder on real WAV files, with a real wav2vec 2.0 architecture.

No weights can be downloaded here, so the model is a tiny two-layer ``Wav2Vec2Config`` model
with seeded random weights, saved with ``save_pretrained`` (model and feature extractor) to a
temporary directory and loaded by path, as a downloaded model would be. WAV files are written
with soundfile: sine tones at 16 kHz and 44.1 kHz, mono and stereo, plus damaged ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
from _media import set_column, tiny_ast, tiny_clap, tiny_hubert, tiny_wav2vec2, write_tone

from graphrec.data.dataset import load_dataset
from graphrec.encoders import AudioEncoder, AudioEncoderConfig, encode, encode_audio
from graphrec.encoders.audio import fit_length, load_waveform, resample
from graphrec.errors import ConfigError, GraphrecError

FREQUENCIES = [220.0 * 2 ** (k / 6) for k in range(24)]


@pytest.fixture(scope="module")
def wav2vec2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_wav2vec2(tmp_path_factory.mktemp("tiny-wav2vec2"))


@pytest.fixture(scope="module")
def audio_encoder(wav2vec2_dir: Path) -> AudioEncoder:
    return AudioEncoder(AudioEncoderConfig(str(wav2vec2_dir), max_seconds=1.0, device="cpu"))


def _with_tones(dataset_dir: Path) -> list[Path]:
    """One tone per item, every third one recorded at 44.1 kHz in stereo; the audio column set."""
    paths = [write_tone(dataset_dir / "audio" / f"{i:02d}.wav", frequency, seconds=1.2,
                        rate=44_100 if i % 3 == 0 else 16_000, channels=2 if i % 3 == 0 else 1)
             for i, frequency in enumerate(FREQUENCIES)]
    set_column(dataset_dir, "items", "audio", [f"audio/{path.name}" for path in paths])
    return paths


def test_encode_audio_end_to_end_with_cache(synthetic_dir: Path, audio_encoder: AudioEncoder,
                                            wav2vec2_dir: Path, tmp_path: Path) -> None:
    _with_tones(synthetic_dir)
    lines: list[str] = []
    first = encode(synthetic_dir, "audio", audio_encoder, log=lines.append)
    assert first.values.shape == (24, 32) and first.mask.all()
    np.testing.assert_allclose(np.linalg.norm(first.values, axis=1), 1.0, rtol=1e-5)
    assert first.encoder["run"]["encoded"] == 24 and first.encoder["run"]["cached"] == 0
    assert any("24 encoded" in line and "items/s" in line for line in lines), lines
    # Distinct tones, distinct embeddings (random weights still respond to frequency).
    assert len({row.tobytes() for row in first.values}) == 24

    entry = json.loads((synthetic_dir / "manifest.json").read_text())["modalities"]["audio"]
    assert entry["file"] == "features/audio.npy" and entry["dim"] == 32 and entry["missing"] == 0
    provenance = entry["encoder"]
    assert provenance["kind"] == "audio" and provenance["architecture"] == "Wav2Vec2Model"
    assert provenance["sampling_rate"] == 16_000 and provenance["pooling"] == "mean" and provenance["normalised"]
    assert provenance["column"] == "audio" and provenance["side"] == "item" and provenance["model_sha256"]
    np.testing.assert_array_equal(load_dataset(synthetic_dir).features["audio"].values, first.values)

    second = encode(synthetic_dir, "audio", audio_encoder)
    assert second.encoder["run"]["encoded"] == 0 and second.encoder["run"]["cached"] == 24
    np.testing.assert_array_equal(second.values, first.values)

    # Deterministic: a fresh encoder, another cache, the same numbers, whatever the batch size.
    again = encode_audio(load_dataset(synthetic_dir), AudioEncoderConfig(str(wav2vec2_dir), max_seconds=1.0,
                                                                        batch_size=3, device="cpu"),
                         cache_dir=tmp_path / "other-cache", log=None)
    assert again.encoder["run"]["encoded"] == 24
    np.testing.assert_allclose(again.values, first.values, rtol=1e-5, atol=1e-6)


def test_unusable_clips_are_reported_and_masked(synthetic_dir: Path, audio_encoder: AudioEncoder) -> None:
    paths = _with_tones(synthetic_dir)
    folder = synthetic_dir / "audio"
    paths[1].unlink()                                              # missing
    paths[2].write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")    # corrupt
    write_tone(paths[4], 440.0, amplitude=0.0)                    # silent (all zeros)
    soundfile.write(paths[5], np.zeros(0, dtype=np.float32), 16_000)  # empty: no samples
    paths[7].unlink()
    os.mkfifo(paths[7])                                           # not a regular file: would block
    write_tone(paths[8], 440.0, seconds=30.0)                     # 960 KB, over the cap below
    paths[9].unlink()
    paths[9].mkdir()                                              # a directory
    encoder = AudioEncoder(AudioEncoderConfig(audio_encoder.config.model, max_seconds=1.0, device="cpu",
                                              max_file_bytes=500_000))
    lines: list[str] = []
    features = encode_audio(load_dataset(synthetic_dir), encoder, log=lines.append)

    broken = {1: "does not exist", 2: "cannot be decoded", 4: "is silent", 5: "is empty",
              7: "not a regular file", 8: "over the limit of 500,000", 9: "cannot be read"}
    assert features.mask.tolist() == [i not in broken for i in range(24)]
    assert not features.values[sorted(broken)].any()
    item_ids = load_dataset(synthetic_dir).items["item_id"].tolist()
    for index, reason in broken.items():
        assert any(f"item {index} (id {item_ids[index]!r}): audio {folder / paths[index].name}" in line
                   and reason in line and "marked missing" in line for line in lines), (index, lines)
    run = features.encoder["run"]
    assert run["missing"] == len(broken) and run["problems"] == len(broken) and len(run["problem_items"]) == 7
    assert run["encoded"] == 24 - len(broken)


def test_resampling_keeps_the_pitch_and_a_44k_file_embeds_like_its_16k_twin(audio_encoder: AudioEncoder,
                                                                          tmp_path: Path) -> None:
    wave = np.sin(2 * np.pi * 1000.0 * np.arange(44_100) / 44_100).astype(np.float32)
    resampled = resample(wave, 44_100, 16_000)
    assert resampled.dtype == np.float32 and len(resampled) == 16_000
    assert np.argmax(np.abs(np.fft.rfft(resampled))) == 1000  # 1 Hz bins over one second

    high = write_tone(tmp_path / "44k.wav", 523.25, rate=44_100, channels=2)
    low = write_tone(tmp_path / "16k.wav", 523.25, rate=16_000)
    other = write_tone(tmp_path / "other.wav", 1400.0, rate=16_000)
    values, ok, failures = audio_encoder.encode_files([high, low, other])
    assert ok.all() and not failures
    assert float(values[0] @ values[1]) > 0.99
    assert float(values[0] @ values[1]) > float(values[0] @ values[2])


def test_crop_and_tile(tmp_path: Path, wav2vec2_dir: Path) -> None:
    ramp = np.arange(5, dtype=np.float32)
    assert fit_length(ramp, 3, tile=False).tolist() == [0, 1, 2]
    assert fit_length(ramp, 3, tile=True).tolist() == [0, 1, 2]
    assert fit_length(ramp, 8, tile=False).tolist() == [0, 1, 2, 3, 4]
    assert fit_length(ramp, 8, tile=True).tolist() == [0, 1, 2, 3, 4, 0, 1, 2]

    short = write_tone(tmp_path / "short.wav", 330.0, seconds=0.5).read_bytes()
    long = write_tone(tmp_path / "long.wav", 330.0, seconds=3.0).read_bytes()
    assert len(load_waveform(short, 16_000, 1.0, tile=False)) == 8_000
    tiled = load_waveform(short, 16_000, 1.0, tile=True)
    assert len(tiled) == 16_000 and np.array_equal(tiled[:8_000], tiled[8_000:])
    cropped = load_waveform(long, 16_000, 1.0, tile=False)
    assert len(cropped) == 16_000
    np.testing.assert_array_equal(cropped, load_waveform(long, 16_000, 5.0, tile=False)[:16_000])

    padded = AudioEncoder(AudioEncoderConfig(str(wav2vec2_dir), max_seconds=1.0, device="cpu"))
    tiling = AudioEncoder(AudioEncoderConfig(str(wav2vec2_dir), max_seconds=1.0, tile=True, device="cpu"))
    assert padded.identity != tiling.identity  # the cache never mixes the two
    files = [tmp_path / "short.wav"]
    assert not np.allclose(padded.encode_files(files)[0], tiling.encode_files(files)[0])


@pytest.mark.parametrize(("build", "architecture"), [(tiny_hubert, "HubertModel"), (tiny_ast, "ASTModel")])
def test_hubert_and_ast_embed_by_mean_pooling(build: Callable[[Path], Path], architecture: str, tmp_path: Path) -> None:
    encoder = AudioEncoder(AudioEncoderConfig(str(build(tmp_path / "model")), max_seconds=1.0, device="cpu"))
    assert type(encoder.model).__name__ == architecture and encoder.pooling == "mean"
    files = [write_tone(tmp_path / f"{f}.wav", f) for f in (300.0, 2000.0)]
    values, ok, _ = encoder.encode_files(files)
    assert values.shape == (2, 32) and ok.all() and not np.allclose(values[0], values[1])
    np.testing.assert_allclose(np.linalg.norm(values, axis=1), 1.0, rtol=1e-5)


def test_clap_embeds_with_its_audio_projection(tmp_path: Path) -> None:
    """CLAP: the projected audio embedding (16-d here), at 48 kHz, for clips within its 10 s window."""
    model = tiny_clap(tmp_path / "clap")
    encoder = AudioEncoder(AudioEncoderConfig(str(model), max_seconds=2.0, device="cpu"))
    assert encoder.pooling == "projection" and encoder.sampling_rate == 48_000
    files = [write_tone(tmp_path / f"{f}.wav", f, seconds=1.5) for f in (300.0, 900.0)]
    values, ok, _ = encoder.encode_files(files)
    assert values.shape == (2, 16) and ok.all() and not np.allclose(values[0], values[1])
    np.testing.assert_allclose(np.linalg.norm(values, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(encoder.encode_files(files)[0], values, rtol=1e-5, atol=1e-6)
    # Alone or in a batch, the same embedding (the extractor's random "longer" flag is not used).
    np.testing.assert_allclose(encoder.encode_files(files[1:])[0][0], values[1], rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="takes at most 10 s per clip") as raised:
        AudioEncoder(AudioEncoderConfig(str(model), max_seconds=30.0, device="cpu"))
    assert raised.value.field == "max_seconds"


def test_audio_configuration_and_model_errors(tmp_path: Path, minilm_dir: Path, synthetic_source: Path) -> None:
    for field, options in (("max_seconds", {"max_seconds": 0.0}), ("batch_size", {"batch_size": 0}),
                           ("max_file_bytes", {"max_file_bytes": 0}), ("silence_rms", {"silence_rms": -1.0})):
        with pytest.raises(ConfigError) as raised:
            AudioEncoderConfig("model", **options)  # type: ignore[arg-type]
        assert raised.value.field == field
    with pytest.raises(GraphrecError, match=r"audio model directory .* does not exist"):
        AudioEncoder(AudioEncoderConfig(str(tmp_path / "no-such-model"), device="cpu"))
    with pytest.raises(GraphrecError, match="could not load an audio model from directory"):
        AudioEncoder(AudioEncoderConfig(str(minilm_dir), device="cpu"))  # a text model: no feature extractor
    with pytest.raises(GraphrecError, match=r"has no local audio for any of its [0-9,]+ items"):
        encode_audio(load_dataset(synthetic_source), AudioEncoderConfig(str(tmp_path / "never-loaded")))
