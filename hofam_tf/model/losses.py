r"""The class-in-scale (cis) focal loss mixed with L1 (reference §5).

For logits z, probabilities p = sigmoid(z), ground truth y in {0,1} and per-pixel weight w
(0 on ignored pixels, see ``LossConfig.ignore_labels``), summed over every pixel of the batch:

    L    = l1_weight * L1 + focal_weight * FL                       (0.2 and 0.8, model.py:L301-313)
    L1   = sum(w * |y - p|) / sum(w)
    FL   = sum(w * a_t * (1 - p_t)^gamma * CE(y, z)) / sum(w)
    p_t  = p if y = 1 else 1 - p
    a_t  = alpha * beta_b if y = 1 else 1 - alpha                   (alpha = 0.75, gamma = 0)

Mode "cis" (default, the paper's intent): beta_b is a per-image size factor from the instance
sizes of image b's ground truth,

    beta_b = min(beta_cap, H*W / a_b) / beta_divisor,   a_b = N_fg(b) / max(n_b, 1)

with N_fg(b) the foreground pixel count, n_b the number of 8-connected foreground components
(the TFRecord's ``target_num``, computed when the records are written), beta_cap = 50 and
beta_divisor = 4 (the constants of the original's dead ``get_area``, ops.py:L82-84, applied to
the mean instance area as in ``get_area1``). A 64x64 object in a 256x256 image gets beta 4, a
128x128 one beta 1, objects of 1311 pixels or fewer the cap 12.5. beta is treated as a constant
(no gradient). CE is computed from logits (numerically stable).

With ``ring_px`` = r > 0 (cis mode; default 0, the original's loss) the background pixels within a
(2r+1)-square of a foreground pixel of image b weigh a_t = alpha * beta_b, as its foreground does:
optical flow smears an object's motion onto the background around it, and the foreground weight
alone (up to 37 times the background's) makes that halo cheap to predict.

With ``f_weight`` > 0 (default 0: the original's loss) a soft F-measure term is added:

    L   += f_weight * (1 - SF),   SF = (2 sum(w p y) + 1) / (sum(w p) + sum(w y) + 1)

summed over every pixel of the batch, as CDnet sums a scene's pixels (under ``tf.distribute`` the
three sums are all-reduced over the replicas when the term is on, so F is that of the global batch
and training matches one process with the same global batch; with the term off ``soft_f`` is only
logged, per replica, and costs no collective per step). F is what the benchmark
scores, and the class-in-scale weights push foreground probabilities up by a factor that changes
with object size. On the leave-scenes-out benchmark (README, "Cross-scene quality") weight 1 helped
the threshold of a single run on average but ranked pixels worse, so it is off by default.

Mode "tf1" reproduces what the TF1 code computes (the cis branch is unreachable there, bug B2):
beta = 1, gamma = 0 and CE is Keras 2's ``binary_crossentropy`` on probabilities clipped to
[1e-7, 1 - 1e-7], i.e. CE = -(y log p_c + (1 - y) log(1 - p_c)).
"""
from __future__ import annotations

import tensorflow as tf

from hofam_tf.config import LossConfig

TF1_EPSILON = 1e-7


def size_factor(mask: tf.Tensor, target_num: tf.Tensor, cfg: LossConfig) -> tf.Tensor:
    """beta per image: mask float [B,H,W,1] in {0,1}, target_num int [B] -> float32 [B]."""
    hw = tf.cast(tf.reduce_prod(tf.shape(mask)[1:3]), tf.float32)
    n_fg = tf.reduce_sum(mask, axis=[1, 2, 3])
    n_inst = tf.maximum(tf.cast(target_num, tf.float32), 1.0)
    mean_area = n_fg / n_inst
    ratio = tf.math.divide_no_nan(hw, mean_area)
    beta = tf.where(n_fg > 0, tf.minimum(cfg.beta_cap, ratio), cfg.beta_cap) / cfg.beta_divisor
    return tf.stop_gradient(beta)


def hofam_loss(logits, mask, weight=None, target_num=None, cfg: LossConfig = LossConfig()):
    """Total loss and its parts.

    logits float [B,H,W,1]; mask float [B,H,W,1] in {0,1}; weight float [B,H,W,1] or None (all
    ones); target_num int [B] or None (one instance per image). Returns a dict of float32 scalars
    ``loss``, ``l1``, ``focal``, ``soft_f``.
    """
    z = tf.cast(logits, tf.float32)
    y = tf.cast(mask, tf.float32)
    w = tf.ones_like(y) if weight is None else tf.cast(weight, tf.float32)
    p = tf.sigmoid(z)
    denom = tf.maximum(tf.reduce_sum(w), 1.0)
    l1 = tf.reduce_sum(w * tf.abs(y - p)) / denom
    heavy = y  # pixels weighted alpha * beta: the foreground, and with ring_px the background near it
    if cfg.mode == "tf1":
        pc = tf.clip_by_value(p, TF1_EPSILON, 1.0 - TF1_EPSILON)
        ce = -(y * tf.math.log(pc) + (1.0 - y) * tf.math.log(1.0 - pc))
        beta = tf.ones_like(y)
        p = pc
    else:
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)
        if target_num is None:
            target_num = tf.ones(tf.shape(y)[:1], tf.int64)
        beta = size_factor(y, target_num, cfg)[:, None, None, None]
        if cfg.ring_px:
            heavy = tf.nn.max_pool2d(y, 2 * cfg.ring_px + 1, 1, "SAME")
    alpha_t = heavy * cfg.alpha * beta + (1.0 - heavy) * (1.0 - cfg.alpha)
    focal = alpha_t * ce
    if cfg.gamma:
        p_t = y * p + (1.0 - y) * (1.0 - p)
        focal = focal * tf.pow(1.0 - p_t, cfg.gamma)
    focal = tf.reduce_sum(w * focal) / denom
    sums = tf.stack([tf.reduce_sum(w * p * y), tf.reduce_sum(w * p), tf.reduce_sum(w * y)])
    ctx = tf.distribute.get_replica_context()
    if cfg.f_weight and ctx is not None and ctx.num_replicas_in_sync > 1:
        # F of the global batch, as in one process; no collective when the term is off
        sums = ctx.all_reduce(tf.distribute.ReduceOp.SUM, sums)
    soft_f = (2.0 * sums[0] + 1.0) / (sums[1] + sums[2] + 1.0)
    loss = cfg.l1_weight * l1 + cfg.focal_weight * focal
    if cfg.f_weight:
        loss = loss + cfg.f_weight * (1.0 - soft_f)
    return {"loss": loss, "l1": l1, "focal": focal, "soft_f": soft_f}


def balanced_loss(logits, mask, weight=None):
    """The balanced head's loss (``ModelConfig.balanced_head``): unweighted sigmoid cross-entropy,
    sum(w * CE(y, z)) / sum(w) with w only the ignore mask, whose minimiser is the plain
    posterior P(foreground | input) whatever the objects' size."""
    z = tf.cast(logits, tf.float32)
    y = tf.cast(mask, tf.float32)
    w = tf.ones_like(y) if weight is None else tf.cast(weight, tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)
    return tf.reduce_sum(w * ce) / tf.maximum(tf.reduce_sum(w), 1.0)
