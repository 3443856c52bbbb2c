"""The synthetic set's sound clips, videos and user profiles: real files read back, the planted signal
found in each, determinism, and the options that switch and size them."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import soundfile

from graphrec.data.formats.synthetic import COLOURS, SYNONYMS, SyntheticConfig, generate, read
from graphrec.data.formats.synthetic_media import MOTIONS, SOUNDS, VIDEO_CODEC, VIDEO_FPS
from graphrec.data.raw import RawDataset
from graphrec.errors import GraphrecError
from tests._cli import assert_clean_error, graphrec

MEDIA = SyntheticConfig(users=150, items=240, seed=5, image_size=16, mean_interactions=10.0,
                        audio_sample_rate=8_000, audio_seconds=0.5, video_frames=8, video_size=32)


@pytest.fixture(scope="module")
def media_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[RawDataset, Path]:
    workdir = tmp_path_factory.mktemp("synthetic-media")
    return generate(MEDIA, workdir), workdir


@pytest.fixture(scope="module")
def default_users(tmp_path_factory: pytest.TempPathFactory) -> RawDataset:
    """The default size without media files (profiles and interactions do not depend on them)."""
    return read("-", workdir=tmp_path_factory.mktemp("synthetic-users"), audio=False, video=False)


def _decoded(path: Path) -> tuple[np.ndarray, dict[str, object]]:
    """The frames of a video, and its container's format, codec and frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        facts = {"format": container.format.name, "codec": stream.codec_context.name, "rate": stream.average_rate}
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
    return frames, facts


# ------------------------------------------------------------------- audio
def test_audio_clips_are_mono_16_bit_wavs_of_the_asked_rate_and_length(media_set: tuple[RawDataset, Path]) -> None:
    raw, workdir = media_set
    assert raw.items["audio"].tolist() == [f"audio/{item_id}.wav" for item_id in raw.items["item_id"]]
    for relative in raw.items["audio"]:
        info = soundfile.info(workdir / relative)
        assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
        assert info.samplerate == 8_000
        assert info.frames == 4_000
    assert "audio/" in raw.source["files"] and "video/" in raw.source["files"]


def test_the_dominant_frequency_tells_every_items_sound_apart(media_set: tuple[RawDataset, Path]) -> None:
    raw, workdir = media_set
    registers = np.array([sound.frequency for sound in SOUNDS.values()])
    heard = []
    for relative in raw.items["audio"]:
        samples, rate = soundfile.read(workdir / relative)
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        peak = np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()]
        heard.append(list(SOUNDS)[np.abs(np.log(registers / peak)).argmin()])
    assert heard == raw.items["sound"].tolist()
    assert raw.items["sound"].nunique() == len(SOUNDS)


def test_the_pulse_rate_follows_the_sounds_tempo(media_set: tuple[RawDataset, Path]) -> None:
    """The loudness envelope repeats at the sound's tempo: fast sounds pulse more often than slow ones."""
    raw, workdir = media_set
    rates: dict[str, list[float]] = {}
    for relative, sound in zip(raw.items["audio"], raw.items["sound"]):
        samples, rate = soundfile.read(workdir / relative)
        # Loudness per 10 ms, its peaks (onsets of pulses) counted per second.
        loudness = np.abs(samples[: len(samples) // 80 * 80]).reshape(-1, 80).max(axis=1)
        rising = np.diff(loudness) > 0.15 * loudness.max()
        onsets = np.count_nonzero(rising[1:] & ~rising[:-1]) + int(rising[0])
        rates.setdefault(sound, []).append(onsets / (len(samples) / rate))
    by_tempo = sorted(rates, key=lambda sound: SOUNDS[sound].tempo)
    assert np.median(rates[by_tempo[-1]]) > 2 * max(np.median(rates[by_tempo[0]]), 1.0)


# ------------------------------------------------------------------- video
def _trajectory(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: foreground centroid (x, y), its area; and the colour of the foreground's core (its
    pixels farthest from the background, away from edges blurred by scaling and compression)."""
    frames = frames.astype(np.float64)
    border = np.concatenate([frames[:, 0], frames[:, -1]], axis=1)
    background = np.median(border, axis=1)
    distance = np.abs(frames - background[:, None, None, :]).sum(axis=-1)
    foreground = distance > 60
    area = foreground.sum(axis=(1, 2))
    rows, columns = np.mgrid[: frames.shape[1], : frames.shape[2]]
    x = (foreground * columns).sum(axis=(1, 2)) / area
    y = (foreground * rows).sum(axis=(1, 2)) / area
    core = distance >= np.percentile(distance[foreground], 70)
    colour = np.median(frames[core], axis=0)
    return x, y, area, colour


def _seen_motion(x: np.ndarray, y: np.ndarray, area: np.ndarray) -> str:
    dx, dy = x[-1] - x[0], y[-1] - y[0]
    if area.max() > 1.8 * area.min():
        return "pulsing"
    if np.hypot(np.diff(x), np.diff(y)).sum() > 1.5 * np.hypot(dx, dy):
        return "orbiting"
    if abs(dx) > abs(dy):
        return "rightward" if dx > 0 else "leftward"
    return "falling" if dy > 0 else "rising"  # image rows grow downwards


def test_videos_are_mp4s_of_the_asked_frames_and_size(media_set: tuple[RawDataset, Path]) -> None:
    raw, workdir = media_set
    assert raw.items["video"].tolist() == [f"video/{item_id}.mp4" for item_id in raw.items["item_id"]]
    for relative in raw.items["video"][:40]:
        frames, facts = _decoded(workdir / relative)
        assert "mp4" in str(facts["format"]).split(",")
        assert facts["codec"] == VIDEO_CODEC
        assert facts["rate"] == VIDEO_FPS
        assert frames.shape == (8, 32, 32, 3)


def test_decoded_frames_show_each_items_motion_and_colour(media_set: tuple[RawDataset, Path]) -> None:
    raw, workdir = media_set
    palette = np.asarray(list(COLOURS.values()), dtype=np.float64)
    seen, colours = [], []
    for relative in raw.items["video"]:
        x, y, area, colour = _trajectory(_decoded(workdir / relative)[0])
        seen.append(_seen_motion(x, y, area))
        colours.append(list(COLOURS)[np.linalg.norm(palette - colour, axis=1).argmin()])
    assert set(raw.items["motion"]) == set(MOTIONS)
    assert np.mean(np.asarray(seen) == raw.items["motion"].to_numpy()) >= 0.95
    assert np.mean(np.asarray(colours) == raw.items["colour"].to_numpy()) >= 0.9


# ------------------------------------------------------------- determinism
def _media_bytes(raw: RawDataset, workdir: Path, column: str) -> list[bytes]:
    return [(workdir / relative).read_bytes() for relative in raw.items[column]]


def test_the_same_seed_gives_the_same_media_bytes_in_another_process(tmp_path: Path) -> None:
    config = replace(MEDIA, users=40, items=30)
    here = generate(config, tmp_path / "here")
    options = [f"{name}={getattr(config, name)}" for name in
               ("items", "image_size", "mean_interactions", "audio_sample_rate", "audio_seconds", "video_frames",
                "video_size")]
    graphrec("convert", "synthetic", "-", tmp_path / "there", "--users", config.users, "--seed", config.seed,
             *[part for option in options for part in ("-o", option)], check=True)
    there = pd.read_parquet(tmp_path / "there" / "items.parquet")
    for column in ("image", "audio", "video"):
        assert there[column].tolist() == here.items[column].tolist()
        assert _media_bytes(here, tmp_path / "here", column) == [
            (tmp_path / "there" / relative).read_bytes() for relative in there[column]], column
    users = pd.read_parquet(tmp_path / "there" / "users.parquet")
    pd.testing.assert_frame_equal(users.drop(columns="user"), here.users, check_dtype=False)


def test_another_seed_gives_other_clips_and_videos(tmp_path: Path) -> None:
    config = replace(MEDIA, users=40, items=30)
    first, other = generate(config, tmp_path / "a"), generate(replace(config, seed=6), tmp_path / "b")
    for column in ("audio", "video"):
        pairs = zip(_media_bytes(first, tmp_path / "a", column), _media_bytes(other, tmp_path / "b", column))
        assert all(a != b for a, b in pairs), column


def test_turning_media_off_leaves_their_files_out_and_changes_nothing_else(tmp_path: Path) -> None:
    config = replace(MEDIA, users=60, items=40)
    full = generate(config, tmp_path / "full")
    bare = generate(replace(config, audio=False, video=False), tmp_path / "bare")
    assert "audio" not in bare.items.columns and "video" not in bare.items.columns
    assert not (tmp_path / "bare" / "audio").exists() and not (tmp_path / "bare" / "video").exists()
    assert bare.source["files"] == ["images/"]
    pd.testing.assert_frame_equal(full.interactions, bare.interactions)
    pd.testing.assert_frame_equal(full.items.drop(columns=["audio", "video"]), bare.items)
    pd.testing.assert_frame_equal(full.users, bare.users)
    assert _media_bytes(full, tmp_path / "full", "image") == _media_bytes(bare, tmp_path / "bare", "image")
    only_video = generate(replace(config, audio=False), tmp_path / "video")
    assert _media_bytes(only_video, tmp_path / "video", "video") == _media_bytes(full, tmp_path / "full", "video")


# ----------------------------------------------------------------- options
@pytest.mark.parametrize(("option", "value"), [
    ("audio_sample_rate", 4_000), ("audio_sample_rate", 96_000), ("audio_seconds", 0.1), ("audio_seconds", 60.0),
    ("video_frames", 2), ("video_frames", 500), ("video_size", 8), ("video_size", 33), ("video_size", 1024)])
def test_bad_media_options_raise_an_error_naming_the_option(option: str, value: float) -> None:
    with pytest.raises(GraphrecError, match=repr(option)):
        SyntheticConfig(**{option: value})


def test_the_cli_switches_media_off_and_reports_bad_media_options_in_one_line(tmp_path: Path) -> None:
    graphrec("convert", "synthetic", "-", tmp_path / "ds", "--users", "30", "--items", "40",
             "-o", "audio=false", "-o", "video=no", check=True)
    items = pd.read_parquet(tmp_path / "ds" / "items.parquet")
    assert "audio" not in items.columns and "video" not in items.columns
    assert not (tmp_path / "ds" / "audio").exists()
    assert_clean_error(graphrec("convert", "synthetic", "-", tmp_path / "bad", "-o", "audio=maybe"), 2,
                       "option audio of format 'synthetic' is true or false, got 'maybe'")
    assert_clean_error(graphrec("convert", "synthetic", "-", tmp_path / "bad", "-o", "video_size=33"), 2,
                       "'video_size' must be an even number of pixels between 16 and 256, got 33")
    assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------- user profiles
def test_users_have_profiles_with_the_documented_columns(default_users: RawDataset) -> None:
    users = default_users.users
    assert list(users.columns) == ["user_id", "age", "gender", "occupation", "country", "bio", "taste_cluster"]
    assert users["age"].dtype == np.int32 and users["age"].between(16, 90).all()
    assert users["age"].nunique() > 20
    for column in ("gender", "occupation", "country"):
        assert 2 <= users[column].nunique() <= 20, column
    assert users["bio"].str.len().gt(10).all()
    assert users["bio"].nunique() > 0.8 * len(users)


def _held_out(users: pd.DataFrame) -> np.ndarray:
    return np.random.default_rng(0).random(len(users)) < 0.5


def test_each_profile_field_predicts_the_taste_cluster_better_than_chance(default_users: RawDataset) -> None:
    users = default_users.users.assign(age=pd.cut(default_users.users["age"], [0, 25, 35, 45, 55, 200]))
    held_out = _held_out(users)
    train, test = users[~held_out], users[held_out]
    majority = (test["taste_cluster"] == train["taste_cluster"].mode()[0]).mean()
    for column in ("age", "gender", "occupation", "country"):
        guess = train.groupby(column, observed=True)["taste_cluster"].agg(lambda clusters: clusters.mode()[0])
        accuracy = (test[column].map(guess) == test["taste_cluster"]).mean()
        assert accuracy > majority + 0.05, (column, accuracy, majority)


def _interaction_matrix(raw: RawDataset) -> np.ndarray:
    users = raw.interactions["user_id"].map({uid: k for k, uid in enumerate(raw.user_universe)})
    items = raw.interactions["item_id"].map({iid: k for k, iid in enumerate(raw.item_universe)})
    shape = (len(raw.user_universe), len(raw.item_universe))
    return sp.csr_matrix((np.ones(len(users)), (users, items)), shape=shape).toarray() > 0


def test_users_without_interactions_are_recommended_for_better_from_their_profile_than_by_popularity(
        default_users: RawDataset) -> None:
    """Half the users are cold: scored by how often users sharing a profile value took each item."""
    raw = default_users
    users = raw.users.assign(age=pd.cut(raw.users["age"], [0, 25, 35, 45, 55, 200]))
    taken = _interaction_matrix(raw)
    cold = _held_out(users)
    profile_scores = np.zeros(taken.shape)
    for column in ("age", "gender", "occupation", "country"):
        codes = pd.factorize(users[column])[0]
        for code in np.unique(codes):
            counts = taken[(codes == code) & ~cold].sum(axis=0)
            profile_scores[codes == code] += counts / max(counts.sum(), 1)
    popularity = np.broadcast_to(taken[~cold].sum(axis=0).astype(np.float64), taken.shape)

    def recall_at_20(scores: np.ndarray) -> float:
        top = np.argsort(-scores[cold], axis=1, kind="stable")[:, :20]
        return float((np.take_along_axis(taken[cold], top, axis=1).sum(axis=1) / taken[cold].sum(axis=1)).mean())

    assert recall_at_20(profile_scores) > 1.15 * recall_at_20(popularity)


def test_a_bio_that_names_a_colour_mostly_names_one_the_user_takes_often(default_users: RawDataset) -> None:
    raw = default_users
    taken = _interaction_matrix(raw)
    colour_codes = pd.Categorical(raw.items["colour"], categories=list(COLOURS)).codes
    share = np.stack([taken[:, colour_codes == code].sum(axis=1) for code in range(len(COLOURS))], axis=1)
    share = share / share.sum(axis=1, keepdims=True)
    word_to_colour = {word: k for k, words in enumerate(SYNONYMS["colour"].values()) for word in words}
    pattern = re.compile(r"(?:favourite colour is|resist anything|Mostly wear) ([a-z ]+)\.")
    named = [(user, word_to_colour[match.group(1)]) for user, bio in enumerate(raw.users["bio"])
             if (match := pattern.search(bio))]
    assert len(named) > 100
    rows, colours = np.asarray(named).T
    own = share[rows, colours].mean()
    someone_elses = share[np.roll(rows, 1), colours].mean()
    assert own > 1.25 * someone_elses, (own, someone_elses)
