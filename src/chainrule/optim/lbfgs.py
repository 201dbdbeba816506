"""L-BFGS (Nocedal 1980; Liu & Nocedal 1989), with PyTorch's semantics: one ``step(closure)``
runs up to ``max_iter`` quasi-Newton iterations, each re-evaluating the loss through the
closure, with a fixed step or a strong-Wolfe line search."""

from __future__ import annotations

from .. import backend
from ..autograd import enable_grad
from ..tensor import Tensor
from .optimizer import Optimizer


def _float(x) -> float:
    return float(x.item()) if hasattr(x, "item") else float(x)


def _array(x):
    return x._data if isinstance(x, Tensor) else x


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, kept
    inside ``bounds`` (by default the interval between x1 and x2); the bounds' midpoint when
    the cubic has no minimum."""
    if bounds is not None:
        lo, hi = bounds
    else:
        lo, hi = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square >= 0:
        d2 = d2_square**0.5
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, lo), hi)
    return (lo + hi) / 2.0


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9,
                  max_ls=25):
    """A step length t along d satisfying the strong Wolfe conditions (sufficient decrease
    ``c1``, curvature ``c2``): a bracketing phase, then a zoom by cubic interpolation
    (Nocedal & Wright, algorithms 3.5 and 3.6). ``obj_func(x, t, d)`` gives the loss and flat
    gradient at x + t d. Returns (loss, flat gradient, t, evaluations)."""
    xp = backend.array_module(d)
    d_norm = float(xp.abs(d).max())
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = float(g_new @ d)

    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    bracket_gtd = None
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        # extrapolate: the cubic's minimum, between just past t and ten times t
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                               bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1

    if ls_iter == max_ls:  # no bracket found: the zoom below does not run
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    # zoom until the bracket holds a point that satisfies the conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                               bracket[1], bracket_f[1], bracket_gtd[1])
        # a point too near an end of the bracket makes little progress: move it inwards
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new

    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


class LBFGS(Optimizer):
    r"""L-BFGS, with PyTorch's semantics and defaults (lr=1, max_iter=20,
    max_eval=max_iter * 5 // 4, tolerance_grad=1e-7, tolerance_change=1e-9, history_size=100,
    line_search_fn=None).

    ``step(closure)`` needs the closure (it zeroes the gradients, computes the loss, calls
    backward and returns the loss) and returns the loss of its first call. All parameters
    are treated as one flat vector x with gradient g. Each iteration:

    * direction d = -H g by the two-loop recursion over the last ``history_size`` pairs
      (s = x_{k+1} - x_k, y = g_{k+1} - g_k; a pair is kept only when y.s > 1e-10), with the
      initial H = (y.s / y.y) I from the newest pair (d = -g on the very first iteration);
    * step length t = lr (the first iteration ever: lr min(1, 1 / |g|_1)), or the strong-Wolfe
      line search started there when ``line_search_fn="strong_wolfe"`` (c1 = 1e-4, c2 = 0.9,
      allowed the evaluations left of ``max_eval`` in this step);
    * x <- x + t d, then stop when max_iter or max_eval is reached, when |g|_max <=
      tolerance_grad, when |t d|_max <= tolerance_change or the loss changed by less than
      tolerance_change, or (before stepping) when the directional derivative g.d >
      -tolerance_change.

    Only one parameter group is supported (as in PyTorch). The state (direction, history,
    counters) lives under the first parameter, as PyTorch keeps it, so state dicts have the
    same keys: ``func_evals``, ``n_iter``, ``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``,
    ``H_diag``, ``prev_flat_grad``, ``prev_loss`` and ``al``.
    """

    def __init__(self, params, lr=1.0, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                        tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                        history_size=history_size, line_search_fn=line_search_fn)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups); "
                             f"got {len(self.param_groups)} groups, pass one list of tensors")
        self._params = self.param_groups[0]["params"]

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups); "
                             "it optimizes one group only")
        super().add_param_group(param_group)

    def _check_group(self, group):
        super()._check_group(group)
        for key in ("max_iter", "max_eval", "history_size"):
            v = group[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"LBFGS: invalid {key}={v!r}; expected an integer >= 1")
        if group["line_search_fn"] not in (None, "strong_wolfe"):
            raise ValueError(f"LBFGS: line_search_fn={group['line_search_fn']!r} is not "
                             "supported; expected None or 'strong_wolfe'")

    # -- the flat vector of all parameters ----------------------------------------------------
    def _gather_flat_grad(self):
        xp = backend.array_module(self._params[0]._data)
        return xp.concatenate([
            (p.grad._data if p.grad is not None else xp.zeros(p._data.shape, p._data.dtype))
            .reshape(-1) for p in self._params])

    def _add_grad(self, step_size, update):
        offset = 0
        for p in self._params:
            n = p._data.size
            p._data += step_size * update[offset:offset + n].reshape(p._data.shape)
            p._bump()
            offset += n

    def _clone_param(self):
        return [p._data.copy() for p in self._params]

    def _set_param(self, arrays):
        for p, a in zip(self._params, arrays):
            p._data[...] = a
            p._bump()

    def _directional_evaluate(self, closure, x, t, d):
        self._add_grad(t, d)
        with enable_grad():
            loss = _float(closure())
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    # -- the step -----------------------------------------------------------------------------
    def step(self, closure=None):
        """Run up to ``max_iter`` iterations; returns the closure's first loss."""
        if closure is None:
            raise RuntimeError("LBFGS.step: a closure is required (a function that zeroes the "
                               "gradients, computes the loss, calls backward and returns it)")
        group = self.param_groups[0]
        lr = group["lr"]
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]

        state = self.state.setdefault(self._params[0], {})
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        with enable_grad():
            orig_loss = closure()
        loss = _float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        xp = backend.array_module(flat_grad)
        if float(xp.abs(flat_grad).max()) <= tolerance_grad:
            return orig_loss

        d = _array(state.get("d"))
        t = state.get("t")
        old_dirs = [_array(a) for a in state.get("old_dirs") or []]
        old_stps = [_array(a) for a in state.get("old_stps") or []]
        ro = [_float(r) for r in state.get("ro") or []]
        H_diag = state.get("H_diag")
        prev_flat_grad = _array(state.get("prev_flat_grad"))
        prev_loss = state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # the direction
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:  # keep the pair only when the curvature is positive
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / float(y @ y)
                num_old = len(old_dirs)
                al = state.get("al")
                if not isinstance(al, list) or len(al) < history_size:
                    al = [None] * history_size
                al = [None if a is None else _float(a) for a in al]
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = float(old_stps[i] @ q) * ro[i]
                    q -= al[i] * old_dirs[i]
                d = r = q * H_diag
                for i in range(num_old):
                    be_i = float(old_dirs[i] @ r) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]
                state["al"] = al

            prev_flat_grad = flat_grad.copy()
            prev_loss = loss

            # the step length
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(xp.abs(flat_grad).sum())) * lr
            else:
                t = lr
            gtd = float(flat_grad @ d)
            if gtd > -tolerance_change:  # not a descent direction (any more)
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = self._clone_param()

                def obj_func(x, t, d):
                    return self._directional_evaluate(closure, x, t, d)

                # the search may spend what is left of this step's evaluations
                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd,
                    max_ls=max_eval - current_evals)
                self._add_grad(t, d)
                opt_cond = float(xp.abs(flat_grad).max()) <= tolerance_grad
            else:
                self._add_grad(t, d)
                opt_cond = False
                if n_iter != max_iter:
                    # re-evaluate (the last iteration's loss is left to the next step call)
                    with enable_grad():
                        loss = _float(closure())
                    flat_grad = self._gather_flat_grad()
                    opt_cond = float(xp.abs(flat_grad).max()) <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if float(xp.abs(d * t).max()) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = Tensor._wrap(d)
        state["t"] = t
        state["old_dirs"] = [Tensor._wrap(a) for a in old_dirs]
        state["old_stps"] = [Tensor._wrap(a) for a in old_stps]
        state["ro"] = ro
        state["H_diag"] = H_diag
        state["prev_flat_grad"] = Tensor._wrap(prev_flat_grad)
        state["prev_loss"] = prev_loss
        return orig_loss

    # -- state dicts --------------------------------------------------------------------------
    def load_state_dict(self, state_dict: dict):
        """Restore options and state saved by :meth:`state_dict` (or PyTorch's LBFGS): the
        flat vectors and histories are copied and cast to the parameters' dtype."""
        if not isinstance(state_dict, dict) or "state" not in state_dict:
            raise ValueError("LBFGS.load_state_dict: expected a dict with 'state' and "
                             "'param_groups' (from Optimizer.state_dict())")
        saved = state_dict["state"]
        super().load_state_dict({**state_dict, "state": {}})
        if not saved:
            return
        if len(saved) != 1:
            raise ValueError(f"LBFGS.load_state_dict: expected the state of one parameter (the "
                             f"first, where LBFGS keeps its state), got {len(saved)}")
        (entry,) = saved.values()
        p0 = self._params[0]._data
        xp = backend.array_module(p0)
        n = sum(p._data.size for p in self._params)

        def vector(key, v):
            a = xp.array(_array(v), dtype=p0.dtype)
            if a.shape != (n,):
                raise ValueError(f"LBFGS.load_state_dict: state '{key}' has shape "
                                 f"{tuple(a.shape)} but the parameters have {n} elements")
            return Tensor._wrap(a)

        state = {}
        for key, value in entry.items():
            if key in ("d", "prev_flat_grad") and value is not None:
                state[key] = vector(key, value)
            elif key in ("old_dirs", "old_stps"):
                state[key] = [vector(key, v) for v in value]
            elif key in ("ro", "al"):
                state[key] = [None if v is None else _float(v) for v in value]
            elif hasattr(value, "item") and key in ("t", "H_diag", "prev_loss"):
                state[key] = _float(value)
            elif key in ("func_evals", "n_iter"):
                state[key] = int(_float(value))
            else:
                state[key] = value
        self.state = {self._params[0]: state}
