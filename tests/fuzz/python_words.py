"""What an answer must never say: Python's type names as a library quotes them, exception class
names, reprs and tracebacks. Shared by the hypothesis error-text test and the schemathesis check."""

from __future__ import annotations

import re

PYTHON_WORDS = re.compile(
    r"'(int|float|str|bytes|bool|dict|list|tuple|NoneType|object)'|\b(NoneType|bytes-like|"
    r"[A-Z][a-zA-Z]*(Error|Exception))\b|Traceback|File \"|object is not|object has no|<class |"
    r"\b(int|float|str|dict|list|tuple)\(|\bnot iterable\b"
)
