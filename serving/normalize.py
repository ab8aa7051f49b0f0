"""Moved to training/normalize.py (shared ML lives in training/); kept so ``serving.normalize`` imports work."""

from training.normalize import normalize

__all__ = ["normalize"]
