"""Seeded training augmentation on whole batches (``AugmentConfig`` says what and how much).

``augment_batch`` takes the batch dict of ``data.parse_examples`` (frame and HOP as uint8 or
float bytes, mask and weight float [B,H,W,1]) and a stateless seed, and returns the same keys
with frame and HOP as float32 bytes in [0, 255]. Every random draw is a ``tf.random.stateless_*``
call on a seed split from the batch seed, so the same seed gives the same batch in any process.

The class-in-scale weight beta (``hofam_tf.model.losses.size_factor``) is computed in the loss from the
augmented mask: the foreground area N_fg is measured after the crop, and the instance count
``target_num`` (8-connected components, counted when the TFRecord was written) is kept. When the
crop keeps every object, mean instance area = N_fg / target_num is exactly the zoomed objects'
mean area, so beta is exact (tested against connected components of the augmented mask). When a
crop cuts an object off entirely, target_num over-counts and beta comes out larger than it should
(at most the cap): small-object weighting errs on the side of the small objects. A crop that
leaves no foreground gets the cap, as in the loss for any empty mask.

Zooming in by 1/s and the HOP gain both multiply the motion an object shows. With
``AugmentConfig.hop_scaling`` "motion" (default) the HOP is decoded to displacement through the
records' encoding (``FlowConfig.encoding``, ``hofam_tf.data.flow.encode_magnitude``), multiplied, and
encoded again (``scale_motion``); "grey" multiplies the grey levels, as earlier versions did.
Training passes the run's flow settings, which come from the records' dataset.json; records that
record none (the authors' demo composites, their own HOP) are scaled as if made with them.
The flow-noise floor (``motion_noise``, ``AugmentConfig.hop_noise``) is added last, to the motion
decoded the same way, on a seed of its own. Before it come the HOP's spread (``spread_motion``, on
by default), pasted objects (``paste_objects``), still examples (``still_examples``), frame swap
(``swap_frames``) and the channel drop (``drop_channel``, the last four off by default), each on a
seed of its own too, so turning one on or off leaves every other draw as it was.

With ``FlowConfig.background_stride`` channel B holds a background difference, not motion: it gets
the crop and flip, and the HOP gain as a contrast change (its grey levels times the gain, clipped),
but no motion scaling, spread, channel drop or noise floor (``motion_channels``).

The background reference (``FlowConfig.reference_stride``, key ``background``) gets the frame's
crop and flip, and the frame's photometric draws (the same seed: a light or camera change alters
frame and background alike, and a dropped frame's background is the same noise, which says
"nothing changed"); frame swap takes it along with the frame.
"""
from __future__ import annotations

import tensorflow as tf

from hofam_tf.config import BACKGROUND_KEY, FRAME_KEY, HOP_KEY, AugmentConfig, FlowConfig
from hofam_tf.data.flow import log_span

def _uniform(seed, batch, low=0.0, high=1.0):
    return tf.random.stateless_uniform([batch], seed, minval=low, maxval=high)


def _per_image(values):
    return values[:, None, None, None]


def _chosen(seed, batch, probability):
    """Per example, True with ``probability``: bool [B,1,1,1], to pick with ``tf.where``."""
    return _per_image(_uniform(seed, batch) < probability)


def _next_in_batch(x):
    """Each example's neighbour in the batch: the next one, the last takes the first's."""
    return tf.roll(x, shift=-1, axis=0)


def _blur3(x):
    """3x3 binomial blur of float [B,H,W,C], edges replicated."""
    k = tf.constant([1.0, 2.0, 1.0]) / 4.0
    kernel = tf.tile((k[:, None] * k[None, :])[:, :, None, None], [1, 1, tf.shape(x)[-1], 1])
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")


def crop_boxes(seed, batch, min_crop: float, max_crop: float = 1.0):
    """Random square crops as normalised [y0, x0, y1, x1] boxes [B,4] and their side s [B], s
    uniform in [min_crop, max_crop]. A box inside the tile when s <= 1; one holding the whole tile
    when s > 1 (zoom out)."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    side = _uniform(seeds[0], batch, min_crop, max_crop)
    y0 = _uniform(seeds[1], batch) * (1.0 - side)
    x0 = _uniform(seeds[2], batch) * (1.0 - side)
    return tf.stack([y0, x0, y0 + side, x0 + side], axis=1), side


def _gains(flow: FlowConfig):
    """The "linear" encoding's per-channel multipliers (R, G, B) as a broadcastable tensor."""
    return tf.constant([float(g) for g in flow.gains])


def _decode(hop, flow: FlowConfig):
    """HOP grey levels (R, G, B) -> motion in units of ``flow.scale`` * tile pixels, through the
    records' encoding ("linear": grey / channel gain; "log": expm1(grey * L / 255))."""
    if flow.encoding != "log":
        return hop / _gains(flow)
    return tf.math.expm1(hop * (log_span(flow.scale) / 255.0))


def _encode(motion, flow: FlowConfig):
    """Inverse of ``_decode``, clipped to [0, 255] (the encoder's rounding is not repeated)."""
    if flow.encoding != "log":
        return tf.clip_by_value(motion * _gains(flow), 0.0, 255.0)
    return tf.clip_by_value(255.0 * tf.math.log1p(motion) / log_span(flow.scale), 0.0, 255.0)


def motion_channels(new, old, flow: FlowConfig):
    """``new`` HOP with channel B taken from ``old`` when B is the background difference
    (``FlowConfig.background_stride``), so motion-only changes leave it alone; else ``new``."""
    if not flow.background_stride:
        return new
    return tf.concat([new[..., :2], tf.cast(old[..., 2:], new.dtype)], axis=-1)


def scale_motion(hop, factor, cfg: AugmentConfig, flow: FlowConfig):
    """HOP grey levels (float [B,H,W,3] in [0, 255]) of motion ``factor`` (float [B,1,1,1], or
    [B,1,1,3] per channel) times larger, clipped to 255. "linear" HOPs (grey = gain *
    round(scale * |F|)) and ``hop_scaling="grey"`` multiply the grey levels. A "log" HOP with
    ``hop_scaling="motion"``: grey v encodes scale * |F| = expm1(v * L / 255), L =
    log1p(scale * 64), so the result is 255 * log1p(factor * expm1(v * L / 255)) / L (the
    rounding of the encoder is not repeated)."""
    if cfg.hop_scaling == "grey" or flow.encoding != "log":
        return tf.minimum(hop * factor, 255.0)
    return _encode(factor * _decode(hop, flow), flow)


def motion_noise(hop, seed, cfg: AugmentConfig, flow: FlowConfig = FlowConfig()):
    """Adds a flow-noise floor to the HOP (float [B,H,W,3] in [0, 255]): per image and channel a
    smooth random field n >= 0 of mean amplitude a (tile pixels), a drawn uniformly in
    [0, cfg.hop_noise]; the field is |N(0,1)| on a ``cfg.hop_noise_grid``-square grid, resized
    bilinearly to the tile and divided by its own mean. It is added to the motion m in
    quadrature, sqrt(m^2 + n^2), as a displacement of random direction would be on average:
    a still background shows about a pixels of motion, a fast object keeps its own. Labels are
    unchanged: the model must learn that a weak, blotchy motion floor (camera shake, compression,
    flicker) is background."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    batch, size = tf.shape(hop)[0], tf.shape(hop)[1:3]
    grid = cfg.hop_noise_grid
    coarse = tf.abs(tf.random.stateless_normal([batch, grid, grid, 3], seeds[0]))
    field = tf.image.resize(coarse, size, method="bilinear")
    field = field / tf.maximum(tf.reduce_mean(field, axis=[1, 2], keepdims=True), 1e-6)
    noise = field * _per_image(_uniform(seeds[1], batch, 0.0, cfg.hop_noise)) * flow.scale
    motion = _decode(tf.cast(hop, tf.float32), flow)
    return _encode(tf.sqrt(tf.square(motion) + tf.square(noise)), flow)


def still_examples(ex: dict, seed, cfg: AugmentConfig) -> dict:
    """With probability ``cfg.still`` per example, takes the motion away: the HOP becomes 0 (no
    motion in any encoding) and the mask all background; frame and weight are kept. A frame's
    objects then have to move to count, so appearance alone (lane markings, furniture) is not
    learnt as foreground."""
    batch = tf.shape(ex[HOP_KEY])[0]
    still = _chosen(seed, batch, cfg.still)
    out = dict(ex)
    out[HOP_KEY] = tf.where(still, tf.zeros_like(ex[HOP_KEY]), ex[HOP_KEY])
    out["mask"] = tf.where(still, tf.zeros_like(ex["mask"]), ex["mask"])
    return out


def spread_motion(hop, seed, cfg: AugmentConfig):
    """Grey dilation of the HOP (float [B,H,W,3]) by a (2r+1)-square, r an integer drawn per
    example uniformly in [0, cfg.hop_spread]: r steps of a 3x3 max filter, each example keeping
    the result of its own r (edges are not extended)."""
    batch = tf.shape(hop)[0]
    radius = tf.random.stateless_uniform([batch], seed, 0, cfg.hop_spread + 1, dtype=tf.int32)
    out = spread = hop
    for step in range(1, cfg.hop_spread + 1):
        spread = tf.nn.max_pool2d(spread, 3, 1, "SAME")
        out = tf.where(_per_image(radius >= step), spread, out)
    return out


def drop_channel(hop, seed, cfg: AugmentConfig, flow: FlowConfig = FlowConfig()):
    """With probability ``cfg.channel_drop`` per example, one HOP channel drawn uniformly keeps a
    fraction u of its motion, u uniform in [0, 1) (``scale_motion``); labels are unchanged. On
    real footage one interval's flow can fail where the others hold (a fast object leaves DIS's
    range at the longest interval, the reverse check rejects a slow, plain one there), so the
    model must not need every channel to agree."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    batch = tf.shape(hop)[0]
    chosen = _chosen(seeds[0], batch, cfg.channel_drop)
    channel = tf.random.stateless_uniform([batch], seeds[1], 0, 3, dtype=tf.int32)
    keep = _per_image(_uniform(seeds[2], batch))
    factor = tf.where(chosen & (tf.one_hot(channel, 3)[:, None, None, :] > 0), keep, 1.0)
    return scale_motion(hop, factor, cfg, flow)


def swap_frames(ex: dict, seed, cfg: AugmentConfig) -> dict:
    """With probability ``cfg.frame_swap`` per example, its frame becomes the next example's in the
    batch (the last takes the first's); HOP, mask and weight are kept. A batch of one is left
    as it is."""
    batch = tf.shape(ex[FRAME_KEY])[0]
    swap = _chosen(seed, batch, cfg.frame_swap)
    out = dict(ex)
    for key in (FRAME_KEY, BACKGROUND_KEY):  # a frame goes with its own scene's background
        if key in ex:
            out[key] = tf.where(swap, _next_in_batch(ex[key]), ex[key])
    return out


def paste_objects(ex: dict, seed, cfg: AugmentConfig) -> dict:
    """With probability ``cfg.paste`` per example, the next example's foreground in the batch (the
    last takes the first's) is pasted into it with its frame pixels, HOP and labels: a region R,
    the next example's mask dilated by ``cfg.paste_margin`` tile pixels (so the flow's halo around
    the object comes along), replaces the example's own pixels there. The frame blends over a
    soft edge (R blurred by two 3x3 binomial passes) so that the paste leaves no hard seam in it;
    HOP, mask and weight take R's values outright (the pasted object's labels are exact, and R's
    unknown or outside-ROI pixels keep weight 0). The background reference is not pasted into:
    the pasted object is not part of this scene's background. ``target_num`` becomes the sum of
    both examples' counts (an own object hidden entirely under the paste is still counted, which
    errs on the side of small objects, as a crop does). A batch of one is left as it is.

    Objects then move over backgrounds they were never filmed on, so the model cannot tie the
    foreground to the looks of its training scenes."""
    batch = tf.shape(ex[FRAME_KEY])[0]
    paste = _chosen(seed, batch, cfg.paste) & (batch > 1)  # one example would count its objects twice
    other = _next_in_batch
    mask = tf.cast(ex["mask"], tf.float32)
    region = other(mask)
    if cfg.paste_margin > 0:
        region = tf.nn.max_pool2d(region, 2 * cfg.paste_margin + 1, 1, "SAME")
    region = tf.where(paste, region, 0.0)
    soft = _blur3(_blur3(region))
    out = dict(ex)
    out[FRAME_KEY] = tf.cast(ex[FRAME_KEY], tf.float32) * (1.0 - soft) + \
        tf.cast(other(ex[FRAME_KEY]), tf.float32) * soft
    hard = region > 0.5
    for key in (HOP_KEY, "mask", "weight"):
        x = tf.cast(ex[key], tf.float32)
        out[key] = tf.where(hard, other(x), x)
    if "target_num" in ex:
        own = tf.maximum(ex["target_num"], 0)
        out["target_num"] = tf.where(paste[:, 0, 0, 0], own + tf.maximum(other(ex["target_num"]), 0),
                                     ex["target_num"])
    return out


def geometry(ex: dict, seed, cfg: AugmentConfig, flow: FlowConfig = FlowConfig()) -> dict:
    """Same random crop and flip for frame, HOP, mask and weight; the HOP's motion scaled by
    1/side (``scale_motion``). Outside the tile (zoom out) everything is 0: a black frame, no
    motion, and weight 0, so the border is left out of the loss."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    frame = tf.cast(ex[FRAME_KEY], tf.float32)
    batch, size = tf.shape(frame)[0], tf.shape(frame)[1:3]
    boxes, side = crop_boxes(seeds[0], batch, cfg.min_crop, cfg.max_crop)
    index = tf.range(batch)
    out = dict(ex)
    keys = [k for k in (FRAME_KEY, HOP_KEY, BACKGROUND_KEY, "mask", "weight") if k in ex]
    for key in keys:
        method = "nearest" if key in ("mask", "weight") else "bilinear"
        out[key] = tf.image.crop_and_resize(tf.cast(ex[key], tf.float32), boxes, index, size, method=method)
    out[HOP_KEY] = motion_channels(scale_motion(out[HOP_KEY], 1.0 / _per_image(side), cfg, flow), out[HOP_KEY], flow)
    flip = _chosen(seeds[1], batch, cfg.flip)
    for key in keys:
        out[key] = tf.where(flip, tf.reverse(out[key], axis=[2]), out[key])
    return out


def photometric(frame, seed, cfg: AugmentConfig):
    """Brightness, contrast, colour, greyscale, noise, blur and frame drop on float frames in
    [0, 255]."""
    s = tf.random.experimental.stateless_split(seed, 10)
    batch = tf.shape(frame)[0]
    x = frame + _per_image(_uniform(s[0], batch, -cfg.brightness, cfg.brightness) * 255.0)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * _per_image(_uniform(s[1], batch, 1 - cfg.contrast, 1 + cfg.contrast)) + mean
    gains = tf.random.stateless_uniform([batch, 1, 1, 3], s[2], 1 - cfg.colour, 1 + cfg.colour)
    x = x * gains
    grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x))
    x = tf.where(_chosen(s[3], batch, cfg.grey), grey, x)
    std = _per_image(_uniform(s[4], batch, 0.0, cfg.noise) * 255.0)
    x = x + tf.random.stateless_normal(tf.shape(x), s[5]) * std
    x = tf.where(_chosen(s[6], batch, cfg.blur), _blur3(x), x)
    if cfg.frame_drop:  # random noise, not a flat frame: the layer norm of a constant input has
        # near-infinite gradients (epsilon 1e-12), which made training diverge
        noise = tf.random.stateless_uniform(tf.shape(x), s[7], 0.0, 255.0)
        x = tf.where(_chosen(s[9], batch, cfg.frame_drop), noise, x)
    return tf.clip_by_value(x, 0.0, 255.0)


def hop_gain(hop, seed, cfg: AugmentConfig, flow: FlowConfig = FlowConfig()):
    """The HOP's motion times a log-uniform gain in [1/hop_gain, hop_gain] (``scale_motion``)."""
    batch = tf.shape(hop)[0]
    log_g = tf.math.log(cfg.hop_gain)
    gain = _per_image(tf.exp(_uniform(seed, batch, -log_g, log_g)))
    hop = tf.cast(hop, tf.float32)
    return motion_channels(scale_motion(hop, gain, cfg, flow), tf.minimum(hop * gain, 255.0), flow)


def augment_batch(ex: dict, seed, cfg: AugmentConfig, flow: FlowConfig = FlowConfig()) -> dict:
    """Augments one parsed batch (see module docstring). ``seed``: int [2] stateless seed;
    ``flow``: the settings the batch's HOP images were made with (their encoding)."""
    seed = tf.cast(seed, tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    out = geometry(ex, seeds[0], cfg, flow)
    out[FRAME_KEY] = photometric(out[FRAME_KEY], seeds[1], cfg)
    if BACKGROUND_KEY in out:  # the same draws: light and camera change frame and background alike
        out[BACKGROUND_KEY] = photometric(out[BACKGROUND_KEY], seeds[1], cfg)
    out[HOP_KEY] = hop_gain(out[HOP_KEY], seeds[2], cfg, flow)

    def own_seed(n):  # the optional steps' draws, so the others are those of runs without them
        return tf.random.experimental.stateless_fold_in(seed, n)

    if cfg.paste > 0:
        out = paste_objects(out, own_seed(8), cfg)
    if cfg.still > 0:
        out = still_examples(out, own_seed(4), cfg)
    if cfg.hop_spread > 0:
        out[HOP_KEY] = motion_channels(spread_motion(out[HOP_KEY], own_seed(6), cfg), out[HOP_KEY], flow)
    if cfg.frame_swap > 0:
        out = swap_frames(out, own_seed(5), cfg)
    if cfg.channel_drop > 0:
        out[HOP_KEY] = motion_channels(drop_channel(out[HOP_KEY], own_seed(7), cfg, flow), out[HOP_KEY], flow)
    if cfg.hop_noise > 0:
        out[HOP_KEY] = motion_channels(motion_noise(out[HOP_KEY], own_seed(3), cfg, flow), out[HOP_KEY], flow)
    return out
