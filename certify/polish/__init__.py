"""Polishing a trained point: an active-set Newton–KKT method over the pieces of the loss.

A checkpoint from SGD or Adam is never exactly stationary, and its minimum usually sits *on* kinks
(hidden pre-activations at 0, hinge margins at 1, absolute residuals at 0, multiclass ties): no
smooth method converges there (float64 L-BFGS stalls at gradient norms of 1e-2 on small ReLU nets).
:func:`polish` moves the point to a nearby KKT point of the piecewise-smooth training loss whose
held kinks are zero to a few ulps and whose reduced gradient is zero to rounding, and says how far
it moved. It is a search, never a proof: every certificate is about the polished point as stored.

Method (DESIGN.md §6; the active-set SQP of Nocedal–Wright ch. 16–18 applied to the pieces)
-------------------------------------------------------------------------------------------
Near a point only the kinks close to 0 matter. Every kink ``k`` has a switching function
``phi_k(theta)`` (a pre-activation ``z^l_j(x_i)``, or ``v_a - v_b`` for two pieces ``a, b`` of a
loss group) and a *jump* ``gamma_k``: on the reference side ``phi_k >= 0`` the loss is the smooth
piece ``L_ref``, and across the kink ``L = L_ref + gamma_k max(0, -phi_k) + ...`` to first order,
with ``gamma_k = (s_pos - s_neg) dL/dx`` for a unit (its adjoint times the slope jump) and
``gamma_k = 1/n`` for a loss tie. The method keeps a **held set** ``H`` of kinks and works on the
manifold ``M_H = {phi_k = 0, k in H}``, on which the loss is smooth (a held unit's output is 0 on
both sides):

1. **Multipliers.** With ``B`` the rows ``grad phi_k`` (k in H) stacked with the symmetry
   directions ``T`` (see 4), the least-squares multipliers ``nu`` of ``g + B' nu = r`` split the
   gradient ``g`` of the reference piece into the reduced gradient ``r = P g`` (``P`` the projector
   onto ``null B``) and normal parts. Moving off the kink into ``phi_k > 0`` changes ``L`` at the
   rate ``-nu_k``, into ``phi_k < 0`` at ``nu_k + gamma_k`` (per unit of ``phi_k``). A held kink is
   consistent with a minimum iff both are ``>= 0``, i.e. its multiplier ``lambda_k = 1 + nu_k /
   gamma_k`` lies in ``[0, 1]`` (for a loss tie: the simplex weights ``pi``); a concave kink
   (``gamma_k < 0``) never is. As in an active-set QP, convex kinks are **released** (to the side
   that descends) once their face is solved (reduced gradient ~0, so the multipliers are the
   face's KKT multipliers) -- or earlier, when a multiplier's violation is ten times the face's
   reduced gradient (the dual test of active-set methods: on a face whose loss keeps falling along a
   valley, as in deep nets trained without weight decay, the face is never solved and the kink would
   be held for ever) -- concave ones at once. When the rows are dependent (LIKQ fails, e.g.
   samples with identical outputs) the least-norm multipliers are not the only ones: a
   box-constrained least squares (the checker's Clarke QP in the multipliers' space) decides, and
   its residual, when it is not zero, is the steepest descent along which the kinks are released.
   A unit kink feeding another held kink of the same sample is held with it (nested kinks: its
   multiplier is judged by the checker, not here; judging a unit kink that feeds held unit kinks by
   the Lagrangian's adjoint, the interval the nearby prover uses, was tried: on the trained family
   the deep nets' polish then converged further, to points with units collapsed by weight decay
   that no test decides, and two verified saddles were lost, ``bc_logistic_deep_sgd`` and
   ``digits_ce_deep_sgd``, with none gained). A unit whose weights collapse to ~0 (weight
   decay) is set to exactly 0 and frozen (whether it should escape is the checker's question). A
   held loss tie that another piece of its group has overtaken beyond rounding is no kink of the
   loss any more and is released (:func:`~.pieces.overtaken_ties`); pieces that rise above a held
   tie in one step join it together (:func:`~.steps.crossed`).
2. **Newton–KKT step on M_H.** The step solves ``min r.x + 1/2 x'(H_lag + rho I)x`` over
   ``null B`` within a trust region, where ``H_lag`` is the Hessian of the Lagrangian
   ``L_ref + nu' phi_H`` (the curvature of deep switching functions enters through adjoint
   injections, :func:`certify.tangent.hessian_vector_product`). It is solved matrix-free by
   projected conjugate gradients with Hessian-vector products (Steihaug–Toint: negative curvature
   goes to the trust-region boundary), so no ``p x p`` matrix is ever formed; ``P`` needs only the
   sparse rows ``B`` and a factorisation of ``B B'`` (dense per connected block, pivoted Cholesky
   so dependent kink rows are detected; a sparse LU for a block too large to factor densely). The
   Levenberg shift ``rho`` is tiny (``1e-10 ||H||``); the trust region does the damping.
3. **Blocking kinks and the line search on L.** Along the step, convex kinks that change side
   are *blocking constraints* (as in an active-set QP; across a concave kink the loss is below the
   model, so those cross freely): the trial point ``theta + t x`` is pulled back onto
   ``M_{H + crossed}`` by Gauss–Newton on ``phi = 0`` (exact in one step for first-layer kinks, a
   second-order correction for deep ones; crossed kinks whose rows depend on the held ones cross
   unheld) and accepted only if the true loss ``L`` goes down; ``t`` is halved otherwise, and a kink
   the step would cross at once is held before any step (a degenerate active-set step). So the
   loss never increases, and every trained minimum on kinks is reached on its kink manifold
   instead of being zig-zagged across. A step across more than ``MAX_ADD`` convex kinks is first
   tried whole and unheld, and taken when ``L`` falls by half the model's prediction
   (``CROSS_RATIO``): far from a minimum the kinks a descent crosses are mostly not where it
   ends, and holding each one made the rounds of deep nets slower and slower (every held kink is a
   row of every projection). The Gauss–Newton pull-back keeps a factorisation of ``B B'`` while it
   contracts (the chord method), since factoring dominates with thousands of held kinks. Once the
   predicted decrease is below the rounding error of ``L`` (the last Newton steps), a step is kept
   when it lowers the reduced gradient instead.
4. **Moving no further than needed.** Steps stay orthogonal to the exact symmetries (the rescaling
   orbits of hidden units, the coordinates of dead units, the bias translations of units with one
   slope on all samples, :mod:`certify.secondorder.symmetry`; none with weight decay), a trust
   region and a small proximal shift ``rho`` keep them short along flat directions, and at the end
   the **rescaling representative nearest the checkpoint** is chosen (per hidden unit ``c > 0``
   minimising ``||c u - u_0||^2 + ||v / c - v_0||^2`` over its incoming ``u`` and outgoing ``v``
   weights, coordinate descent over layers; exact without weight decay).

5. **Large networks first go downhill smoothly.** From :data:`~.limits.LARGE_P` parameters on, the
   polish starts with L-BFGS on the loss taken as smooth (:mod:`.smooth`) until it stalls at the
   kinks (or uses 40% of the budget), and the active-set method starts from there: far from a
   minimum it crossed thousands of kinks a few at a time (holding and releasing them), which L-BFGS
   covers in seconds. The projector also forms ``B B'`` densely for mostly-filled rows there.

6. **On request, a stalled polish goes on from a smoothing homotopy** (``smoothing=True``, the
   CLI's ``--smoothing``; not the default, :func:`.method.polish_point` says why). When the active-set method stops short of
   a KKT point for a reason other than the clock (hold/release cycles, a failed line search), the
   kinks are smoothed (softplus activations, log-sum-exp loss pieces, ``tau`` from 1e-2 down to 1e-6
   of each layer's scale) and L-BFGS minimises each smoothed loss in turn (:mod:`.homotopy`, once,
   at most 30% of the budget); the active-set method restarts from the lowest true loss it reached.
   Smoothing methods' limit points are Clarke stationary (Chen 2012); the active-set method then
   identifies the kinks and converges to the KKT point the certificates need.

Under weight decay the first-layer weights of input features that are 0 on every sample (digits'
border pixels) are set to exactly 0 at the start and at the end: the loss is ``lambda/2 w^2`` in each,
and Newton steps with a Levenberg shift only shrink them (to 1e-22, or a subnormal), which the exact
first-order test sees as a slope ``lambda w != 0`` (:func:`.pieces.zero_feature_weights`).

It stops when the held kinks are zero to a few ulps of their terms (``|W||x| + |b|``), the reduced
gradient is zero to rounding relative to the size of its terms (``|W|``, ``|x|`` back-propagated),
and every held multiplier lies in its interval (or the loss is zero to rounding); or when the
budget (``deadline``) runs out, the loss and the reduced gradient have stalled over the last rounds
that moved (a round that only held the kinks blocking its step at once is the working set growing,
not a stall: :func:`.method._stalled`), the line search fails, the point has moved further than the
checkpoint's norm while the loss still falls (no minimum near it) or the rounds are used up,
returning the best point so far with the reason. It does not move at all when no local minimum has
a lower loss (cross-entropy or logistic without weight decay below ``log(2)/n``: every lower point
classifies every sample correctly, where scaling the outputs lowers the loss; :func:`.method.
no_minimum_below`), and a margin classifier (hinge, multiclass hinge) polished to a loss zero to
rounding is moved onto the exact global minimum next to it (:func:`.rescale.clear_margins`).
Why this method: near a minimum with interior multipliers (strict complementarity, LIKQ) the held
set is identified after finitely many changes and the method is Newton's method on ``M_H``
(quadratic convergence), which is exactly what the certificates downstream need — an accurate,
nondegenerate KKT point with kinks held to rounding; L-BFGS or subgradient methods give neither
(L-BFGS serves only to get near, step 5).

Modules: :mod:`.pieces` (the held set, one point's reference piece, rows and gauge),
:mod:`.projector` (solves with ``B B'``), :mod:`.multipliers` (sides, releases, stationarity),
:mod:`.steps` (Lagrangian HVPs, projected CG, blocking kinks, restoration, line search),
:mod:`.method` (the loop), :mod:`.smooth` (the L-BFGS first phase), :mod:`.homotopy` (the smoothing
homotopy after a stall), :mod:`.result`, :mod:`.rescale`,
:mod:`.limits` (tolerances).
Nothing here imports the driver or calls ``check``.
"""

from .limits import DEFAULT_TOL_NEAR
from .method import polish, polish_point
from .rescale import nearest_rescaling
from .result import PolishResult

__all__ = ["DEFAULT_TOL_NEAR", "PolishResult", "nearest_rescaling", "polish", "polish_point"]
