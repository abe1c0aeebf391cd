"""Crowd backends by name (see :mod:`iris.crowd.backends.base` for the interface)."""

from iris.crowd.backends.base import BACKENDS, Backend, backend_names, create_backend

__all__ = ["BACKENDS", "Backend", "backend_names", "create_backend"]
