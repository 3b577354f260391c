"""torchwire's stand-in for TorchServe's ``ts`` package (see :mod:`torchwire.compat`).

It is on ``sys.path`` only inside torchwire workers, and only when TorchServe itself
is not installed.
"""

TORCHWIRE_COMPAT = True
