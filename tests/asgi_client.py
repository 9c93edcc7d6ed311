"""Starlette's TestClient, for driving an ASGI app in-process from any test folder.

Starlette 1.10 wants httpx2 for its TestClient and warns (an error under our pytest
settings) when it falls back to httpx; drop this once httpx2 is a dev dependency.
"""

from __future__ import annotations

import warnings

from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = ["TestClient"]
