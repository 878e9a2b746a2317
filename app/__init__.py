"""RecLens app."""
