"""Square Attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search"): score-based, untargeted, margin loss, Linf and L2.

A random search that needs only the model's logits, so gradient masking does not stop it. Each
query changes a random square window of the current best point and keeps the change where it
lowers the margin ``logit_y - max_{j != y} logit_j``. As in the reference code (max-andr/
square-attack ``square_attack_linf``/``square_attack_l2``, and ``fra31/auto-attack`` square.py):

- the start: vertical stripes of +-eps (Linf), or a 5 x 5 grid of +-pseudo-Gaussian bumps
  rescaled to L2 norm eps (L2);
- the side of the squares follows the ``p_selection`` schedule (a fraction ``p_init`` of the
  pixels, halved at 0.1 %, 0.5 %, 2 %, 5 %, 10 %, 20 %, 40 %, 60 % and 80 % of the queries):
  one size for every example of an iteration;
- Linf sets the window to x +- eps (one sign per channel), drawing again a sign pattern that
  would not change the point; L2 moves the perturbation mass of a second window into the first,
  as a +-pseudo-Gaussian bump plus the window's old content, then rescales to norm eps.

Window positions and the orientations of the L2 bumps are drawn per example, where the L2
reference shares them across the batch. The loop is a ``tf.while_loop`` with one batched forward
pass per query; random numbers are stateless, from ``seed``: the same inputs give the same result.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from metaadv_tf.attacks import ModelFn
from metaadv_tf.projections import lp_norm

_TINY = 1e-12
_SAME = 1e-7  # the reference's tolerance for "this window would not change the point"
# ``p_selection``: p halves as the iteration passes each of these parts per 10000 of the budget.
_SCHEDULE = np.array([10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000])
_GRID = 5  # the L2 start has _GRID x _GRID bumps of side height // _GRID


def square(
    model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor, *, norm: float, eps: float, queries: int,
    p_init: float, seed: int,
) -> tf.Tensor:
    """The Square Attack on images ``x`` [N, H, W, C] in [0, 1] with labels ``y``.

    ``queries`` counts the model evaluations of perturbed points per example: the start and
    ``queries - 1`` iterations (plus one evaluation of ``x``). Examples that ``x`` already
    misclassifies are returned unchanged; the others stop changing once misclassified. H, W and
    C must be known when tracing; N need not be.
    """
    height, width = x.shape[1], x.shape[2]
    sizes = tf.constant(square_sizes(p_init, queries, height, width, norm), tf.int32)
    key = tf.constant([seed, 0], tf.int64)
    candidate = _linf_candidate if norm == np.inf else _l2_candidate
    start = (_linf_start if norm == np.inf else _l2_start)(x, eps, _seeds(key, 0, 2))
    _, fooled = scores(model_fn, x, y)
    x_best = tf.where(fooled[:, None, None, None], x, start)
    best, fooled = scores(model_fn, x_best, y)

    def step(
        i: tf.Tensor, x_best: tf.Tensor, best: tf.Tensor, fooled: tf.Tensor
    ) -> tuple[tf.Tensor, ...]:
        """One query for the examples not yet misclassified: keeps the candidates that lower the
        margin or are misclassified."""
        active = tf.where(~fooled)
        x_active, best_active = tf.gather_nd(x_best, active), tf.gather_nd(best, active)
        x_new = candidate(tf.gather_nd(x, active), x_active, sizes[i], eps, _seeds(key, i + 1, 4))
        new, new_fooled = scores(model_fn, x_new, tf.gather_nd(y, active))
        better = (new < best_active) | new_fooled
        x_active = tf.where(better[:, None, None, None], x_new, x_active)
        best_active = tf.where(better, new, best_active)
        return (i + 1, tf.tensor_scatter_nd_update(x_best, active, x_active),
                tf.tensor_scatter_nd_update(best, active, best_active),
                tf.tensor_scatter_nd_update(fooled, active, new_fooled))

    def running(i: tf.Tensor, x_best: tf.Tensor, best: tf.Tensor, fooled: tf.Tensor) -> tf.Tensor:
        return (i < queries - 1) & ~tf.reduce_all(fooled)

    return tf.while_loop(running, step, (tf.constant(0), x_best, best, fooled))[1]


def scores(model_fn: ModelFn, images: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The margin ``logit_y - max_{j != y} logit_j`` ([N]) and whether the model misclassifies
    the example (bool [N]; by argmax, which settles a margin of 0)."""
    logits = tf.cast(model_fn(images), tf.float32)
    true = tf.equal(tf.range(tf.shape(logits)[-1])[None, :], y[:, None])
    correct = tf.reduce_sum(tf.where(true, logits, 0.0), axis=-1)
    margin = correct - tf.reduce_max(tf.where(true, -np.inf, logits), axis=-1)
    return margin, tf.not_equal(tf.argmax(logits, axis=-1, output_type=tf.int32), y)


def square_sizes(p_init: float, queries: int, height: int, width: int, norm: float) -> np.ndarray:
    """The side of the squares of each of the ``queries - 1`` iterations (``p_selection``).

    ``round(sqrt(p * H * W))`` for the scheduled fraction p, at most ``min(H, W) - 1``; at least
    1 for Linf, and for L2 odd and at least 3 (before the upper bound).
    """
    parts = np.arange(queries - 1) * 10000 // queries
    fraction = p_init / 2.0 ** np.sum(parts[:, None] > _SCHEDULE, axis=1)
    sizes = np.round(np.sqrt(fraction * height * width)).astype(np.int64)
    if norm != np.inf:
        sizes = np.maximum(sizes, 3)
        sizes += 1 - sizes % 2
    return np.clip(sizes, 1, min(height, width) - 1)


def pseudo_gaussian(size: tf.Tensor | int) -> tf.Tensor:
    """The L2 attack's [size, size] update of unit L2 norm (``meta_pseudo_gaussian_pert``): a
    bump on the top half and its negative on the bottom half."""
    half = size // 2
    bump = tf.concat([_rectangle_bump(half, size), -_rectangle_bump(size - half, size)], axis=0)
    return bump / tf.norm(bump)


def _rectangle_bump(rows: tf.Tensor | int, cols: tf.Tensor | int) -> tf.Tensor:
    """``pseudo_gaussian_pert_rectangles``: sum over k of 1 / (k + 1)**2 on the rectangle of
    Chebyshev radius k around the centre (rows // 2, cols // 2), normalised to unit L2 norm."""
    radius = tf.maximum(
        tf.abs(tf.range(rows) - rows // 2)[:, None], tf.abs(tf.range(cols) - cols // 2)[None, :]
    )
    k = tf.range(tf.maximum(rows, cols) // 2 + 1, dtype=tf.float32)
    tails = tf.cumsum(1.0 / (k + 1.0) ** 2, reverse=True)  # tails[r] = sum over k >= r
    bump = tf.gather(tails, radius)
    return bump / tf.norm(bump)


def _linf_start(x: tf.Tensor, eps: float, seeds: tf.Tensor) -> tf.Tensor:
    """Vertical stripes: each column of each channel moved by +eps or -eps."""
    shape = tf.stack([tf.shape(x)[0], 1, x.shape[2], x.shape[3]])
    return tf.clip_by_value(x + eps * _random_signs(shape, seeds[0]), 0.0, 1.0)


def _l2_start(x: tf.Tensor, eps: float, seeds: tf.Tensor) -> tf.Tensor:
    """A grid of pseudo-Gaussian bumps of side H // 5, each with a random sign per channel and a
    random orientation, rescaled to L2 norm eps."""
    batch, height, width, channels = tf.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
    side = height // _GRID
    offset = (height - side * _GRID) // 2
    rows, cols = (height - offset) // side, (width - offset) // side
    bump = pseudo_gaussian(side)
    flipped = _random_signs(tf.stack([batch, rows, cols]), seeds[0]) > 0.0
    bumps = tf.where(flipped[..., None, None], tf.transpose(bump), bump)  # [N, rows, cols, s, s]
    signs = _random_signs(tf.stack([batch, rows, cols, 1, 1, channels]), seeds[1])
    bumps = bumps[..., None] * signs
    grid = tf.reshape(
        tf.transpose(bumps, [0, 1, 3, 2, 4, 5]), [batch, rows * side, cols * side, channels]
    )
    delta = tf.pad(grid, [[0, 0], [offset, height - offset - rows * side],
                          [offset, width - offset - cols * side], [0, 0]])
    return _rescale_l2(x, delta, eps)


def _linf_candidate(
    x: tf.Tensor, x_best: tf.Tensor, size: tf.Tensor, eps: float, seeds: tf.Tensor
) -> tf.Tensor:
    """``x_best`` with one random window per example set to ``x`` +- eps (a sign per channel).

    Where the drawn signs would leave the window as it is, a random non-empty set of channels
    flips its sign: the reference's redraw until the window changes.
    """
    batch, channels = tf.shape(x)[0], x.shape[3]
    inside = _inside(*_window(x, size, seeds[0])) > 0.0
    signs = _random_signs(tf.stack([batch, 1, 1, channels]), seeds[1])
    same = tf.abs(tf.clip_by_value(x + eps * signs, 0.0, 1.0) - x_best) < _SAME
    unchanged = tf.reduce_all(same | ~inside, axis=[1, 2, 3])
    flipped = signs * _random_flips(batch, channels, seeds[2])
    signs = tf.where(unchanged[:, None, None, None], flipped, signs)
    return tf.where(inside, tf.clip_by_value(x + eps * signs, 0.0, 1.0), x_best)


def _l2_candidate(
    x: tf.Tensor, x_best: tf.Tensor, size: tf.Tensor, eps: float, seeds: tf.Tensor
) -> tf.Tensor:
    """``x_best`` with the perturbation of a second random window moved into a first one.

    Per channel, the first window gets a +-pseudo-Gaussian bump plus its old content (of unit
    norm), scaled to the norm of the two windows' old content plus an equal share of the budget
    the perturbation does not use; the rest of the second window is zeroed. Then the whole
    perturbation is rescaled to norm eps.
    """
    delta = x_best - x
    rows, cols = _window(x, size, seeds[0])
    first = _inside(rows, cols)
    union = tf.maximum(first, _inside(*_window(x, size, seeds[1])))
    transposed = _random_signs(tf.shape(x)[:1], seeds[2]) > 0.0
    bump = _place(pseudo_gaussian(size), rows, cols, transposed)
    signs = _random_signs(tf.stack([tf.shape(x)[0], 1, 1, x.shape[3]]), seeds[3])
    new = bump * signs + delta * first / (_TINY + _spatial_norm(delta * first))
    unused = tf.maximum(eps**2 - lp_norm(delta, 2.0)[:, None, None, None] ** 2, 0.0)
    share = unused / x.shape[3] + _spatial_norm(delta * union) ** 2
    new = new / (_TINY + _spatial_norm(new)) * tf.sqrt(share)
    return _rescale_l2(x, delta * (1.0 - union) + new, eps)


def _window(x: tf.Tensor, size: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A random square of side ``size`` per example of ``x``, as one-hot maps from the image's
    rows ([N, H, size]) and columns ([N, W, size]) to the square's (zero outside the square).
    The top-left corner is uniform in [0, H - size) x [0, W - size), as the reference's
    ``randint(0, h - s)``."""
    height, width = x.shape[1], x.shape[2]
    room = tf.cast(tf.constant([height, width]) - size, tf.float32)
    uniform = tf.random.stateless_uniform(tf.stack([tf.shape(x)[0], 2]), seed)
    corner = tf.cast(tf.floor(uniform * room), tf.int32)
    rows = tf.one_hot(tf.range(height)[None, :] - corner[:, :1], size, dtype=x.dtype)
    cols = tf.one_hot(tf.range(width)[None, :] - corner[:, 1:], size, dtype=x.dtype)
    return rows, cols


def _inside(rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
    """1.0 on the pixels of ``_window``'s square, else 0.0 ([N, H, W, 1])."""
    in_rows, in_cols = tf.reduce_sum(rows, axis=2), tf.reduce_sum(cols, axis=2)
    return (in_rows[:, :, None] * in_cols[:, None, :])[..., None]


def _place(bump: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor, transposed: tf.Tensor) -> tf.Tensor:
    """``bump`` [s, s], transposed where ``transposed`` ([N]), on each example's square of
    ``_window``, zero elsewhere ([N, H, W, 1])."""
    bumps = tf.where(transposed[:, None, None], tf.transpose(bump), bump)
    return tf.matmul(tf.matmul(rows, bumps), cols, transpose_b=True)[..., None]


def _spatial_norm(delta: tf.Tensor) -> tf.Tensor:
    """The L2 norm of each example's channels ([N, 1, 1, C])."""
    return tf.sqrt(tf.reduce_sum(tf.square(delta), axis=[1, 2], keepdims=True))


def _rescale_l2(x: tf.Tensor, delta: tf.Tensor, eps: float) -> tf.Tensor:
    """``x`` plus ``delta`` rescaled to L2 norm ``eps`` per example, clipped to [0, 1]."""
    scale = eps / (_TINY + lp_norm(delta, 2.0))
    return tf.clip_by_value(x + delta * scale[:, None, None, None], 0.0, 1.0)


def _random_signs(shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """-1.0 or 1.0 with equal probability."""
    bits = tf.random.stateless_uniform(shape, seed, maxval=2, dtype=tf.int32)
    return tf.cast(2 * bits - 1, tf.float32)


def _random_flips(batch: tf.Tensor, channels: int, seed: tf.Tensor) -> tf.Tensor:
    """Per example, -1.0 on a uniformly random non-empty set of channels, else 1.0 ([N, 1, 1, C]).
    """
    subset = tf.random.stateless_uniform(
        tf.stack([batch]), seed, minval=1, maxval=2**channels, dtype=tf.int32
    )
    bits = tf.bitwise.right_shift(subset[:, None], tf.range(channels)[None, :]) % 2
    return tf.cast(1 - 2 * bits, tf.float32)[:, None, None, :]


def _seeds(key: tf.Tensor, index: tf.Tensor | int, count: int) -> tf.Tensor:
    """``count`` stateless seeds ([count, 2]) for query ``index``, derived from ``key``."""
    folded = tf.random.experimental.stateless_fold_in(key, index)
    return tf.random.experimental.stateless_split(folded, count)
