"""A schemathesis check (SCHEMATHESIS_HOOKS=tests/fuzz/schemathesis_hooks.py): no answer of the API
speaks Python. Text the request itself carried is taken out first, so an echoed value is not held
against the server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import schemathesis

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fuzz.python_words import PYTHON_WORDS  # noqa: E402


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


@schemathesis.check
def no_python_text(ctx, response, case):
    if response.status_code < 400:
        return None
    text = response.text
    sent = [*_strings(case.body), *_strings(case.query), *_strings(case.path_parameters),
            *_strings(case.headers)]
    for s in sorted((s for s in sent if len(s) >= 3), key=len, reverse=True):
        text = text.replace(s, "").replace(repr(s), "")
    found = PYTHON_WORDS.search(text)
    if found:
        raise AssertionError(f"the answer speaks Python ({found.group(0)!r}): {response.text[:300]}")
    return None
