"""Adversarial attacks by name: the tasks of meta-adversarial training and the evaluation's attacks.

Over ``cleverhans.tf2``: ``fgsm``, ``pgd_linf``, ``pgd_l2``, ``bim``, ``mim``, ``cw_l2``, ``spsa``.
Our own, where CleverHans has none: ``apgd_ce``, ``apgd_dlr``, ``apgd_t`` (Auto-PGD, Linf/L2/L1;
``autopgd``), ``square`` (``square``), ``pgd_l1`` (SLIDE; ``slide``), ``spatial`` (rotations and
translations, no norm; ``spatial``) and the ``autoattack`` composite (``autoattack``).

An ``Attack`` is an attack with all its settings; call it on any logits callable::

    attack = get_attack("pgd_linf", steps=20)
    x_adv = attack(model, images, labels)  # float32 in [0, 1], same shape, gradient stopped

``model_fn`` may be a Keras model or a lambda over fast weights. Untargeted attacks use ``y`` (int
labels), or the model's predictions when ``y`` is None. Every attack runs eagerly and inside
``tf.function``, and its result is projected into its eps ball and [0, 1]. Attacks run in the
caller's mode: compile them with the step that uses them (``cw_l2`` and ``spsa`` run 2-4x slower
eagerly). Eagerly, pass the same ``model_fn`` object each call: CleverHans traces its gradient
function once per callable. CleverHans itself is imported on the first attack call.

Defaults are for Fashion-MNIST, as in ``default_settings(name)``:

- ``eps``: 0.1 for Linf (``LINF_EPS``), 1.5 for L2 (``L2_EPS``). The corner of the Linf 0.1 ball
  on 28x28 has L2 norm 0.1 * 28 = 2.8, but Fashion-MNIST is about half black background, where
  a perturbation can only go up: PGD-Linf 0.1 perturbations of a small CNN measure about 2.2 in
  L2. L2 1.5 is a somewhat smaller budget of the same order, in the range used for 28x28
  grey-scale images (1.0-2.0 on MNIST).
- ``steps`` 10; ``step_size`` 2.5 * eps / steps (Madry et al.), eps / steps for MIM (Dong et al.),
  so it scales when you change ``eps`` or ``steps``. FGSM with random start (Wong et al. 2020) is
  ``get_attack("pgd_linf", steps=1, step_size=0.125)``.
- ``cw_l2``: 4 binary-search steps of 50 Adam steps at learning rate 0.1, initial const 0.1: a
  fixed budget, so it compiles (CleverHans: up to 5 x 1000 steps at 0.005, with early abort).
  Being a minimal-perturbation attack, it returns ``x`` where it found nothing within ``eps``.
- ``spsa``: 10 steps of 64 model evaluations per example (``num_samples``), learning rate 0.02,
  delta 0.01: 640 forward passes per example (Uesato et al. use far more to claim robustness).

Compiled, on 200 test images and a small CNN on 2 busy CPU cores: ``fgsm`` 0.1 s; ``pgd_*``,
``bim``, ``mim`` about 1 s; ``cw_l2`` 10-20 s; ``spsa`` 20-30 s; ``pgd_l1`` about 1 s;
``spatial`` 1-3 s (its grid stops on examples already misclassified); ``square`` (1000 queries)
10-25 s. ``autoattack`` at protocol v2's settings takes 6-7 minutes per 1000 images at Linf and
L2 (``metaadv_tf.protocols``).
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf

from metaadv_tf.projections import project
from metaadv_tf.registry import Registry, unknown_name_message
from metaadv_tf.validation import check_positive, check_positive_int

ModelFn = Callable[[tf.Tensor], tf.Tensor]

LINF_EPS = 0.1
L2_EPS = 1.5
L1_EPS = 10.0
DEFAULT_EPS = {"inf": LINF_EPS, 2: L2_EPS, 1: L1_EPS}
NORM_VALUES = {"inf": np.inf, 2: 2.0, 1: 1.0}
THREAT_MODELS = {"inf": "Linf", 2: "L2", 1: "L1"}
SPATIAL = "spatial"  # the threat model of attacks without a norm: rotations and translations


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """A registered attack: its runner and its settings' defaults.

    ``runner`` is ``"module.function"`` inside ``metaadv_tf``, imported on the first call, with
    the signature ``runner(model_fn, x, y, **settings) -> x_adv`` (``norm`` as a number).
    ``defaults`` holds every setting; ``eps`` None means the default eps of the norm, and
    ``step_size`` None means ``step_scale * eps / steps``. ``norms`` are the norms allowed; an
    attack with no ``norm`` setting belongs to the ``spatial`` threat model and is not projected.
    ``continues``: the runner takes a ``start`` batch and iterates from it (``Attack.continue_from``).
    """

    runner: str
    defaults: Mapping[str, Any]
    norms: tuple[str | int, ...] = ("inf",)
    step_scale: float = 2.5
    continues: bool = False


ATTACKS: Registry[AttackSpec] = Registry("attack")
ATTACKS.register("fgsm", AttackSpec("cleverhans_compat.fgm", {"eps": None, "norm": "inf"}, norms=("inf", 2)))
ATTACKS.register(
    "pgd_linf",
    AttackSpec(
        "cleverhans_compat.pgd", {"eps": None, "norm": "inf", "steps": 10, "step_size": None, "rand_init": True},
        continues=True,
    ),
)
ATTACKS.register(
    "pgd_l2",
    AttackSpec(
        "cleverhans_compat.pgd", {"eps": None, "norm": 2, "steps": 10, "step_size": None, "rand_init": True},
        norms=(2,), continues=True,
    ),
)
ATTACKS.register(
    "bim",
    AttackSpec(
        "cleverhans_compat.pgd", {"eps": None, "norm": "inf", "steps": 10, "step_size": None, "rand_init": False},
        norms=("inf", 2), continues=True,
    ),
)
ATTACKS.register(
    "mim",
    AttackSpec(
        "cleverhans_compat.mim", {"eps": None, "norm": "inf", "steps": 10, "step_size": None, "decay": 1.0},
        norms=("inf", 2), step_scale=1.0,
    ),
)
ATTACKS.register(
    "cw_l2",
    AttackSpec(
        "cleverhans_compat.cw_l2",
        {
            "eps": None, "norm": 2, "steps": 50, "learning_rate": 0.1, "binary_search_steps": 4,
            "confidence": 0.0, "initial_const": 0.1,
        },
        norms=(2,),
    ),
)
ATTACKS.register(
    "spsa",
    AttackSpec(
        "cleverhans_compat.spsa",
        {"eps": None, "norm": "inf", "steps": 10, "learning_rate": 0.02, "num_samples": 64,
         "delta": 0.01},
    ),
)

# Auto-PGD (Croce & Hein 2020; L1 as in Croce & Hein 2021): ``steps`` iterations per restart
# (and per target class for apgd_t); ``rho`` is the step-size schedule's checkpoint criterion.
# ``largereps`` (L1 only): AutoAttack's stages at 3 eps, 2 eps, then eps (``autopgd``); None (the
# default) means AutoAttack's standard: on for L1, off otherwise.
_APGD = {"eps": None, "norm": "inf", "steps": 100, "restarts": 1, "rho": 0.75, "seed": 0,
         "largereps": None}
ATTACKS.register("apgd_ce", AttackSpec("autopgd.apgd_ce", _APGD, norms=("inf", 2, 1)))
ATTACKS.register("apgd_dlr", AttackSpec("autopgd.apgd_dlr", _APGD, norms=("inf", 2, 1)))
ATTACKS.register(
    "apgd_t", AttackSpec("autopgd.apgd_t", {**_APGD, "target_classes": 9}, norms=("inf", 2, 1))
)
ATTACKS.register(
    "square",
    AttackSpec("square.square", {"eps": None, "norm": "inf", "queries": 1000, "p_init": 0.8,
                                 "seed": 0}, norms=("inf", 2)),
)
ATTACKS.register(
    "pgd_l1",
    AttackSpec(
        "slide.pgd_l1",
        {"eps": None, "norm": 1, "steps": 20, "step_size": None, "percentile": 99.0,
         "rand_init": False, "seed": 0},
        norms=(1,), step_scale=2.5, continues=True,
    ),
)
ATTACKS.register(
    "spatial",
    AttackSpec(
        "spatial.spatial",
        {"max_angle": 10.0, "max_shift": 2.0, "angles": 21, "shifts": 5, "samples": 0, "seed": 0},
        norms=(),
    ),
)
ATTACKS.register(
    "autoattack",
    AttackSpec(
        "autoattack.autoattack",
        {"eps": None, "norm": "inf", "steps": 100, "restarts": 1, "target_classes": 9,
         "queries": 5000, "seed": 0, "largereps": None},
        norms=("inf", 2, 1),
    ),
)


@dataclasses.dataclass(frozen=True)
class Attack:
    """An attack with all its settings. Build it with ``get_attack``; calling it attacks a batch.

    ``attack(model_fn, x, y=None)`` returns adversarial examples for float32 images ``x`` in
    [0, 1] ([N, H, W, C]) and int labels ``y`` ([N]; None: the model's predictions), with the
    shape and dtype of ``x``, within ``eps`` in the attack's norm, in [0, 1], gradient stopped.
    """

    name: str
    settings: dict[str, Any]

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.settings.items()))))

    @property
    def norm(self) -> float | None:
        """``np.inf``, ``2.0`` or ``1.0``; None for spatial attacks."""
        return NORM_VALUES.get(self.settings.get("norm"))

    @property
    def eps(self) -> float | None:
        """The radius of the threat model's ball; None for spatial attacks."""
        return self.settings.get("eps")

    @property
    def threat_model(self) -> str:
        """``"Linf"``, ``"L2"``, ``"L1"`` or ``"spatial"``."""
        return THREAT_MODELS.get(self.settings.get("norm"), SPATIAL)

    @property
    def can_continue(self) -> bool:
        """True when ``continue_from`` works: the attack iterates from a starting batch (PGD, SLIDE)."""
        return ATTACKS.get(self.name).continues

    def __call__(self, model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor | None = None) -> tf.Tensor:
        return self._run(model_fn, x, y, {})

    def continue_from(self, model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor | None, start: tf.Tensor,
                      steps: int) -> tf.Tensor:
        """``steps`` of the attack's iterations (its step size) on ``x``, starting at ``start``
        (projected into the ball first) instead of the attack's own start: continues an earlier
        adversarial batch, as ATTA (Zheng et al. 2020) does across epochs.

        Raises ValueError for attacks that cannot (``can_continue`` is False) or ``steps`` < 1.
        """
        if not self.can_continue:
            continuing = ", ".join(name for name in ATTACKS if ATTACKS.get(name).continues)
            raise ValueError(
                f"Attack {self.name!r} cannot continue from a start; those that can: {continuing}."
            )
        check_positive_int("steps", steps)
        return self._run(model_fn, x, y, {"steps": steps, "start": tf.convert_to_tensor(start)})

    def _run(self, model_fn: ModelFn, x: tf.Tensor, y: tf.Tensor | None, overrides: dict) -> tf.Tensor:
        """The runner on float32 ``x`` with the settings and ``overrides``, projected, gradient stopped."""
        x = tf.convert_to_tensor(x)
        if x.dtype != tf.float32:
            raise ValueError(
                f"Attacks take float32 images in [0, 1]. Received dtype {x.dtype.name}."
            )
        labels = (
            tf.argmax(model_fn(x), axis=-1, output_type=tf.int32)
            if y is None
            else tf.cast(y, tf.int32)
        )
        x_adv = _runner(self.name)(model_fn, x, labels, **{**self.settings, "norm": self.norm, **overrides})
        if self.norm is not None:
            x_adv = project(x, x_adv, self.norm, self.eps)
        return tf.stop_gradient(x_adv)


def list_attacks() -> list[str]:
    """Names accepted by ``get_attack``."""
    return ATTACKS.names()


def get_attack(name: str, **settings: Any) -> Attack:
    """The attack ``name`` with ``settings`` over its defaults (see ``default_settings``).

    Raises ValueError for an unknown name or setting, or an invalid value, naming the value.
    """
    spec = ATTACKS.get(name)
    for key in settings:
        if key not in spec.defaults:
            raise ValueError(unknown_name_message(f"{name} setting", key, sorted(spec.defaults)))
    return Attack(name, _resolve(name, spec, settings))


def attack_labels(attacks: list[Attack]) -> list[str]:
    """One label per attack: its name; ``name(eps=...)`` when the name occurs more than once; and
    when that is shared too, with the settings that tell those attacks apart, e.g.
    ``apgd_ce(eps=10, steps=5)``.

    Raises ValueError when two attacks are the same attack.
    """
    names = [attack.name for attack in attacks]
    labels = [a.name if names.count(a.name) == 1 else f"{a.name}(eps={eps_label(a.eps)})" for a in attacks]
    labels = [_distinct_label(a, [b for b, other in zip(attacks, labels) if other == label])
              if labels.count(label) > 1 else label for a, label in zip(attacks, labels)]
    for label in labels:
        if labels.count(label) > 1:
            raise ValueError(f"Attack {label!r} appears twice; list each attack once. Received: {labels}")
    return labels


def _distinct_label(attack: Attack, sharing: list[Attack]) -> str:
    """``name(eps=..., key=value, ...)``: the settings in which ``sharing`` (attacks with the same
    name and eps, ``attack`` among them) differ."""
    keys = sorted(key for key in attack.settings if key != "eps"
                  and len({repr(other.settings.get(key)) for other in sharing}) > 1)
    differing = "".join(f", {key}={_setting_label(attack.settings[key])}" for key in keys)
    return f"{attack.name}(eps={eps_label(attack.eps)}{differing})"


def _setting_label(value: Any) -> str:
    """A setting as written in a label: floats in ``%g`` format, other values as in Python."""
    return f"{value:g}" if isinstance(value, float) else repr(value)


def eps_label(eps: Any) -> str:
    """eps in ``%g`` format, or '-' when the attack has none."""
    return "-" if eps is None else f"{eps:g}"


def default_settings(name: str) -> dict[str, Any]:
    """Every setting of attack ``name`` with its default value."""
    return _resolve(name, ATTACKS.get(name), {})


def _resolve(name: str, spec: AttackSpec, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Checks ``settings`` over ``spec.defaults`` and fills the defaults derived from others."""
    values = {**spec.defaults, **settings}
    if "norm" in values:
        values["norm"] = _check_norm(name, values["norm"], spec.norms)
    if values.get("eps", 0) is None:
        values["eps"] = DEFAULT_EPS[values["norm"]]
    for key, norm in _ONE_NORM_ONLY.items():
        if key in values and values[key] is None:
            values[key] = values["norm"] == norm
    for key, value in values.items():
        if key != "norm" and value is not None:
            values[key] = _CHECKS[key](key, value)
    for key, norm in _ONE_NORM_ONLY.items():
        if values.get(key) and values["norm"] != norm:
            raise ValueError(f"{key}=True applies to norm={norm} only for attack {name!r}."
                             f" Received: {key}={values[key]!r} with norm={values['norm']!r}")
    if "step_size" in values and values["step_size"] is None:
        values["step_size"] = spec.step_scale * values["eps"] / values["steps"]
    return dict(sorted(values.items()))


def _check_norm(name: str, value: Any, allowed: tuple[str | int, ...]) -> str | int:
    """The canonical norm ("inf", 2 or 1) of ``value`` (``np.inf``/"inf", 2 or 1) if ``allowed``."""
    norm = "inf" if isinstance(value, (str, float)) and str(value) == "inf" else value
    if isinstance(norm, bool) or norm not in allowed:
        choices = ", ".join(repr(n) for n in allowed)
        raise ValueError(
            f"norm must be one of {choices} for attack {name!r}. Received: norm={value!r}"
        )
    return "inf" if norm == "inf" else int(norm)


@tf.autograph.experimental.do_not_convert  # a lookup, no TensorFlow ops: AutoGraph cannot convert importlib
def _runner(name: str) -> Callable[..., tf.Tensor]:
    """The runner function of attack ``name``, imported on first use (CleverHans is heavy)."""
    module, function = ATTACKS.get(name).runner.rsplit(".", 1)
    return getattr(importlib.import_module(f"metaadv_tf.{module}"), function)


def _check_bool(key: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{key} must be True or False. Received: {key}={value!r}")
    return bool(value)


def _check_non_negative(key: str, value: Any) -> float:
    return check_positive(key, value, allow_zero=True)


def _check_non_negative_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{key} must be an integer >= 0. Received: {key}={value!r}")
    return int(value)


def _check_fraction(key: str, value: Any) -> float:
    if not 0 < check_positive(key, value) <= 1:
        raise ValueError(f"{key} must be a number in (0, 1]. Received: {key}={value!r}")
    return float(value)


def _check_percentile(key: str, value: Any) -> float:
    if not 0 < check_positive(key, value) < 100:
        raise ValueError(f"{key} must be a number in (0, 100). Received: {key}={value!r}")
    return float(value)


def _check_even(key: str, value: Any) -> int:
    if check_positive_int(key, value) % 2:
        raise ValueError(f"{key} must be an even integer >= 2. Received: {key}={value!r}")
    return int(value)


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "eps": check_positive,
    "steps": check_positive_int,
    "step_size": check_positive,
    "rand_init": _check_bool,
    "decay": _check_non_negative,
    "learning_rate": check_positive,
    "binary_search_steps": check_positive_int,
    "confidence": _check_non_negative,
    "initial_const": check_positive,
    "num_samples": _check_even,
    "delta": check_positive,
    "restarts": check_positive_int,
    "rho": _check_fraction,
    "seed": _check_non_negative_int,
    "target_classes": check_positive_int,
    "queries": check_positive_int,
    "p_init": _check_fraction,
    "percentile": _check_percentile,
    "max_angle": _check_non_negative,
    "max_shift": _check_non_negative,
    "angles": check_positive_int,
    "shifts": check_positive_int,
    "samples": _check_non_negative_int,
    "largereps": _check_bool,
}
# Settings that, when true, apply to one norm only (None: true for that norm): AutoAttack uses
# APGD's largereps for L1 only.
_ONE_NORM_ONLY = {"largereps": 1}
