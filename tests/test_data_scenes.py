"""Scenes: CLEVR-shaped records, drawn deterministically, every object legible at the tiny preset's 32 px."""
from __future__ import annotations

import numpy as np
import pytest

from unitocom.config import load
from unitocom.data.captions import captions_for_scene
from unitocom.data.presets import DATA_PRESETS, data_preset
from unitocom.data.scenes import object_masks, render_scene, sample_scene
from unitocom.data.vocab import ANSWERS, COLOR_RGB, WORDS, words_of


def _scenes(preset_name: str, n: int):
    p = data_preset(preset_name)
    return p, [sample_scene(np.random.default_rng([7, i]), p, "train", i) for i in range(n)]


@pytest.mark.parametrize("name", sorted(DATA_PRESETS))
def test_preset_sizes_come_from_the_model_config(name):
    p, cfg = data_preset(name), load(name).preset
    assert (p.image_size_px, p.audio_rate_hz) == (cfg.image_size_px, cfg.audio_rate_hz)
    assert len(p.sizes) == len(p.size_radius_frac)
    assert set(p.colors + p.shapes + p.sizes + p.materials) <= set(ANSWERS)


def test_with_totals_keeps_the_proportions():
    p = data_preset("tiny").with_totals(scenes=60, clips=9, image_size_px=64)
    assert sum(p.scene_counts().values()) == 60 and min(p.scene_counts().values()) >= 1
    assert sum(p.clip_counts().values()) == 9 and min(p.clip_counts().values()) >= 1
    assert p.image_size_px == 64
    with pytest.raises(ValueError):
        data_preset("tiny").with_totals(scenes=2)


def test_scene_records_have_clevr_fields():
    p, scenes = _scenes("tiny", 200)
    for s in scenes:
        assert set(s) == {"image_index", "image_filename", "split", "objects", "relationships", "directions"}
        assert p.objects_min <= len(s["objects"]) <= p.objects_max
        for o in s["objects"]:
            assert set(o) == {"color", "size", "shape", "material", "3d_coords", "pixel_coords", "rotation"}
            x, y, z = o["3d_coords"]
            assert -3 <= x <= 3 and -3 <= y <= 3 and z > 0
            assert all(0 <= c < p.image_size_px + 1 for c in o["pixel_coords"][:2])
    counts = np.bincount([len(s["objects"]) for s in scenes])
    assert all(counts[p.objects_min:] > 0), "every object count occurs"


def test_pairs_keep_the_axis_margin_so_relations_are_unambiguous():
    p, scenes = _scenes("tiny", 300)
    margin = p.axis_margin_frac * 6.0
    for s in scenes:
        c = [o["3d_coords"] for o in s["objects"]]
        for i in range(len(c)):
            for j in range(i):
                assert abs(c[i][0] - c[j][0]) >= margin - 1e-9 and abs(c[i][1] - c[j][1]) >= margin - 1e-9


def test_render_is_deterministic_and_sized():
    p, scenes = _scenes("tiny", 5)
    for s in scenes:
        a = render_scene(s, 32, p.supersample, p.shadows)
        b = render_scene(s, 32, p.supersample, p.shadows)
        assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
        assert np.array_equal(a, b)
        assert render_scene(s, 64, 2, False).shape == (64, 64, 3)
    assert not np.array_equal(render_scene(scenes[0], 32), render_scene(scenes[1], 32))


def test_every_object_stays_mostly_visible_and_keeps_its_colour_at_32_px():
    # Legibility proxy: occlusion leaves most of each outline, and the median colour of an object's visible
    # pixels is still nearest to its own CLEVR colour (by chroma direction), shading and all.
    p, scenes = _scenes("tiny", 300)
    palette = {c: np.asarray(rgb, float) / np.linalg.norm(rgb) for c, rgb in COLOR_RGB.items() if c in p.colors}
    right = total = 0
    for s in scenes:
        img = render_scene(s, 32, p.supersample, p.shadows).astype(float)
        masks = object_masks(s, 32)
        for k, o in enumerate(s["objects"]):
            alone = object_masks({"objects": [o]}, 32)[0].sum()
            assert masks[k].sum() >= 0.6 * alone, "an object is mostly hidden"
            median = np.median(img[masks[k]], axis=0)
            median = median / (np.linalg.norm(median) + 1e-9)
            guess = min(palette, key=lambda c: np.linalg.norm(palette[c] - median))
            right += guess == o["color"]
            total += 1
    assert right / total >= 0.97


def test_captions_describe_every_object_in_vocabulary_words():
    p, scenes = _scenes("tiny", 100)
    words = set(WORDS)
    for s in scenes:
        caps = captions_for_scene(s, p, np.random.default_rng(0), p.captions_per_image)
        assert len(caps) == p.captions_per_image == len(set(caps))
        for cap in caps:
            assert set(words_of(cap)) <= words, cap
        for o in s["objects"]:
            phrase = f"{o['size']} {o['color']} {o['shape']}"
            assert all(phrase in cap.lower() for cap in caps), (phrase, caps)
