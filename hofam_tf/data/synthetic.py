"""Synthetic cross-scene footage with exact masks: textured objects moving over textured
backgrounds. Used by the demo (no dataset needed) and by tests that need known motion."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def texture(rng: np.random.Generator, h: int, w: int, cell: int, channels: int = 3) -> np.ndarray:
    """Smooth random texture, float32 [h,w,channels] in [0,1] (bicubic-upsampled noise)."""
    small = rng.random((h // cell + 3, w // cell + 3, channels)).astype(np.float32)
    big = cv2.resize(small, (w + 3 * cell, h + 3 * cell), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[:h, :w].reshape(h, w, channels), 0, 1)


def shift_image(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Sub-pixel translation with bicubic interpolation: out(x) = img(x - (dx, dy))."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def make_scene(seed: int, frames: int = 30, size: int = 256, objects: int = 2):
    """One scene: (list of uint8 RGB frames [size,size,3], list of uint8 masks 0/255)."""
    rng = np.random.default_rng(seed)
    bg = 0.25 + 0.6 * (0.6 * texture(rng, size, size, 16) + 0.4 * texture(rng, size, size, 4))
    bg *= rng.uniform(0.6, 1.2, 3)[None, None]
    objs = []
    for _ in range(objects):
        w, h = rng.integers(size // 10, size // 4, 2)
        tex = 0.2 + 0.8 * texture(rng, size, size, 3)
        tex *= rng.uniform(0.5, 1.3, 3)[None, None]
        pos = rng.uniform([0, 0], [size - w, size - h])
        vel = rng.uniform(1.0, 3.5, 2) * rng.choice([-1, 1], 2)
        objs.append({"w": int(w), "h": int(h), "tex": tex, "pos": pos, "vel": vel,
                     "ellipse": bool(rng.integers(0, 2))})
    images, masks = [], []
    for _ in range(frames):
        img = bg.copy()
        mask = np.zeros((size, size), np.float32)
        for o in objs:
            shape = np.zeros((size, size), np.float32)
            x, y = o["pos"]
            if o["ellipse"]:
                cv2.ellipse(shape, (int(x + o["w"] / 2), int(y + o["h"] / 2)), (o["w"] // 2, o["h"] // 2),
                            0, 0, 360, 1.0, -1)
            else:
                cv2.rectangle(shape, (int(x), int(y)), (int(x + o["w"]), int(y + o["h"])), 1.0, -1)
            tex = shift_image(o["tex"], x, y)
            img = img * (1 - shape[..., None]) + tex * shape[..., None]
            mask = np.maximum(mask, shape)
            o["pos"] = o["pos"] + o["vel"]
            for k, lim in ((0, size - o["w"]), (1, size - o["h"])):
                if not 0 <= o["pos"][k] <= lim:
                    o["vel"][k] *= -1
                    o["pos"][k] = np.clip(o["pos"][k], 0, lim)
        noise = rng.normal(0, 0.01, img.shape)
        images.append(np.clip((img + noise) * 255, 0, 255).astype(np.uint8))
        masks.append(np.where(mask > 0.5, 255, 0).astype(np.uint8))
    return images, masks


def write_scene(folder: str | Path, seed: int, frames: int = 30, size: int = 256, objects: int = 2) -> Path:
    """Writes a scene as a plain frames folder ``folder/frames`` + ``folder/masks``."""
    from hofam_tf.files import write_png

    folder = Path(folder)
    images, masks = make_scene(seed, frames, size, objects)
    for i, (img, m) in enumerate(zip(images, masks)):
        write_png(folder / "frames" / f"{i:06d}.png", img)
        write_png(folder / "masks" / f"{i:06d}.png", m)
    return folder
