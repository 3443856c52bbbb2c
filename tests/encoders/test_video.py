"""The video encoder on real MP4 files, with real torchvision architectures.

No weights can be downloaded here: the clip model is ``r3d_18`` with seeded random weights
saved as a ``state_dict`` FILE and loaded through ``weights=FILE`` (``--weights FILE``), and the
key-frame path uses ``resnet18`` the same way. MP4 files (MPEG-4 part 2, 32x32 pixels, 12
frames at 8 fps) are written with PyAV: one colour each with a moving white column, plus
damaged ones. Clips are kept tiny (4 frames) so that a clip costs milliseconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from _media import set_column, write_video
from PIL import Image

from graphrec.data.dataset import load_dataset
from graphrec.encoders import VideoEncoder, VideoEncoderConfig, encode, encode_video
from graphrec.encoders.image import ImageEncoder, ImageEncoderConfig, find_classification_head
from graphrec.encoders.video import read_frames, sample_times
from graphrec.errors import ConfigError, GraphrecError

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200), (200, 40, 200)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("video-weights")
    files = {}
    for name in ("r3d_18", "resnet18"):
        torch.manual_seed(0)
        files[name] = folder / f"{name}.pt"
        torch.save(torchvision.models.get_model(name, weights=None).state_dict(), files[name])
    return files


@pytest.fixture(scope="module")
def r3d(weights: dict[str, Path]) -> VideoEncoder:
    return VideoEncoder(VideoEncoderConfig("r3d_18", weights=str(weights["r3d_18"]), frames=4, device="cpu"))


def _with_videos(dataset_dir: Path, count: int = 6) -> list[Path]:
    """Videos for the first ``count`` items; the others have none (an empty cell)."""
    paths = [write_video(dataset_dir / "video" / f"{i}.mp4", COLOURS[i % len(COLOURS)]) for i in range(count)]
    set_column(dataset_dir, "items", "video", [f"video/{p.name}" for p in paths] + [None] * (24 - count))
    return paths


def test_frames_are_sampled_uniformly_or_at_a_rate(tmp_path: Path) -> None:
    np.testing.assert_allclose(sample_times(1.5, 5, None), [0.15, 0.45, 0.75, 1.05, 1.35])
    np.testing.assert_allclose(sample_times(1.5, 5, 4.0), [0.125, 0.375, 0.625, 0.875, 1.125])
    np.testing.assert_allclose(sample_times(0.5, 3, 2.0), [0.0, 0.5, 1.0])  # longer than the video: from 0
    data = write_video(tmp_path / "v.mp4", (200, 40, 40)).read_bytes()  # frame i has its white column at 2i

    def columns(clip: np.ndarray) -> list[int]:
        return [int(np.argmax(frame[:, :, 1].mean(axis=0))) for frame in clip]

    uniform = read_frames(data, 5, None)
    assert uniform.shape == (5, 32, 32, 3) and uniform.dtype == np.uint8
    assert columns(uniform) == [2, 6, 12, 16, 20]  # frames 1, 3, 6, 8, 10 of 12 at 8 fps
    assert columns(read_frames(data, 5, 4.0)) == [2, 6, 10, 14, 18]  # frames 1, 3, 5, 7, 9
    assert columns(read_frames(data, 3, 1.0)) == [0, 16, 22]  # past the end: the last frame stays
    large = write_video(tmp_path / "large.mp4", (10, 200, 10), size=96).read_bytes()
    assert read_frames(large, 2, None, short_side=48).shape == (2, 48, 48, 3)
    assert read_frames(large, 2, None, short_side=128).shape == (2, 96, 96, 3)  # never scaled up


def test_encode_video_end_to_end_with_cache(synthetic_dir: Path, r3d: VideoEncoder, weights: dict[str, Path],
                                            tmp_path: Path) -> None:
    _with_videos(synthetic_dir)
    lines: list[str] = []
    first = encode(synthetic_dir, "video", r3d, log=lines.append)
    assert first.values.shape == (24, 512)
    assert first.mask.tolist() == [i < 6 for i in range(24)] and not first.values[6:].any()
    assert len({row.tobytes() for row in first.values[:6]}) == 6
    assert first.encoder["run"]["encoded"] == 6 and first.encoder["run"]["without_path"] == 18
    assert any("6 encoded" in line and "items/s" in line for line in lines), lines
    assert any("18 of 24 items have no local video path" in line for line in lines), lines

    entry = json.loads((synthetic_dir / "manifest.json").read_text())["modalities"]["video"]
    provenance = entry["encoder"]
    assert entry["dim"] == 512 and entry["missing"] == 18
    assert provenance["model"] == "r3d_18" and provenance["weights"] == str(weights["r3d_18"].resolve())
    assert provenance["pretrained"] and provenance["frames"] == 4 and provenance["key_frames"] is False
    assert "fc replaced by identity" in provenance["features"] and provenance["pyav_version"]

    second = encode(synthetic_dir, "video", r3d)
    assert second.encoder["run"]["encoded"] == 0 and second.encoder["run"]["cached"] == 6
    np.testing.assert_array_equal(second.values, first.values)
    fresh = VideoEncoder(VideoEncoderConfig("r3d_18", weights=str(weights["r3d_18"]), frames=4, batch_size=1,
                                            device="cpu"))
    again = encode_video(load_dataset(synthetic_dir), fresh, cache_dir=tmp_path / "other-cache", log=None)
    np.testing.assert_allclose(again.values, first.values, rtol=1e-4, atol=1e-5)


def test_unusable_videos_are_reported_and_masked(synthetic_dir: Path, r3d: VideoEncoder) -> None:
    paths = _with_videos(synthetic_dir, count=8)
    paths[0].unlink()                                                      # missing
    paths[1].write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)  # corrupt
    write_video(paths[2], (0, 0, 0), moving_line=False)                    # black
    paths[3].write_bytes(b"")                                              # empty file
    paths[4].unlink()
    os.mkfifo(paths[4])                                                    # not a regular file
    write_video(paths[5], (90, 90, 90), frames=120, size=64)               # over the cap below
    encoder = VideoEncoder(VideoEncoderConfig("r3d_18", weights=r3d.config.weights, frames=4, device="cpu",
                                              max_file_bytes=paths[5].stat().st_size - 1))
    lines: list[str] = []
    features = encode_video(load_dataset(synthetic_dir), encoder, log=lines.append)
    broken = {0: "does not exist", 1: "cannot be decoded", 2: "is black", 3: "cannot be decoded",
              4: "not a regular file", 5: "over the limit"}
    assert features.mask.tolist() == [i in (6, 7) for i in range(24)]
    for index, reason in broken.items():
        assert any(f"item {index} " in line and f"video {paths[index]}" in line and reason in line
                   for line in lines), (index, reason, lines)
    assert features.encoder["run"]["problems"] == len(broken) and features.encoder["run"]["encoded"] == 2


def test_key_frames_average_an_image_encoder_over_sampled_frames(synthetic_dir: Path,
                                                                 weights: dict[str, Path]) -> None:
    paths = _with_videos(synthetic_dir, count=3)
    config = VideoEncoderConfig("resnet18", weights=str(weights["resnet18"]), frames=3, key_frames=True,
                                device="cpu")
    features = encode_video(load_dataset(synthetic_dir), config, log=None)
    assert features.values.shape == (24, 512) and features.mask.sum() == 3
    assert features.encoder["key_frames"] is True and "mean over 3 key frames" in features.encoder["features"]
    image = ImageEncoder(ImageEncoderConfig("resnet18", weights=str(weights["resnet18"]), device="cpu"))
    frames = read_frames(paths[1].read_bytes(), 3, None)
    expected = image.encode([Image.fromarray(frame) for frame in frames]).mean(axis=0)
    np.testing.assert_allclose(features.values[1], expected, rtol=1e-4, atol=1e-5)


def test_random_initialisation_is_logged_and_bad_weights_are_refused(synthetic_dir: Path, weights: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    _with_videos(synthetic_dir, count=1)
    lines: list[str] = []
    features = encode_video(load_dataset(synthetic_dir), VideoEncoderConfig("mc3_18", frames=2, device="cpu"),
                            log=lines.append)
    assert features.encoder["pretrained"] is False and features.mask.sum() == 1
    assert any("randomly initialised" in line and "no pretrained signal" in line for line in lines), lines
    with pytest.raises(GraphrecError, match="does not fit"):
        VideoEncoder(VideoEncoderConfig("r3d_18", weights=str(weights["resnet18"])))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a state dict")
    with pytest.raises(GraphrecError, match="cannot be read as a PyTorch state_dict"):
        VideoEncoder(VideoEncoderConfig("r3d_18", weights=str(garbage)))
    with pytest.raises(GraphrecError, match="does not exist"):
        VideoEncoder(VideoEncoderConfig("r3d_18", weights=str(tmp_path / "missing.pt")))
    with pytest.raises(GraphrecError, match="unknown weights 'NOPE' for video model 'r3d_18'"):
        VideoEncoder(VideoEncoderConfig("r3d_18", weights="NOPE"))


def test_video_configuration_errors() -> None:
    for field, options in (("frames", {"frames": 0}), ("fps", {"fps": -1.0}), ("batch_size", {"batch_size": 0}),
                           ("black_level", {"black_level": 255}), ("model", {"model": "no_such_model"})):
        with pytest.raises(ConfigError) as raised:
            VideoEncoderConfig(**options)  # type: ignore[arg-type]
        assert raised.value.field == field
    with pytest.raises(ConfigError, match="an image model: pass key_frames"):
        VideoEncoderConfig("resnet18")


@pytest.mark.parametrize(("architecture", "head"), [("r2plus1d_18", "fc"), ("s3d", "classifier.1"),
                                                    ("mvit_v2_s", "head.1"), ("swin3d_t", "head")])
def test_every_video_architecture_has_a_removable_head(architecture: str, head: str) -> None:
    model = torchvision.models.get_model(architecture, weights=None)
    assert find_classification_head(model) == head
