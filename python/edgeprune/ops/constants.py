"""The hard-concrete gates' constants (docs/method.md 3.1-3.4), in one place.

The PyTorch reference and the gates use these names; the Triton and C++ kernels hold their own
copies, which tests/ops/test_hard_concrete.py checks against these (by name and numerically).
"""
import math

LEFT, RIGHT, BETA = -0.1, 1.1, 2.0 / 3.0   # stretch interval (l, r) and temperature
SOFT_MASK_FACTOR = 0.8                      # deterministic mask: sigmoid(0.8 log_alpha / beta) = sigmoid(1.2 log_alpha)
LOG_RATIO = math.log(-LEFT / RIGHT)         # ln(1/11): P(z = 0) = sigmoid(beta ln(1/11) - log_alpha)
INIT_MEAN, INIT_STD = 10.0, 0.01            # log_alpha ~ N(10, 0.01^2) at the start of a run
EPS = 1e-6                                  # the noise's eps, u in [eps, 1 - eps]
LLAMA_EPS = 1e-8                            # the reference's eps for Llama-family gates
