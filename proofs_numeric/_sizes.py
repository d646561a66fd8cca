"""The sweep sizes of the checkers, in a module of their own so `threegate verify --help` needs no jax."""

from typing import Final

SIZES: Final = ("tiny", "default", "large")
