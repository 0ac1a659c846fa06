"""Attack specs as text, for flags and model cards: ``"pgd_linf(eps=0.1, steps=5)"``.

A spec list is comma-separated at the top level: ``"fgsm,pgd_linf(steps=5,eps=0.1),mim"``.
"""
from __future__ import annotations

import ast
import re

from metaadv_tf.attacks import Attack, get_attack

_SPEC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)


def parse_attack(spec: str) -> Attack:
    """Builds the attack that ``spec`` (``name`` or ``name(key=value, ...)``) describes."""
    match = _SPEC.match(spec)
    if not match:
        raise ValueError(
            f"Cannot parse attack spec {spec!r}; expected 'name' or 'name(key=value, ...)',"
            " e.g. 'pgd_linf(eps=0.1, steps=5)'."
        )
    name, arguments = match.group(1), match.group(2)
    return get_attack(name, **(_parse_settings(spec, arguments) if arguments else {}))


def parse_attacks(specs: str | list[str]) -> list[Attack]:
    """Parses a comma-separated spec string (commas inside parentheses belong to a spec)."""
    items = split_specs(specs) if isinstance(specs, str) else list(specs)
    if not items:
        raise ValueError(f"Expected at least one attack spec. Received: {specs!r}")
    return [parse_attack(item) for item in items]


def split_specs(text: str) -> list[str]:
    """Splits ``text`` at commas outside parentheses; empty items are dropped."""
    items, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def format_attack(attack: Attack) -> str:
    """The spec that rebuilds ``attack`` exactly (all settings written out)."""
    settings = ", ".join(f"{key}={value!r}" for key, value in sorted(attack.settings.items()))
    return f"{attack.name}({settings})"


def _parse_settings(spec: str, arguments: str) -> dict:
    try:
        call = ast.parse(f"f({arguments})", mode="eval").body
        if call.args:
            raise ValueError("positional arguments")
        return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError) as error:
        raise ValueError(
            f"Cannot parse the settings of attack spec {spec!r} ({error});"
            " expected key=value pairs of numbers, booleans or strings."
        ) from None
