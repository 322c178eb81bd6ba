"""Hierarchical optical flow of a video or frame folder, as images people can look at (the
library side of ``data_prep/flows.py``): ``OUT/hop/<frame>.png``, ``OUT/color_tau<k>/<frame>.png``
(Middlebury colours), ``OUT/reference/<frame>.png`` (the background reference, when
``FlowConfig.reference_stride`` is set) and, optionally, ``OUT/flo/<frame>_tau<k>.flo`` in the layout
``estimator="flo"`` reads."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from hofam_tf.config import FlowConfig
from hofam_tf.errors import HOFAMInputError
from hofam_tf.files import write_png
from hofam_tf.data.flow import (background_difference, encode_hop, flow_to_color, flows_from_grays, iter_gray_windows,
                                pixel_median, write_flo)
from hofam_tf.data.sources import discover


def write_flows(input_path, output_dir, cfg: FlowConfig, save_flo: bool = False, progress: bool = True) -> int:
    """Writes HOP images and flow colour images of the first sequence found at ``input_path``."""
    sequences = discover(input_path)
    if len(sequences) != 1:
        raise HOFAMInputError(f"{input_path}: expected one video or frame folder, found {len(sequences)} sequences")
    seq = sequences[0]
    out = Path(output_dir)
    count = 0
    frames = seq.iter_frames(lookback=cfg.history)
    for fr, _, grays, tiles in tqdm(iter_gray_windows(frames, cfg), desc=seq.name, unit="frame", total=seq.count_scored(),
                             disable=not progress):
        flows = flows_from_grays(grays, fr.index, cfg)
        for tau, flow in flows.items():
            write_png(out / f"color_tau{tau}" / f"{fr.frame_id}.png", flow_to_color(flow))
            if save_flo:
                write_flo(out / "flo" / f"{fr.frame_id}_tau{tau}.flo", flow)
        background = background_difference(grays, fr.index, cfg) if cfg.background_stride else None
        write_png(out / "hop" / f"{fr.frame_id}.png", encode_hop(flows, cfg, background))
        if tiles is not None:  # the background reference (FlowConfig.reference_stride)
            write_png(out / "reference" / f"{fr.frame_id}.png", pixel_median(tiles))
        count += 1
    return count
