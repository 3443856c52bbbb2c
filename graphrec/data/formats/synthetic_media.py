r"""Sound clips and short videos of the synthetic items (see :mod:`graphrec.data.formats.synthetic`).

An item's ``sound`` is heard only in its clip and its ``motion`` seen only in its video, so that
audio and video each carry a signal no other modality has:

* **audio** (WAV, 16-bit PCM mono, written with soundfile): a tone whose pitch register, timbre
  (waveform) and tempo (pulses per second) follow the sound (:data:`SOUNDS`), with per-item jitter
  of up to a semitone in pitch and 15% in tempo, a random phase of the pulses and a little noise.
  Waveforms are summed from their harmonics below the Nyquist frequency, so that no sample rate
  aliases them.
* **video** (MP4, MPEG-4 Part 2 through PyAV): the item's shape, filled with its colour, moving on
  a light background as its motion says (:data:`MOTIONS`: drifting right or left, rising, falling,
  pulsing in size or orbiting the centre), at a per-item speed and starting point.

Frames and samples are computed here with numpy rather than by a media library because they are
a few lines of arithmetic each; encoding and container writing are soundfile's and PyAV's.
The MPEG-4 encoder runs single-threaded with ``bitexact`` flags on the codec and the muxer (no
encoder version string, no creation time), so the same frames give the same bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import av
import numpy as np
import soundfile

#: Frames per second of the videos.
VIDEO_FPS = 8
#: The codec the videos are written with: PyAV's wheels ship it, and unlike libx264 it writes no
#: version string into the stream.
VIDEO_CODEC: Final = "mpeg4"


@dataclass(frozen=True)
class Sound:
    """A sound attribute value: fundamental frequency (Hz), waveform, and pulses per second."""

    frequency: float
    waveform: str
    tempo: float


#: The sound attribute's values. Neighbouring pitch registers lie 9-10 semitones apart, far more
#: than the per-item jitter of one semitone, so the dominant frequency tells them apart.
SOUNDS: dict[str, Sound] = {
    "deep hum": Sound(110.0, "sine", 1.0),
    "bass pulse": Sound(196.0, "square", 4.0),
    "warm strings": Sound(330.0, "sawtooth", 1.5),
    "bright chime": Sound(554.0, "bell", 2.0),
    "buzzy synth": Sound(988.0, "sawtooth", 6.0),
    "high whistle": Sound(1760.0, "sine", 3.0),
}
#: The motion attribute's values.
MOTIONS: tuple[str, ...] = ("rightward", "leftward", "rising", "falling", "pulsing", "orbiting")

#: Partials of the bell timbre: (frequency ratio, amplitude); inharmonic, as a struck bell's are.
_BELL_PARTIALS = ((1.0, 1.0), (2.76, 0.5), (5.40, 0.25), (8.93, 0.12))
#: Samples in the one-period table a harmonic waveform is read from.
_TABLE_SIZE = 4096


def render_wav(sound: str, sample_rate: int, seconds: float, rng: np.random.Generator) -> bytes:
    """A mono 16-bit WAV clip of ``sound`` lasting ``seconds`` at ``sample_rate``."""
    spec = SOUNDS[sound]
    frequency = spec.frequency * 2.0 ** (rng.uniform(-1.0, 1.0) / 12.0)
    tempo = spec.tempo * rng.uniform(0.85, 1.15)
    t = np.arange(round(sample_rate * seconds)) / sample_rate
    tone = _waveform(spec.waveform, frequency, t, sample_rate / 2.0, rng.uniform(0.0, 2 * math.pi))
    # Each pulse starts loud and decays; a slow sound barely dips, a fast one ticks.
    beat_phase = (t * tempo + rng.uniform(0.0, 1.0)) % 1.0
    envelope = 0.35 + 0.65 * np.exp(-4.0 * beat_phase)
    signal = tone * envelope
    signal = 0.5 * signal / max(float(np.abs(signal).max()), 1e-9) + rng.normal(0.0, 0.005, size=len(t))
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(signal, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _waveform(kind: str, frequency: float, t: np.ndarray, nyquist: float, phase: float) -> np.ndarray:
    if kind == "bell":  # inharmonic: summed partial by partial
        return sum((amplitude * np.sin(2 * math.pi * ratio * frequency * t + ratio * phase)
                    for ratio, amplitude in _BELL_PARTIALS if ratio * frequency < nyquist), np.zeros_like(t))
    if kind == "sine":
        harmonics = [(1, 1.0)]
    elif kind == "square":
        harmonics = [(n, 1.0 / n) for n in range(1, 40, 2)]
    elif kind == "sawtooth":
        harmonics = [(n, 1.0 / n) for n in range(1, 40)]
    else:
        raise ValueError(f"unknown waveform {kind!r}")
    # A harmonic waveform is periodic: one period, tabulated finely, is read at the tone's phase.
    cycle = np.arange(_TABLE_SIZE) / _TABLE_SIZE
    table = sum((amplitude * np.sin(2 * math.pi * n * cycle) for n, amplitude in harmonics
                 if n * frequency < nyquist), np.zeros(_TABLE_SIZE))
    position = (frequency * t + phase / (2 * math.pi)) % 1.0 * _TABLE_SIZE
    return np.interp(position, np.arange(_TABLE_SIZE + 1), np.append(table, table[0]))


def render_mp4(sprite: np.ndarray, colour: tuple[int, int, int], motion: str, frames: int, size: int,
               rng: np.random.Generator) -> bytes:
    """An MP4 of ``frames`` ``size`` x ``size`` frames: ``sprite`` (an alpha mask in [0, 1], about
    0.4 ``size`` across) filled with ``colour`` and moving as ``motion`` says."""
    pictures = _frames(sprite, colour, motion, frames, size, rng)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(VIDEO_CODEC, rate=VIDEO_FPS)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, VIDEO_FPS)
        stream.codec_context.thread_count = 1
        stream.codec_context.options = {"flags": "+bitexact", "qscale": "3"}
        for picture in pictures:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _frames(sprite: np.ndarray, colour: tuple[int, int, int], motion: str, frames: int, size: int,
            rng: np.random.Generator) -> list[np.ndarray]:
    background = np.clip(rng.integers(228, 253) + rng.integers(-10, 11, size=3), 0, 255).astype(np.float64)
    fill = np.clip(np.asarray(colour) + rng.integers(-14, 15, size=3), 0, 255).astype(np.float64)
    speed = rng.uniform(0.7, 1.0)
    # Where the sprite's centre is, as a share of the frame, and how much it is scaled, per frame.
    progress = np.linspace(0.0, 1.0, frames)
    travel = 0.45 * speed
    start = 0.5 - travel / 2
    across = rng.uniform(0.4, 0.6)
    scale = np.ones(frames)
    if motion in ("rightward", "leftward"):
        x = start + travel * (progress if motion == "rightward" else 1.0 - progress)
        y = np.full(frames, across)
    elif motion in ("rising", "falling"):
        y = start + travel * (1.0 - progress if motion == "rising" else progress)
        x = np.full(frames, across)
    elif motion == "pulsing":
        x = y = np.full(frames, 0.5)
        scale = 1.0 + 0.45 * speed * np.sin(2 * math.pi * progress + rng.uniform(0, 2 * math.pi))
    elif motion == "orbiting":
        angle = rng.uniform(0, 2 * math.pi) + 2 * math.pi * speed * progress * (1 if rng.random() < 0.5 else -1)
        x, y = 0.5 + 0.22 * np.cos(angle), 0.5 + 0.22 * np.sin(angle)
    else:
        raise ValueError(f"unknown motion {motion!r}")
    out = []
    for k in range(frames):
        alpha = _place(sprite, size, x[k] * size, y[k] * size, scale[k])[..., None]
        picture = background * (1.0 - alpha) + fill * alpha
        out.append(np.clip(np.rint(picture), 0, 255).astype(np.uint8))
    return out


def _place(sprite: np.ndarray, size: int, centre_x: float, centre_y: float, scale: float) -> np.ndarray:
    """A ``size`` x ``size`` alpha mask with ``sprite`` scaled by ``scale`` and centred at the point,
    sampled bilinearly (so that sub-pixel motion stays smooth) as two small matrix products."""
    def weights(centre: float, length: int) -> np.ndarray:
        source = (np.arange(size) + 0.5 - centre) / scale + length / 2 - 0.5
        return np.maximum(0.0, 1.0 - np.abs(source[:, None] - np.arange(length)[None, :]))

    height, width = sprite.shape
    return weights(centre_y, height) @ sprite @ weights(centre_x, width).T
