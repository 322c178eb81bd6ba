"""Makes docs/figure.png: frame | HOP | mask | overlay of one frame of a real clip, segmented by
the shipped model with predict's defaults (the command and its output, as a user runs them).

    python docs/make_figure.py [--input PATH] [--frame 40] [--out docs/figure.png]

``--input`` is anything predict takes (default: CDnet 2014's ``baseline/pedestrians`` in
``../shared/data``). Each tile is 256 pixels high; the mask and the overlay are predict's
native-size outputs, resized.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "cdnet2014" / "baseline" / "pedestrians"


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=str(CLIP))
    ap.add_argument("--frame", type=int, default=40, help="how many frames predict segments; the last is shown")
    ap.add_argument("--out", default=str(ROOT / "docs" / "figure.png"))
    args = ap.parse_args(argv)

    import cv2
    import numpy as np

    from hofam_tf.data.sources import discover
    from hofam_tf.files import read_image, write_png
    from hofam_tf.tasks.viz import overlay

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "main.py"), "--phase=predict", f"--input={args.input}",
               f"--output_dir={tmp}", f"--max_frames={args.frame}", "--panels", "--nooverlay_video"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "predict failed")
        seq = next(p for p in Path(tmp).iterdir() if p.is_dir())
        name = sorted((seq / "masks").iterdir())[-1].name  # the last frame written
        panel = read_image(seq / "panels" / name, "RGB")  # [frame | GT | HOP | prediction] at 256
        mask = read_image(seq / "masks" / name, "L")
        rgb = next(fr.rgb for fr in discover(args.input)[0].iter_frames() if fr.frame_id == Path(name).stem)
        h = 256
        w = round(rgb.shape[1] * h / rgb.shape[0])
        frame = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        hop = cv2.resize(panel[:, 512:768], (w, h), interpolation=cv2.INTER_LINEAR)
        fg = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST) > 127
        tiles = [frame, hop, np.repeat(np.where(fg, 255, 0).astype(np.uint8)[..., None], 3, -1),
                 cv2.resize(overlay(rgb, mask > 127), (w, h), interpolation=cv2.INTER_AREA)]
        gap = np.full((h, 4, 3), 255, np.uint8)
        figure = np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1)
    out = Path(args.out)
    write_png(out, figure)
    print(f"wrote {out} ({figure.shape[1]}x{figure.shape[0]}, frame {Path(name).stem} of {args.input})")
    return out


if __name__ == "__main__":
    main()
