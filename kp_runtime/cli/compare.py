"""``kp-runtime compare``: cross-provider accuracy (implemented in :mod:`kp_runtime.compare.cli`)."""

from kp_runtime.compare.cli import register

__all__ = ["register"]
