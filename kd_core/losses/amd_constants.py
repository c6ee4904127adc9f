"""AMD's constants and the paper's hyper-parameters (arXiv 2302.14130, section 4), importable
without torch: the app's home page draws the margin's geometry with them before torch has
loaded. :mod:`kd_core.losses.amd` uses and re-exports them."""

ARCCOS_EPS = 1e-7
"""``q`` is clamped to ``[-1 + eps, 1 - eps]`` before ``arccos`` (finite gradients at 1)."""
DEFAULT_MARGIN = 1.35
"""The angular margin ``m`` of the paper's CIFAR-100 runs."""
DEFAULT_SCALE = 64.0
"""The scale ``s`` of the paper's CIFAR-100 runs."""
DEFAULT_LOCAL_WEIGHT = 0.2
"""The weight ``w`` of the local (quadrant) term in the global + local variant."""
