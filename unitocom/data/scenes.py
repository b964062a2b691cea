"""CLEVR-style scenes in 2D: sample a scene as CLEVR scene JSON, and draw it from that JSON alone.

Geometry follows CLEVR's conventions so that the same question logic works on real and synthetic scenes: objects
stand on a ground plane with `3d_coords = [x, y, z]`, x to the right, y away from the camera, z up, the plane
spanning [-3, 3] in x and y. The camera looks straight down at a tilt, so "behind" (larger y) is higher in the
image and is drawn first; nearer objects may partly cover farther ones. `z` is the object's radius, which is all
the drawer needs to know about its size, so a scene file is self-contained.
"""
from __future__ import annotations

import math

import numpy as np

from unitocom.data.layouts import clevr_image_filename
from unitocom.data.presets import DataPreset
from unitocom.data.vocab import COLOR_RGB, RELATIONS

WORLD = 6.0  # side of the visible ground plane in CLEVR units
DIRECTIONS = {"left": [-1.0, 0.0, 0.0], "right": [1.0, 0.0, 0.0], "front": [0.0, -1.0, 0.0],
              "behind": [0.0, 1.0, 0.0], "above": [0.0, 0.0, 1.0], "below": [0.0, 0.0, -1.0]}
# Half-extent of each outline in units of the object radius: squares and triangles get about the circle's area.
SQUARE_HALF = 0.886
TRIANGLE_CIRCUMRADIUS = 1.35
_EXTENT = {"circle": 1.0, "square": SQUARE_HALF * math.sqrt(2.0), "triangle": TRIANGLE_CIRCUMRADIUS}

_LIGHT = np.array([-0.55, -0.65, 0.55]) / np.linalg.norm([-0.55, -0.65, 0.55])  # from upper left, x right, y down
_HALF = (_LIGHT + np.array([0.0, 0.0, 1.0])) / np.linalg.norm(_LIGHT + np.array([0.0, 0.0, 1.0]))


def to_image_frac(coords: list[float]) -> tuple[float, float, float]:
    """3d_coords -> (u, v, radius) as fractions of the image side, u to the right and v down."""
    x, y, z = coords
    return x / WORLD + 0.5, 0.5 - y / WORLD, z / WORLD


def _world(u: float, v: float, r: float) -> list[float]:
    return [round((u - 0.5) * WORLD, 4), round((0.5 - v) * WORLD, 4), round(r * WORLD, 4)]


def relationships(objects: list[dict]) -> dict[str, list[list[int]]]:
    """CLEVR's relationships: `rel[name][i]` lists the objects j that are `name` of object i."""
    xy = [(o["3d_coords"][0], o["3d_coords"][1]) for o in objects]
    tests = {"left": lambda a, b: a[0] < b[0], "right": lambda a, b: a[0] > b[0],
             "front": lambda a, b: a[1] < b[1], "behind": lambda a, b: a[1] > b[1]}
    return {rel: [[j for j in range(len(xy)) if j != i and tests[rel](xy[j], xy[i])] for i in range(len(xy))]
            for rel in RELATIONS}


def fits(u: float, v: float, r: float, placed: list[tuple[float, float, float]], preset: DataPreset) -> bool:
    """Whether an object of radius r centred at (u, v) (fractions of the picture) keeps the preset's spacing from
    those `placed` (u, v, r)."""
    for (u2, v2, r2) in placed:
        if abs(u - u2) < preset.axis_margin_frac or abs(v - v2) < preset.axis_margin_frac:
            return False
        if math.hypot(u - u2, v - v2) < preset.min_center_gap * (r + r2):
            return False
    return True


def sample_scene(rng: np.random.Generator, preset: DataPreset, split: str, image_index: int) -> dict:
    """One random scene as a CLEVR scene record (no image is drawn here)."""
    while True:  # a crowded draw can fail to place everything; start over with a fresh count
        n = int(rng.integers(preset.objects_min, preset.objects_max + 1))
        objects: list[dict] = []
        placed: list[tuple[float, float, float]] = []
        for _ in range(n):
            size = preset.sizes[int(rng.integers(len(preset.sizes)))]
            color = preset.colors[int(rng.integers(len(preset.colors)))]
            shape = preset.shapes[int(rng.integers(len(preset.shapes)))]
            material = preset.materials[int(rng.integers(len(preset.materials)))]
            rotation = round(float(rng.uniform(-preset.max_rotation_deg, preset.max_rotation_deg)), 2)
            r = preset.radius_frac(size)
            edge = r * _EXTENT[shape] + 0.01  # the whole outline stays inside the frame
            for _attempt in range(60):
                # Round first, so that every check below sees exactly what the JSON will hold.
                u, v, rr = to_image_frac(_world(*rng.uniform(edge, 1.0 - edge, size=2), r))
                if fits(u, v, rr, placed, preset):
                    break
            else:
                break
            placed.append((u, v, rr))
            objects.append({"color": color, "size": size, "shape": shape, "material": material,
                            "3d_coords": _world(u, v, r), "rotation": rotation})
        if len(objects) == n:
            break
    px = preset.image_size_px
    for o in objects:
        u, v, _ = to_image_frac(o["3d_coords"])
        depth = round(o["3d_coords"][1] + 10.0, 4)  # camera 10 units in front of the plane's centre
        o["pixel_coords"] = [int(round(u * px)), int(round(v * px)), depth]
    return {"image_index": image_index, "image_filename": clevr_image_filename(split, image_index), "split": split,
            "objects": objects, "relationships": relationships(objects), "directions": DIRECTIONS}


def _floor(size_px: int, ss: int) -> np.ndarray:
    # Lighter towards the camera, like CLEVR's lit floor, so the depth order is also a brightness cue.
    t = (np.arange(size_px * ss, dtype=np.float32) + 0.5) / (size_px * ss)
    shade = 0.56 + 0.12 * t
    return np.repeat(np.repeat(shade[:, None, None], size_px * ss, axis=1), 3, axis=2)


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float, rotation_deg: float) -> np.ndarray:
    """Distance inside the outline (positive inside), in the same units as dx, dy."""
    if shape == "circle":
        return radius - np.hypot(dx, dy)
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    u, w = dx * c + dy * s, -dx * s + dy * c
    if shape == "square":
        return SQUARE_HALF * radius - np.maximum(np.abs(u), np.abs(w))
    if shape == "triangle":  # pointing up (y down): outward edge normals at 90, 210 and 330 degrees
        rt = TRIANGLE_CIRCUMRADIUS * radius
        d = [rt / 2 - (u * nx + w * ny) for nx, ny in ((0.0, 1.0), (-0.8660254, -0.5), (0.8660254, -0.5))]
        return np.minimum(np.minimum(d[0], d[1]), d[2])
    raise ValueError(f"unknown shape {shape!r}")


def _shade(obj: dict, dx: np.ndarray, dy: np.ndarray, radius: float, inside: np.ndarray, px_sub: float) -> np.ndarray:
    """RGB in [0, 1] of the object's surface: a lit sphere for circles, a softly domed face for polygons."""
    if obj["shape"] == "circle":
        nx, ny = dx / radius, dy / radius
        nz = np.sqrt(np.clip(1.0 - nx * nx - ny * ny, 0.0, 1.0))
    else:
        nx, ny, nz = 0.45 * dx / radius, 0.45 * dy / radius, np.ones_like(dx)
        norm = np.sqrt(nx * nx + ny * ny + 1.0)
        nx, ny, nz = nx / norm, ny / norm, nz / norm
    lambert = np.clip(nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2], 0.0, 1.0)
    base = np.array(COLOR_RGB[obj["color"]], dtype=np.float32) / 255.0
    if obj["material"] == "metal":
        # Darker body with a sharp white highlight: the cue CLEVR's metal gives.
        spec = np.clip(nx * _HALF[0] + ny * _HALF[1] + nz * _HALF[2], 0.0, 1.0) ** 24
        body = base * (0.3 + 0.75 * lambert)[..., None]
        rgb = body * (1.0 - 0.9 * spec[..., None]) + 0.9 * spec[..., None]
    else:
        rgb = base * (0.5 + 0.55 * lambert)[..., None]
    # A dark rim half an output pixel wide keeps touching objects of one colour apart at 32 px.
    rim = inside < 0.5 * px_sub
    rgb = np.where(rim[..., None], rgb * 0.6, rgb)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def render_scene(scene: dict, size_px: int, supersample: int = 4, shadows: bool = True) -> np.ndarray:
    """Draw a scene record as uint8 RGB [size_px, size_px, 3], anti-aliased by drawing `supersample` times larger."""
    ss = int(supersample)
    side = size_px * ss
    canvas = _floor(size_px, ss)
    centres = (np.arange(side, dtype=np.float32) + 0.5)
    far_first = sorted(scene["objects"], key=lambda o: -o["3d_coords"][1])
    for obj in far_first:
        u, v, r = to_image_frac(obj["3d_coords"])
        cx, cy, radius = u * side, v * side, r * side
        if shadows:
            sx, sy = cx + 0.35 * radius, cy + 0.45 * radius
            x0, x1 = max(0, int(sx - 1.5 * radius)), min(side, int(sx + 1.5 * radius) + 1)
            y0, y1 = max(0, int(sy - radius)), min(side, int(sy + radius) + 1)
            ex = (centres[None, x0:x1] - sx) / (1.15 * radius)
            ey = (centres[y0:y1, None] - sy) / (0.7 * radius)
            alpha = np.clip((1.0 - np.hypot(ex, ey)) / 0.35, 0.0, 1.0)
            canvas[y0:y1, x0:x1] *= (1.0 - 0.3 * alpha)[..., None]
        reach = _EXTENT[obj["shape"]] * radius + 1
        x0, x1 = max(0, int(cx - reach)), min(side, int(cx + reach) + 1)
        y0, y1 = max(0, int(cy - reach)), min(side, int(cy + reach) + 1)
        dx = np.broadcast_to(centres[None, x0:x1] - cx, (y1 - y0, x1 - x0))
        dy = np.broadcast_to(centres[y0:y1, None] - cy, (y1 - y0, x1 - x0))
        inside = _signed_distance(obj["shape"], dx, dy, radius, obj["rotation"])
        mask = inside >= 0
        rgb = _shade(obj, dx, dy, radius, inside, float(ss))
        patch = canvas[y0:y1, x0:x1]
        patch[mask] = rgb[mask]
    small = canvas.reshape(size_px, ss, size_px, ss, 3).mean(axis=(1, 3))
    return np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8)


def object_masks(scene: dict, size_px: int) -> np.ndarray:
    """Visible pixels of each object, bool [n_objects, size_px, size_px], after occlusion (for legibility checks)."""
    side = size_px
    centres = np.arange(side, dtype=np.float32) + 0.5
    owner = np.full((side, side), -1, dtype=np.int64)
    order = sorted(range(len(scene["objects"])), key=lambda i: -scene["objects"][i]["3d_coords"][1])
    for i in order:
        obj = scene["objects"][i]
        u, v, r = to_image_frac(obj["3d_coords"])
        dx = centres[None, :] - u * side + np.zeros((side, 1), np.float32)
        dy = centres[:, None] - v * side + np.zeros((1, side), np.float32)
        owner[_signed_distance(obj["shape"], dx, dy, r * side, obj["rotation"]) >= 0] = i
    return np.stack([owner == i for i in range(len(scene["objects"]))]) if scene["objects"] else \
        np.zeros((0, side, side), bool)
