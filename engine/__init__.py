"""RecLens engine."""
