"""WCAG AA for text: every text colour of the palette (gateway/static/agora.css) against each
background it is used on reaches 4.5:1. No browser needed: the colours are CSS custom properties."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = Path(__file__).resolve().parents[2] / "gateway" / "static" / "agora.css"

# (text, background) as the stylesheets pair them.
PAIRS = [
    ("text", "bg"), ("text", "surface"), ("text", "accent-soft"),         # body, cards, info notices
    ("muted", "surface"), ("muted", "bg"),                                # hints, times, the chat log
    ("accent", "surface"), ("accent", "bg"), ("accent", "accent-soft"),   # links, secondary buttons, badges
    ("on-accent", "accent"), ("on-accent", "accent-hover"),               # buttons
    ("header-text", "header-bg"), ("header-link", "header-bg"),           # the shared header
    ("danger", "surface"), ("danger", "danger-soft"),                     # errors
    ("ok", "surface"), ("ok", "ok-soft"), ("warn", "warn-soft"),          # states
]


def palette() -> dict[str, str]:
    root = re.search(r":root\s*{(.*?)}", CSS.read_text(), re.S).group(1)
    return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})\s*;", root))


def luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_formula_matches_known_ratios():
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#767676", "#ffffff"), 2) == 4.54   # the lightest grey that passes on white


@pytest.mark.parametrize(("fg", "bg"), PAIRS, ids=[f"{f}-on-{b}" for f, b in PAIRS])
def test_text_colours_pass_wcag_aa(fg, bg):
    colours = palette()
    ratio = contrast(colours[fg], colours[bg])
    assert ratio >= 4.5, f"--{fg} {colours[fg]} on --{bg} {colours[bg]}: {ratio:.2f}:1"
