"""Predictors that score architectures from their generated weights (the weight encoder and baselines)."""

__all__: list[str] = []
