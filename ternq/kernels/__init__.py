"""The compiled kernels. Importing them makes Numba's cache safe for processes that compile side by side, and
stale when any kernel source changes (:mod:`ternq.kernels.cache`); the package imports them first."""

from .cache import install_lock, install_stamp

install_lock()
install_stamp()
