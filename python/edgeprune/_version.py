"""The package version (one place: __init__, checkpoints and circuits read it)."""
__version__ = "0.1.0"
