"""Knobs of the synthetic data sets, one typed record per model preset (`tiny`, `paper`).

Image size and audio rate come from `unitocom.config` so that the data always matches the models trained on it.
Lengths in `*_frac` are fractions of the image side, so one preset draws the same scene at any size.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from unitocom.config import PRESETS as MODEL_PRESETS

SPLITS: tuple[str, ...] = ("train", "val", "test")
# LibriSpeech's own subset names, so that code written for the real corpus runs on the synthetic one unchanged.
SPEECH_SUBSETS: dict[str, str] = {"train": "train-clean-100", "val": "dev-clean", "test": "test-clean"}

FAMILIES_ALL: tuple[str, ...] = (
    "count", "exist", "query_color", "query_shape", "query_size", "query_material",
    "compare_more", "compare_equal", "compare_attribute", "relate_yesno", "relate_count", "relate_query",
)


@dataclass(frozen=True)
class DataPreset:
    name: str
    image_size_px: int
    audio_rate_hz: int
    # Scenes per split; questions and captions per scene.
    train_scenes: int
    val_scenes: int
    test_scenes: int
    questions_per_scene: int
    captions_per_image: int
    # What a scene may contain.
    objects_min: int
    objects_max: int
    colors: tuple[str, ...]
    shapes: tuple[str, ...]
    sizes: tuple[str, ...]
    materials: tuple[str, ...]
    size_radius_frac: tuple[float, ...]  # radius of each entry of `sizes`, as a fraction of the image side
    # Placement: every pair of objects differs by at least this much along x and along y, so that left/right
    # and front/behind are never ambiguous (CLEVR enforces the same margin) ...
    axis_margin_frac: float
    # ... and centres are at least this fraction of the two radii apart: partial occlusion, never hidden.
    min_center_gap: float
    max_rotation_deg: float
    supersample: int  # anti-aliasing factor of the drawing grid
    shadows: bool
    # Material is drawn in every preset; it is only asked about (and named in captions) where it stays visible.
    ask_material: bool
    # Speech clips per split and distinct synthetic speakers per split.
    train_clips: int
    val_clips: int
    test_clips: int
    speakers_per_split: tuple[int, int, int]
    block_scenes: int = 250  # scenes per work unit; answer balancing runs per block, so it fixes determinism

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(f for f in FAMILIES_ALL if self.ask_material or f != "query_material")

    def scene_counts(self) -> dict[str, int]:
        return {"train": self.train_scenes, "val": self.val_scenes, "test": self.test_scenes}

    def clip_counts(self) -> dict[str, int]:
        return {"train": self.train_clips, "val": self.val_clips, "test": self.test_clips}

    def radius_frac(self, size: str) -> float:
        return self.size_radius_frac[self.sizes.index(size)]

    def with_totals(self, scenes: int | None = None, clips: int | None = None,
                    image_size_px: int | None = None) -> "DataPreset":
        """The same preset with `scenes` / `clips` in total, split in the preset's proportions (each split >= 1)."""
        changes: dict = {}
        if scenes is not None:
            changes.update(zip(("train_scenes", "val_scenes", "test_scenes"),
                               _split_total(scenes, list(self.scene_counts().values()))))
        if clips is not None:
            changes.update(zip(("train_clips", "val_clips", "test_clips"),
                               _split_total(clips, list(self.clip_counts().values()))))
        if image_size_px is not None:
            changes["image_size_px"] = image_size_px
        return dataclasses.replace(self, **changes)

    def with_train_speech(self, clips: int | None = None, speakers: int | None = None) -> "DataPreset":
        """The same preset with `clips` training clips from `speakers` training speakers; val and test unchanged."""
        for name, n in (("training clips", clips), ("training speakers", speakers)):
            if n is not None and n < 1:
                raise ValueError(f"{name} must be >= 1, got {n}")
        if speakers is not None and speakers > 999:  # speaker ids 1000..1999 are the train subset's
            raise ValueError(f"at most 999 training speakers (LibriSpeech-style ids 1000..1999), got {speakers}")
        _, val, test = self.speakers_per_split
        return dataclasses.replace(self, train_clips=self.train_clips if clips is None else clips,
                                   speakers_per_split=(self.speakers_per_split[0] if speakers is None else speakers,
                                                       val, test))


def _split_total(total: int, weights: list[int]) -> list[int]:
    if total < 0:
        raise ValueError(f"a count must be >= 0, got {total}")
    if total == 0:
        return [0] * len(weights)
    if total < len(weights):
        raise ValueError(f"need at least {len(weights)} items to fill {len(weights)} splits, got {total}")
    rest = [max(1, round(total * w / sum(weights))) for w in weights[1:]]
    return [total - sum(rest)] + rest


DATA_PRESETS: dict[str, DataPreset] = {
    # Small enough to generate in a minute or two and to train a 32 px tokenizer and a small MLLM on two cores.
    "tiny": DataPreset(
        name="tiny",
        image_size_px=MODEL_PRESETS["tiny"].image_size_px,
        audio_rate_hz=MODEL_PRESETS["tiny"].audio_rate_hz,
        train_scenes=12000, val_scenes=1000, test_scenes=1000,
        questions_per_scene=5, captions_per_image=5,
        objects_min=1, objects_max=4,
        colors=("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"),
        shapes=("circle", "square", "triangle"),
        sizes=("small", "large"),
        materials=("rubber", "metal"),
        size_radius_frac=(0.12, 0.19),
        axis_margin_frac=0.06, min_center_gap=0.85,
        max_rotation_deg=15.0, supersample=4, shadows=True, ask_material=False,
        train_clips=1200, val_clips=150, test_clips=150, speakers_per_split=(12, 4, 4),
    ),
    # The letter's image size and audio rate, CLEVR's object counts and attribute set.
    "paper": DataPreset(
        name="paper",
        image_size_px=MODEL_PRESETS["paper"].image_size_px,
        audio_rate_hz=MODEL_PRESETS["paper"].audio_rate_hz,
        train_scenes=70000, val_scenes=15000, test_scenes=15000,
        questions_per_scene=10, captions_per_image=5,
        objects_min=3, objects_max=8,
        colors=("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"),
        shapes=("circle", "square", "triangle"),
        sizes=("small", "medium", "large"),
        materials=("rubber", "metal"),
        size_radius_frac=(0.055, 0.075, 0.1),
        axis_margin_frac=0.03, min_center_gap=0.85,
        max_rotation_deg=45.0, supersample=2, shadows=True, ask_material=True,
        train_clips=20000, val_clips=2000, test_clips=2000, speakers_per_split=(40, 8, 8),
    ),
}


def data_preset(name: str) -> DataPreset:
    if name not in DATA_PRESETS:
        raise ValueError(f"unknown data preset {name!r}; choose one of {sorted(DATA_PRESETS)}")
    return DATA_PRESETS[name]
