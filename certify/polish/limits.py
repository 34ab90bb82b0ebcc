"""Tolerances and limits of the polisher (what each one bounds is said where it is declared)."""

from __future__ import annotations

import numpy as np

#: near-kinks within this relative distance are held at the start (the rest is found by blocking)
DEFAULT_TOL_NEAR = 0.0
#: a switching function within this relative distance of 0 has no sign of its own (side overrides)
TOL_SIDE = 1e3 * np.finfo(np.float64).eps
#: target for held kinks: |phi_k| <= TOL_HOLD * (size of its terms)  (a few ulps)
TOL_HOLD = 32 * np.finfo(np.float64).eps
#: target for the reduced gradient, relative to the size of the gradient's terms
TOL_GRAD = 1e-13
#: a reduced gradient below this (relative) counts as converged when Newton stops improving it
TOL_STALL = 1e-10
#: a held kink whose release lowers L at a slope below this (relative) is consistent (rounding)
TOL_SLOPE = 1e-10
#: Levenberg shift of the Newton system, relative to ||H||
RHO_REL = 1e-10
#: a unit whose incoming weights shrink below this (relative to its layer's largest) on the way is set to 0
#: (when that does not raise the loss). 1e-9 left units of 3e-8 and 6e-9 shrinking by a factor per Newton
#: step until the predicted decrease fell below rounding (wine_mchinge_wd_sgd, wine_ce_deep_adam,
#: bc_hinge_wd_adam: "stopped", not converged, and the nearby prover failed on their 60-170 kinks within
#: 1e-9); at 0 such a unit is frozen and whether it regrows is the checker's question (certify.prune).
#: Measured with 1e-6: wine_ce_deep_adam's polish converges; wine_mchinge_wd_sgd's units stay (setting them
#: to 0 does not lower its float64 loss, and a snap never raises it)
SNAP_DURING = 1e-6
#: a polish still descending this many times ||theta_0|| from the checkpoint stops: no minimum near it
#: (a loss whose infimum is not attained keeps falling as weights grow: linnerud_sq_adam, given 20, went
#: 11.8 ||theta_0|| in 57 s with its loss gap flat at 0.0034). A limit of 1 cut descents that end decided
#: a little further: iris_petal_abs_sgd, with two BLAS threads, passes 1 (modulo rescaling) and converges at 1.85
#: to a certified minimum (with one thread it converges at 0.80); the report gives the distance either way
MAX_DISTANCE = 2.0
#: sweeps of :func:`~.rescale.nearest_rescaling` when a polish past its distance limit measures the
#: distance modulo rescaling (each sweep only shortens it: fewer give an upper bound, never a false "near")
FAR_SWEEPS = 3
#: a kink released this often stays held (anti-cycling; its multiplier is then reported as it is)
MAX_RELEASES = 5
#: a kink released this often along the box-multiplier descent at one point stays held there
MAX_SAME_POINT = 2
#: convex kinks are released only once the reduced gradient on their face is below this (relative)
TOL_FACE = 1e-7
#: ... or once the reduced gradient is below this fraction of the largest multiplier violation
RELEASE_RATIO = 0.1
#: the first trial of a line search crosses at most this many kinks (or a quarter of those held)
MAX_ADD = 16
#: ... and at most this many however many are held (each costs a row in every projection)
MAX_HOLD = 256
#: connected blocks of B B' up to this size are factored densely
DENSE_BLOCK = 4000
#: CG iterations per Newton step
MAX_CG = 250
EPS = np.finfo(np.float64).eps
#: a step across unheld convex kinks is taken without holding them when the loss falls by at least
#: this fraction of the model's predicted decrease (:func:`certify.polish.steps.line_search`)
CROSS_RATIO = 0.5
#: a kept factorisation's correction must shrink the held kinks' residual by this factor (restore)
CHORD_RATE = 0.1
#: networks with at least this many parameters take the large-network path of the polish: an L-BFGS
#: first phase (:mod:`certify.polish.smooth`) and dense Gram products of mostly-filled kink rows
#: (:class:`~certify.polish.projector.Projector`). Below it the polish is left as it was when its end
#: points were certified on the trained family (those end points move at rounding level with any
#: change of arithmetic, and some lost their certificates when they did)
LARGE_P = 5000
#: (large networks) rows filled to at least this fraction get a dense Gram product ...
DENSE_FILL = 0.1
#: ... when the dense rows have at most this many entries (8 bytes each)
DENSE_ENTRIES = 25_000_000
