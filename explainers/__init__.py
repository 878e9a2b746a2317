"""RecLens explainers."""
