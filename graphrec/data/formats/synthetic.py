r"""The embedded default dataset: synthetic shoppers with profiles, and products with pictures,
descriptions, sound clips and videos.

Every item has seven latent attributes: a ``colour``, a ``shape`` and a ``texture``
(which its picture shows and its description mostly names), a product ``category``
and ``brand`` (which its title and description name), a ``sound`` (heard only in its
audio clip) and a ``motion`` (seen only in its video, which also shows its colour and
shape). Each modality therefore carries a signal the others lack: texture only the
picture, category and brand only the text, sound only the audio, motion only the
video. Each user belongs to one of a few taste clusters and has preferences over
attribute values drawn around the cluster's. A user :math:`u` picks :math:`n_u` distinct items
without replacement from

.. math::
    P(i \mid u) \propto \mathrm{pop}_i^{\beta}
    \prod_{a} \theta_{u,a}[v_a(i)]^{s\,\gamma_a}
    \exp(h\,\mathbf{w}_u^\top \mathbf{z}_i),

where :math:`\mathrm{pop}_i = r_i^{-1}` for a random popularity rank :math:`r_i`
(Zipf, exponent :math:`\beta`), :math:`\theta_{u,a} \sim
\mathrm{Dirichlet}(\kappa\,\pi_{c(u),a} + \alpha_0)` is the user's taste for
attribute :math:`a` around their cluster's profile :math:`\pi_{c,a} \sim
\mathrm{Dirichlet}(\alpha_\pi)`, :math:`\gamma_a` weighs the attributes
(:data:`ATTRIBUTE_WEIGHTS`, scaled by ``preference_strength`` :math:`s`) and
:math:`\mathbf{w}_u^\top\mathbf{z}_i` is a small hidden factor that content
cannot explain and only collaborative filtering can learn (``hidden_strength``
:math:`h`). Sampling without replacement uses the Gumbel-top-:math:`k` trick, so
it is vectorised over users and items.

Users have a profile drawn from their cluster, with noise: an ``age`` around the
cluster's typical age (standard deviation :data:`AGE_SPREAD` years), a ``gender``, an
``occupation`` and a ``country``, each from a cluster profile :math:`\sim
\mathrm{Dirichlet}(\alpha_p)` mixed with a uniform draw (:data:`PROFILE_NOISE`), and
a free-text ``bio`` naming one to three of their tastes (their favourite value of the
attribute, or with probability :data:`PROFILE_NOISE` a random one) among
distractor sentences. A user without interactions can so be recommended for from
their profile alone.

The split is given: a ``cold_fraction`` of items are *cold* (new arrivals) whose
interactions all go to valid and test (half each) and come last in each user's
history; every user's warm interactions are split at random 80/10/10, and every
user keeps at least one training interaction.

Pictures are real PNG files drawn with Pillow (shape filled with the colour,
texture drawn in a darker shade, with position, size, rotation, colour and
background jitter); descriptions are sentences built from templates with
synonyms, varied order, omitted attributes and distractor sentences; sound clips
(WAV) and videos (MP4) are rendered by :mod:`graphrec.data.formats.synthetic_media`.
The latent attributes and interactions do not depend on which media are written
(``audio=False`` or ``video=False`` only leaves their files out).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from graphrec.data.formats.synthetic_media import MOTIONS, SOUNDS, render_mp4, render_wav
from graphrec.data.raw import RawDataset, interactions_frame
from graphrec.errors import GraphrecError

GENERATOR_VERSION = "2"

#: The colours items come in, with the RGB the pictures use.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 45),
    "orange": (240, 135, 25),
    "yellow": (235, 205, 35),
    "green": (45, 160, 65),
    "teal": (20, 150, 150),
    "blue": (35, 80, 205),
    "purple": (125, 55, 170),
    "pink": (235, 110, 175),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross")
TEXTURES: tuple[str, ...] = ("plain", "stripes", "dots", "checks")
#: Product categories and the nouns their products are called by.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "kitchen": ("mug", "bowl", "plate", "teapot"),
    "stationery": ("notebook", "pencil case", "planner", "bookmark"),
    "apparel": ("t-shirt", "scarf", "cap", "tote bag"),
    "toys": ("plush toy", "puzzle", "kite", "building set"),
    "home decor": ("cushion", "vase", "wall print", "rug"),
    "garden": ("planter", "watering can", "bird feeder", "garden flag"),
    "sports": ("water bottle", "yoga mat", "gym bag", "sweatband"),
    "tech accessories": ("phone case", "laptop sleeve", "mouse pad", "cable organiser"),
}
BRANDS: tuple[str, ...] = ("Aurelo", "Brindle & Co", "Cobaltia", "Dunmore", "Everloom", "Fennick",
                           "Glimmerwood", "Hollowell", "Iverna", "Juniper Lane", "Kestrel", "Lumora")

#: Words a description may use for each attribute value (the first is the canonical one).
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "colour": {
        "red": ("red", "crimson", "scarlet", "cherry"),
        "orange": ("orange", "tangerine", "amber", "apricot"),
        "yellow": ("yellow", "lemon", "mustard", "sunflower"),
        "green": ("green", "emerald", "leafy green", "forest green"),
        "teal": ("teal", "turquoise", "aqua", "petrol"),
        "blue": ("blue", "cobalt", "navy", "sapphire"),
        "purple": ("purple", "violet", "plum", "lavender"),
        "pink": ("pink", "rose", "fuchsia", "blush"),
    },
    "shape": {
        "circle": ("circle", "round", "disc"),
        "square": ("square", "boxy", "block"),
        "triangle": ("triangle", "triangular", "pyramid"),
        "star": ("star", "starry", "five-point star"),
        "ring": ("ring", "hoop", "donut"),
        "cross": ("cross", "plus-sign", "criss-cross"),
    },
    "texture": {
        "plain": ("plain", "solid", "unpatterned"),
        "stripes": ("striped", "stripy", "pinstriped", "banded"),
        "dots": ("polka-dot", "dotted", "spotted"),
        "checks": ("checked", "checkered", "gingham", "plaid"),
    },
    "category": {
        "kitchen": ("kitchen", "cookware", "dining"),
        "stationery": ("stationery", "desk", "office"),
        "apparel": ("apparel", "clothing", "fashion"),
        "toys": ("toys", "toy", "playtime"),
        "home decor": ("home decor", "interior", "living room"),
        "garden": ("garden", "outdoor", "patio"),
        "sports": ("sports", "fitness", "workout"),
        "tech accessories": ("tech accessories", "gadget", "electronics"),
    },
}

#: The attributes users have tastes for, and how much each weighs in their choices.
ATTRIBUTE_WEIGHTS: dict[str, float] = {"colour": 1.0, "shape": 0.8, "category": 1.0, "texture": 0.5,
                                       "brand": 0.4, "sound": 0.8, "motion": 0.8}

_ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS), "shape": SHAPES, "texture": TEXTURES, "category": tuple(CATEGORIES),
    "brand": BRANDS, "sound": tuple(SOUNDS), "motion": MOTIONS,
}
#: The attributes only audio and video show; drawn from a stream of their own, so that adding them
#: left the draws of the others as they were.
_MEDIA_ATTRIBUTES = ("sound", "motion")

GENDERS: tuple[str, ...] = ("female", "male", "non-binary")
OCCUPATIONS: tuple[str, ...] = ("student", "teacher", "engineer", "nurse", "designer", "chef", "retiree",
                                "sales assistant", "farmer", "programmer", "artist", "accountant")
COUNTRIES: tuple[str, ...] = ("United Kingdom", "Ireland", "France", "Germany", "Spain", "Italy",
                              "Netherlands", "Poland", "Sweden", "Portugal")
#: Standard deviation of a user's age around their cluster's typical age, in years.
AGE_SPREAD = 8.0
#: The chance that a profile field (or a taste a bio names) is drawn at random instead of from the cluster.
PROFILE_NOISE = 0.25
_BASE_TIMESTAMP = 1_600_000_000  # 2020-09-13, so the timestamps look like real Unix times
_DAY = 86_400


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and knobs of the synthetic dataset.

    ``mean_interactions`` is the mean number of interactions per user (each has at
    least ``min_interactions``); ``popularity_exponent`` the Zipf exponent of item
    popularity; ``preference_strength`` scales how strongly attribute tastes steer
    choices and ``hidden_strength`` the hidden, content-free factor;
    ``text_omit_probability`` is the chance that a description leaves out a given
    attribute.

    ``audio`` and ``video`` write each item's sound clip (``audio_sample_rate`` Hz,
    ``audio_seconds`` long) and video (``video_frames`` frames of ``video_size`` pixels
    square, at :data:`~graphrec.data.formats.synthetic_media.VIDEO_FPS` frames a second);
    turning them off changes nothing else.

    ``density`` sets the share of observed user–item pairs instead: when it is positive, users
    draw ``density * items`` interactions on average (still at least ``min_interactions`` each)
    and ``mean_interactions`` is ignored; 0, the default, leaves ``mean_interactions`` in charge.
    Content is planted the same way at every density. The default (1,000 users, 400 items, 30
    each) is dense; MMRec's Amazon sets are sparse (Baby: 0.12%), which a sparse variant such as
    ``users=10_000, items=6_000, density=0.0015`` reproduces in size and density.
    """

    users: int = 1000
    items: int = 400
    seed: int = 0
    image_size: int = 64
    cold_fraction: float = 0.1
    mean_interactions: float = 30.0
    min_interactions: int = 5
    taste_clusters: int = 6
    popularity_exponent: float = 1.0
    preference_strength: float = 1.0
    hidden_strength: float = 0.5
    text_omit_probability: float = 0.15
    density: float = 0.0
    audio: bool = True
    audio_sample_rate: int = 16_000
    audio_seconds: float = 1.0
    video: bool = True
    video_frames: int = 12
    video_size: int = 32

    def __post_init__(self) -> None:
        def fail(option: str, requirement: str) -> None:
            raise GraphrecError(f"synthetic option {option!r} {requirement}, got {getattr(self, option)!r}")

        if self.users < 1:
            fail("users", "must be at least 1")
        if self.min_interactions < 1:
            fail("min_interactions", "must be at least 1")
        if self.items < self.min_interactions + 1:
            fail("items", f"must exceed min_interactions ({self.min_interactions})")
        if not 16 <= self.image_size <= 1024:
            fail("image_size", "must be between 16 and 1024 pixels")
        if not 0.0 <= self.cold_fraction < 1.0:
            fail("cold_fraction", "must be in [0, 1)")
        if round(self.cold_fraction * self.items) >= self.items:
            fail("cold_fraction", "must leave at least one warm item")
        if not 0.0 <= self.density <= 1.0:
            fail("density", "must be in [0, 1] (0: mean_interactions decides)")
        if self.density > 0 and not self.min_interactions <= self.interactions_per_user <= self.items:
            fail("density", f"times items ({self.items}) must give at least min_interactions "
                            f"({self.min_interactions}) per user")
        if self.density == 0 and not self.min_interactions <= self.mean_interactions <= self.items:
            fail("mean_interactions", f"must be between min_interactions ({self.min_interactions}) "
                                      f"and items ({self.items})")
        if self.taste_clusters < 1:
            fail("taste_clusters", "must be at least 1")
        for option in ("popularity_exponent", "preference_strength", "hidden_strength"):
            if not 0.0 <= getattr(self, option) <= 10.0:
                fail(option, "must be between 0 and 10")
        if not 0.0 <= self.text_omit_probability <= 1.0:
            fail("text_omit_probability", "must be in [0, 1]")
        if not 8_000 <= self.audio_sample_rate <= 48_000:
            fail("audio_sample_rate", "must be between 8000 and 48000 Hz")
        if not 0.25 <= self.audio_seconds <= 10.0:
            fail("audio_seconds", "must be between 0.25 and 10 seconds")
        if not 4 <= self.video_frames <= 64:
            fail("video_frames", "must be between 4 and 64")
        if not (16 <= self.video_size <= 256 and self.video_size % 2 == 0):
            fail("video_size", "must be an even number of pixels between 16 and 256")

    @property
    def interactions_per_user(self) -> float:
        """The mean number of interactions a user draws: ``density * items``, or ``mean_interactions``."""
        return self.density * self.items if self.density > 0 else self.mean_interactions

    @property
    def num_cold_items(self) -> int:
        return round(self.cold_fraction * self.items)


def read(src: str | Path = "-", *, workdir: Path, users: int = 1000, items: int = 400, seed: int = 0,
         image_size: int = 64, cold_fraction: float = 0.1, mean_interactions: float = 30.0,
         min_interactions: int = 5, taste_clusters: int = 6, popularity_exponent: float = 1.0,
         preference_strength: float = 1.0, hidden_strength: float = 0.5,
         text_omit_probability: float = 0.15, density: float = 0.0, audio: bool = True,
         audio_sample_rate: int = 16_000, audio_seconds: float = 1.0, video: bool = True, video_frames: int = 12,
         video_size: int = 32) -> RawDataset:
    """Generate the synthetic dataset, writing its media under ``workdir`` (``images/``, ``audio/``, ``video/``).

    ``src`` is ignored (the command line passes ``-``); the options are those of
    :class:`SyntheticConfig`.
    """
    config = SyntheticConfig(users=users, items=items, seed=seed, image_size=image_size,
                             cold_fraction=cold_fraction, mean_interactions=mean_interactions,
                             min_interactions=min_interactions, taste_clusters=taste_clusters,
                             popularity_exponent=popularity_exponent, preference_strength=preference_strength,
                             hidden_strength=hidden_strength, text_omit_probability=text_omit_probability,
                             density=density, audio=audio, audio_sample_rate=audio_sample_rate,
                             audio_seconds=audio_seconds, video=video, video_frames=video_frames,
                             video_size=video_size)
    return generate(config, Path(workdir))


def generate(config: SyntheticConfig, workdir: Path) -> RawDataset:
    """Draw items, users and interactions from ``config.seed`` and write each item's PNG (and, unless
    turned off, WAV and MP4).

    The result is a function of the configuration alone: the same seed gives the
    same interactions, tables and media bytes.
    """
    streams = np.random.SeedSequence([config.seed, 0x6772_6563]).spawn(10)
    item_rng, user_rng, choice_rng, split_rng, text_rng, image_rng, media_attribute_rng, audio_rng, video_rng, \
        profile_rng = (np.random.default_rng(s) for s in streams)

    attributes = _draw_item_attributes(config, item_rng)
    attributes.update(_draw_media_attributes(config, media_attribute_rng))
    cold = np.zeros(config.items, dtype=bool)
    cold[item_rng.choice(config.items, size=config.num_cold_items, replace=False)] = True
    popularity_rank = item_rng.permutation(config.items) + 1
    hidden_items = item_rng.normal(size=(config.items, 4)) / 2.0

    cluster, tastes = _draw_user_tastes(config, user_rng)
    tastes.update(_draw_tastes(config, cluster, _MEDIA_ATTRIBUTES, media_attribute_rng))
    hidden_users = user_rng.normal(size=(config.users, 4)) / 2.0
    counts = config.min_interactions + user_rng.negative_binomial(
        2, 2.0 / (2.0 + config.interactions_per_user - config.min_interactions), size=config.users)
    capped = int((counts > config.items).sum())
    counts = np.minimum(counts, config.items)

    popularity_logits = config.popularity_exponent * -np.log(popularity_rank)
    user, item = _sample_interactions(config, choice_rng, counts, attributes, tastes, popularity_logits,
                                      (hidden_users, hidden_items), cold)
    user, item, timestamp, split = _order_and_split(config, split_rng, user, item, cold)

    width = max(5, len(str(max(config.users, config.items) - 1)))
    user_ids = np.array([f"user_{u:0{width}d}" for u in range(config.users)])
    item_ids = np.array([f"item_{i:0{width}d}" for i in range(config.items)])

    media = {"image": _write_media(workdir, "images", item_ids, "png", lambda index: _render_png(
        attributes["colour"][index], attributes["shape"][index], attributes["texture"][index], config.image_size,
        image_rng))}
    if config.audio:
        media["audio"] = _write_media(workdir, "audio", item_ids, "wav", lambda index: render_wav(
            attributes["sound"][index], config.audio_sample_rate, config.audio_seconds, audio_rng))
    if config.video:
        media["video"] = _write_media(workdir, "video", item_ids, "mp4", lambda index: render_mp4(
            _shape_sprite(attributes["shape"][index], config.video_size, video_rng),
            COLOURS[attributes["colour"][index]], attributes["motion"][index], config.video_frames,
            config.video_size, video_rng))

    titles, texts = _describe_items(attributes, config.text_omit_probability, text_rng)
    items_table = pd.DataFrame({
        "item_id": item_ids,
        "title": titles,
        "text": texts,
        "categories": [[category] for category in attributes["category"]],
        "brand": attributes["brand"],
        **media,
        "colour": attributes["colour"],
        "shape": attributes["shape"],
        "texture": attributes["texture"],
        "sound": attributes["sound"],
        "motion": attributes["motion"],
        "cold": cold,
    })
    users_table = pd.DataFrame({"user_id": user_ids, **_draw_profiles(config, cluster, tastes, profile_rng),
                                "taste_cluster": cluster.astype(np.int32)})

    interactions = interactions_frame(user_ids[user], item_ids[item], timestamp=timestamp, split=split)
    notes = [
        f"synthetic: {config.users} users in {config.taste_clusters} taste clusters choose among "
        f"{config.items} items by their tastes for colour, shape, category, texture, brand, sound and motion "
        f"(weights {', '.join(f'{name} {weight}' for name, weight in ATTRIBUTE_WEIGHTS.items())}; strength "
        f"{config.preference_strength}), a Zipf popularity "
        f"(exponent {config.popularity_exponent}) and a hidden factor that content does not show "
        f"(strength {config.hidden_strength}); pictures show colour, shape and texture, descriptions name "
        f"colour, shape, texture, category and brand with synonyms (each left out with probability "
        f"{config.text_omit_probability}), " + ("sound clips (audio) play the sound, " if config.audio else "")
        + ("videos show the shape in its colour making the motion, " if config.video else "")
        + "and user profiles (age, gender, occupation, country, bio) follow the taste clusters with noise.",
    ]
    split_notes = [
        f"synthetic: {config.num_cold_items} cold items ({config.cold_fraction:.0%}) have interactions only "
        f"in valid and test; warm interactions are split per user at random 80/10/10.",
    ]
    if capped:
        notes.append(f"synthetic: {capped} users drew more interactions than there are items and were "
                     f"capped at {config.items}.")
    source = {
        "format": "synthetic",
        "path": "-",
        "generator": "graphrec.data.formats.synthetic",
        "version": GENERATOR_VERSION,
        "config": asdict(config),
        "files": [f"{folder}/" for folder, on in (("images", True), ("audio", config.audio),
                                                   ("video", config.video)) if on],
        # the generator's hidden truth: no model may read it by default (see graph.hetero)
        "latent_user_columns": ["taste_cluster"],
    }
    return RawDataset(interactions=interactions, items=items_table, users=users_table,
                      user_universe=user_ids.tolist(), item_universe=item_ids.tolist(),
                      source=source, notes=notes, split_notes=split_notes, split_item_columns=("cold",))


# ------------------------------------------------------------------ sampling
def _draw_item_attributes(config: SyntheticConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Value of each attribute per item; brands specialise in a few categories."""
    n = config.items
    out = {}
    for name in ("colour", "shape", "texture", "category"):
        values = _ATTRIBUTE_VALUES[name]
        # Uneven but not degenerate marginals: some colours are simply more common.
        marginal = rng.dirichlet(np.full(len(values), 4.0))
        out[name] = np.asarray(values, dtype=object)[rng.choice(len(values), size=n, p=marginal)]
    category_index = _codes(out["category"], "category")
    brand_given_category = rng.dirichlet(np.full(len(BRANDS), 0.3), size=len(CATEGORIES))
    brand = _sample_rows(rng, brand_given_category[category_index])
    out["brand"] = np.asarray(BRANDS, dtype=object)[brand]
    return out


def _draw_media_attributes(config: SyntheticConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each item's sound and motion, from uneven marginals like the other attributes'."""
    out = {}
    for name in _MEDIA_ATTRIBUTES:
        values = _ATTRIBUTE_VALUES[name]
        marginal = rng.dirichlet(np.full(len(values), 4.0))
        out[name] = np.asarray(values, dtype=object)[rng.choice(len(values), size=config.items, p=marginal)]
    return out


def _draw_user_tastes(config: SyntheticConfig,
                      rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each user's cluster and, per attribute but sound and motion, a log-probability for every value
    (users x values)."""
    cluster_weights = rng.dirichlet(np.full(config.taste_clusters, 5.0))
    cluster = rng.choice(config.taste_clusters, size=config.users, p=cluster_weights)
    names = tuple(name for name in _ATTRIBUTE_VALUES if name not in _MEDIA_ATTRIBUTES)
    return cluster, _draw_tastes(config, cluster, names, rng)


def _draw_tastes(config: SyntheticConfig, cluster: np.ndarray, names: tuple[str, ...],
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per attribute of ``names``, each user's log-probability for every value, around their cluster's."""
    tastes = {}
    for name in names:
        values = _ATTRIBUTE_VALUES[name]
        profiles = rng.dirichlet(np.full(len(values), 0.4), size=config.taste_clusters)
        concentration = 6.0 * len(values) * profiles[cluster] + 0.3
        theta = rng.gamma(concentration)
        theta /= theta.sum(axis=1, keepdims=True)
        # A floor keeps disliked values possible (people do buy outside their taste).
        tastes[name] = np.log(np.maximum(theta, 1e-3))
    return tastes


def _draw_profiles(config: SyntheticConfig, cluster: np.ndarray, tastes: dict[str, np.ndarray],
                   rng: np.random.Generator) -> dict[str, object]:
    """The users' profile columns: age, gender, occupation and country follow their cluster, the bio
    names some of their own tastes; each with noise."""
    typical_age = rng.uniform(20.0, 62.0, size=config.taste_clusters)
    age = np.clip(np.rint(rng.normal(typical_age[cluster], AGE_SPREAD)), 16, 90).astype(np.int32)
    columns: dict[str, object] = {"age": age}
    for name, values in (("gender", GENDERS), ("occupation", OCCUPATIONS), ("country", COUNTRIES)):
        profiles = rng.dirichlet(np.full(len(values), 0.5), size=config.taste_clusters)
        mixed = (1 - PROFILE_NOISE) * profiles[cluster] + PROFILE_NOISE / len(values)
        columns[name] = np.asarray(values, dtype=object)[_sample_rows(rng, mixed)]
    favourites = {name: tastes[name].argmax(axis=1) for name in _BIO_SENTENCES}
    bios = []
    for user in range(config.users):
        named = rng.choice(len(_BIO_SENTENCES), size=rng.integers(1, 4), replace=False)
        sentences = []
        for k in named:
            attribute = tuple(_BIO_SENTENCES)[k]
            values = _ATTRIBUTE_VALUES[attribute]
            value = values[int(rng.integers(len(values)))] if rng.random() < PROFILE_NOISE \
                else values[favourites[attribute][user]]
            words = SYNONYMS[attribute][value] if attribute in SYNONYMS else \
                _MOTION_WORDS[value] if attribute == "motion" else (value,)
            word = _pick(rng, words)
            sentences.append(_pick(rng, _BIO_SENTENCES[attribute]).format(w=word))
        sentences += [_BIO_FILLERS[k] for k in rng.choice(len(_BIO_FILLERS), size=rng.integers(0, 3), replace=False)]
        bios.append(" ".join(sentences[k] for k in rng.permutation(len(sentences))))
    columns["bio"] = bios
    return columns


def _sample_interactions(config: SyntheticConfig, rng: np.random.Generator, counts: np.ndarray,
                         attributes: dict[str, np.ndarray], tastes: dict[str, np.ndarray],
                         popularity_logits: np.ndarray, hidden: tuple[np.ndarray, np.ndarray],
                         cold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gumbel-top-k: each user's ``counts[u]`` distinct items, drawn without replacement."""
    codes = {name: _codes(attributes[name], name) for name in ATTRIBUTE_WEIGHTS}
    # Chunks of users keep the users x items score matrix to a few million entries.
    chunk = max(1, 4_000_000 // config.items)
    users_out, items_out = [], []
    for start in range(0, config.users, chunk):
        rows = np.arange(start, min(start + chunk, config.users))
        logits = popularity_logits[None, :] + config.hidden_strength * hidden[0][rows] @ hidden[1].T
        for name, weight in ATTRIBUTE_WEIGHTS.items():
            logits = logits + config.preference_strength * weight * tastes[name][rows][:, codes[name]]
        keys = logits + rng.gumbel(size=logits.shape)
        k = int(counts[rows].max())
        top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1), axis=1)
        taken = np.arange(k)[None, :] < counts[rows][:, None]
        # A user whose picks are all cold would have nothing to train on: swap their
        # least wanted pick for their most wanted warm item (never already picked).
        chosen_cold = np.where(taken, cold[top], True).all(axis=1)
        if chosen_cold.any():
            lacking = np.flatnonzero(chosen_cold)
            best_warm = np.where(cold[None, :], -np.inf, keys[lacking]).argmax(axis=1)
            top[lacking, counts[rows][lacking] - 1] = best_warm
        users_out.append(np.broadcast_to(rows[:, None], top.shape)[taken])
        items_out.append(top[taken])
    return np.concatenate(users_out), np.concatenate(items_out)


def _order_and_split(config: SyntheticConfig, rng: np.random.Generator, user: np.ndarray, item: np.ndarray,
                     cold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Timestamps increasing per user (cold items last, as new arrivals) and the given split."""
    n = len(user)
    is_cold = cold[item]

    # Warm interactions: a random 80/10/10 per user, by rank in a random order with
    # stochastically rounded quotas so small users are split fairly in expectation.
    order = np.lexsort((rng.random(n), is_cold, user))
    user, item, is_cold = user[order], item[order], is_cold[order]
    warm_count = np.bincount(user[~is_cold], minlength=config.users)
    group_start = np.searchsorted(user, np.arange(config.users))
    rank = np.arange(n) - group_start[user]
    n_valid = np.floor(0.1 * warm_count + rng.random(config.users)).astype(np.int64)
    n_test = np.floor(0.1 * warm_count + rng.random(config.users)).astype(np.int64)
    excess = np.maximum(n_valid + n_test - (warm_count - 1), 0)
    from_valid = np.minimum(excess, n_valid)
    n_valid -= from_valid
    n_test -= excess - from_valid
    n_train = warm_count - n_valid - n_test
    split = np.where(rank < n_train[user], "train", np.where(rank < (n_train + n_valid)[user], "valid", "test"))

    # Cold interactions: half to valid, half to test, at random.
    cold_rows = np.flatnonzero(is_cold)
    shuffled = rng.permutation(cold_rows)
    split[shuffled[: len(shuffled) // 2]] = "valid"
    split[shuffled[len(shuffled) // 2:]] = "test"

    # Time order within a user: warm interactions at random (independently of the
    # split, which is random, not temporal), then the cold ones.
    order = np.lexsort((rng.random(n), is_cold, user))
    user, item, split = user[order], item[order], split[order]
    gaps = 1 + np.floor(rng.exponential(2.0 * _DAY, size=n)).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    cumulative = np.cumsum(gaps)
    within_user = cumulative - np.repeat(cumulative[starts] - gaps[starts], np.diff(np.r_[starts, n]))
    user_offset = rng.integers(0, 365 * _DAY, size=config.users)
    timestamp = _BASE_TIMESTAMP + user_offset[user] + within_user
    return user, item, timestamp, split


def _write_media(workdir: Path, folder: str, item_ids: np.ndarray, suffix: str,
                 render: Callable[[int], bytes]) -> list[str]:
    """Write ``render(index)`` for every item to ``workdir/folder/<item id>.<suffix>``; the relative paths."""
    (workdir / folder).mkdir(parents=True, exist_ok=True)
    paths = []
    for index, item_id in enumerate(item_ids):
        relative = f"{folder}/{item_id}.{suffix}"
        (workdir / relative).write_bytes(render(index))
        paths.append(relative)
    return paths


def _codes(values: np.ndarray, attribute: str) -> np.ndarray:
    lookup = {value: code for code, value in enumerate(_ATTRIBUTE_VALUES[attribute])}
    return np.fromiter((lookup[value] for value in values), dtype=np.int64, count=len(values))


def _sample_rows(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probabilities`` (rows sum to one)."""
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random((len(probabilities), 1)) * cumulative[:, -1:]
    return np.minimum((draws > cumulative).sum(axis=1), probabilities.shape[1] - 1)


# -------------------------------------------------------------------- images
_SUPERSAMPLE = 2


def _render_png(colour: str, shape: str, texture: str, size: int, rng: np.random.Generator) -> bytes:
    """A ``size`` x ``size`` PNG of the shape, filled with the colour and patterned with the texture."""
    canvas = size * _SUPERSAMPLE
    background = tuple(int(v) for v in np.clip(rng.integers(228, 253) + rng.integers(-10, 11, size=3), 0, 255))
    base = np.clip(np.asarray(COLOURS[colour]) + rng.integers(-14, 15, size=3), 0, 255)
    dark = tuple(int(v) for v in (base * 0.6).astype(int))
    base_rgb = tuple(int(v) for v in base)

    radius = canvas * rng.uniform(0.28, 0.38)
    centre_x, centre_y = canvas / 2 + rng.uniform(-0.1, 0.1, size=2) * canvas
    angle = rng.uniform(-0.3, 0.3)

    mask = Image.new("L", (canvas, canvas), 0)
    _draw_shape(ImageDraw.Draw(mask), shape, centre_x, centre_y, radius, angle)

    pattern = Image.new("RGB", (canvas, canvas), base_rgb)
    _draw_texture(ImageDraw.Draw(pattern), texture, canvas, radius, dark, rng)

    image = Image.new("RGB", (canvas, canvas), background)
    image.paste(pattern, (0, 0), mask)
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _shape_sprite(shape: str, video_size: int, rng: np.random.Generator) -> np.ndarray:
    """The alpha mask (values in [0, 1]) of ``shape`` as a video shows it, about 0.4 of the frame across."""
    side = max(6, round(0.42 * video_size))
    canvas = side * _SUPERSAMPLE * 2
    mask = Image.new("L", (canvas, canvas), 0)
    _draw_shape(ImageDraw.Draw(mask), shape, canvas / 2, canvas / 2, canvas * 0.4, rng.uniform(-0.3, 0.3))
    return np.asarray(mask.resize((side, side), Image.Resampling.LANCZOS), dtype=np.float64) / 255.0


def _polygon(centre_x: float, centre_y: float, radii: list[float], angle: float) -> list[tuple[float, float]]:
    """Vertices at evenly spaced angles, the first pointing up, rotated by ``angle``."""
    step = 2 * math.pi / len(radii)
    return [(centre_x + r * math.sin(angle + k * step), centre_y - r * math.cos(angle + k * step))
            for k, r in enumerate(radii)]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float, angle: float) -> None:
    if shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    elif shape == "ring":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
        inner = 0.55 * r
        draw.ellipse((x - inner, y - inner, x + inner, y + inner), fill=0)
    elif shape == "square":
        draw.polygon(_polygon(x, y, [r * 1.05] * 4, angle + math.pi / 4), fill=255)
    elif shape == "triangle":
        draw.polygon(_polygon(x, y + 0.15 * r, [r * 1.2] * 3, angle), fill=255)
    elif shape == "star":
        draw.polygon(_polygon(x, y, [r * 1.15, r * 0.5] * 5, angle), fill=255)
    elif shape == "cross":
        arm, half = r * 1.05, r * 0.34
        # A plus sign as one 12-vertex outline so that it can be rotated like the others.
        corners = [(-half, -arm), (half, -arm), (half, -half), (arm, -half), (arm, half), (half, half),
                   (half, arm), (-half, arm), (-half, half), (-arm, half), (-arm, -half), (-half, -half)]
        cos, sin = math.cos(angle), math.sin(angle)
        draw.polygon([(x + cx * cos - cy * sin, y + cx * sin + cy * cos) for cx, cy in corners], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _draw_texture(draw: ImageDraw.ImageDraw, texture: str, canvas: int, radius: float,
                  ink: tuple[int, ...], rng: np.random.Generator) -> None:
    period = max(4.0, radius * rng.uniform(0.32, 0.42))
    phase = rng.uniform(0, period)
    if texture == "plain":
        return
    if texture == "stripes":
        width = period / 3
        vertical = rng.random() < 0.5
        offset = phase - period
        while offset < canvas:
            box = (offset, 0, offset + width, canvas) if vertical else (0, offset, canvas, offset + width)
            draw.rectangle(box, fill=ink)
            offset += period
    elif texture == "dots":
        dot = period / 5
        y = phase - period
        while y < canvas + period:
            x = phase - period
            while x < canvas + period:
                draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=ink)
                x += period
            y += period
    elif texture == "checks":
        width = period / 5
        offset = phase - period
        while offset < canvas:
            draw.rectangle((offset, 0, offset + width, canvas), fill=ink)
            draw.rectangle((0, offset, canvas, offset + width), fill=ink)
            offset += period
    else:
        raise ValueError(f"unknown texture {texture!r}")


# ---------------------------------------------------------------------- text
_COLOUR_SENTENCES = ("Finished in {w}.", "It comes in {w}.", "The main colour is {w}.",
                     "The {w} tone runs throughout.", "Available here in {w} only.")
_SHAPE_SENTENCES = ("Motif: {w}.", "The {w} design stands out.", "Printed with a bold {w} emblem.",
                    "Look for the {w} pattern on the front.")
_TEXTURE_SENTENCES = ("The surface is {w}.", "The finish is {w} all over.", "Its look is {w} and tidy.",
                      "Expect the {w} effect up close.")
_CATEGORY_SENTENCES = ("Part of our {w} range.", "A favourite in the {w} aisle.", "Made for everyday {w} use.",
                       "Shop more in {w}.")
_BRAND_SENTENCES = ("Made by {w}.", "From the {w} collection.", "Designed in-house at {w}.")
_OPENERS = ("A lovely", "Our best-selling", "A handy", "This charming", "A sturdy", "The new", "A classic",
            "Meet the", "Introducing our")
_DISTRACTORS = ("Ships in recyclable packaging.", "Great value for the price.", "Makes a thoughtful gift.",
                "Customers say it exceeded their expectations.", "Easy to clean.", "Limited stock available.",
                "Check the size guide before ordering.", "Backed by a two-year guarantee.",
                "Order before noon for next-day delivery.", "Loved by families and students alike.")
_MISLEADING = ("Pairs nicely with {w} accessories.", "Not to be confused with the {w} edition.",
               "Also see our {w} range.")


def _describe_items(attributes: dict[str, np.ndarray], omit_probability: float,
                    rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """A title and a free-text description per item."""
    titles, texts = [], []
    colours = tuple(COLOURS)
    for index in range(len(attributes["colour"])):
        colour, shape, texture = attributes["colour"][index], attributes["shape"][index], \
            attributes["texture"][index]
        category, brand = attributes["category"][index], attributes["brand"][index]
        product = _pick(rng, CATEGORIES[category])
        titles.append(f"{brand} {colour.capitalize()} {shape.capitalize()} {product.title()}")

        words = {
            "colour": _pick(rng, SYNONYMS["colour"][colour]),
            "shape": _pick(rng, SYNONYMS["shape"][shape]),
            "texture": _pick(rng, SYNONYMS["texture"][texture]),
            "category": _pick(rng, SYNONYMS["category"][category]),
            "brand": brand,
        }
        kept = [name for name in words if rng.random() >= omit_probability]
        # Colour and texture may be said inline in the opening sentence, in either order.
        inline = [name for name in ("colour", "texture") if name in kept and rng.random() < 0.5]
        if len(inline) == 2 and rng.random() < 0.5:
            inline.reverse()
        opener = " ".join([_pick(rng, _OPENERS)] + [words[name] for name in inline] + [product]) + "."
        templates = {"colour": _COLOUR_SENTENCES, "shape": _SHAPE_SENTENCES, "texture": _TEXTURE_SENTENCES,
                     "category": _CATEGORY_SENTENCES, "brand": _BRAND_SENTENCES}
        sentences = [_pick(rng, templates[name]).format(w=words[name]) for name in kept if name not in inline]
        sentences += [_DISTRACTORS[k] for k in rng.choice(len(_DISTRACTORS), size=rng.integers(1, 4),
                                                            replace=False)]
        if rng.random() < 0.2:
            other = _pick(rng, [c for c in colours if c != colour])
            sentences.append(_pick(rng, _MISLEADING).format(w=_pick(rng, SYNONYMS["colour"][other])))
        order = rng.permutation(len(sentences))
        body = [sentences[k] for k in order]
        texts.append(" ".join([opener] + [s[0].upper() + s[1:] for s in body]))
    return titles, texts


_BIO_SENTENCES: dict[str, tuple[str, ...]] = {
    "colour": ("My favourite colour is {w}.", "I can't resist anything {w}.", "Mostly wear {w}."),
    "shape": ("Big fan of {w} designs.", "I collect anything with a {w} motif."),
    "texture": ("I like my things {w}.", "Always drawn to {w} patterns."),
    "category": ("Always shopping for {w}.", "I spend far too much on {w}.", "Into {w} lately."),
    "sound": ("I love a {w} sound.", "Anything with a {w} jingle gets me."),
    "motion": ("Product videos that move {w} make me smile.", "I notice things moving {w}."),
}
#: How a bio says the motion values.
_MOTION_WORDS: dict[str, tuple[str, ...]] = {
    "rightward": ("to the right", "left to right"), "leftward": ("to the left", "right to left"),
    "rising": ("upwards", "up and away"), "falling": ("downwards", "down"),
    "pulsing": ("in pulses", "in and out"), "orbiting": ("in circles", "round and round"),
}
_BIO_FILLERS = ("Coffee first.", "Dog person.", "Weekend hiker.", "Looking for gifts for friends.",
                "New to the city.", "Reads a lot.", "Bargain hunter.", "Plant parent.")


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]
