"""The compiled kernels. Importing them makes Numba's cache safe for processes that compile side by side."""

from .cache import install_lock

install_lock()
