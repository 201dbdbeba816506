"""Recurrent layers: RNN (tanh or relu), LSTM and GRU over sequences (num_layers, batch_first,
bidirectional, dropout between layers, initial states) and RNNCell, LSTMCell, GRUCell, with
PyTorch's parameter names (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, the
``_reverse`` ones), shapes, gate order and initialization U(-1/sqrt(H), 1/sqrt(H)).

A time step is one matrix product h W_hh^T and one fused op (the LSTM and GRU gate
arithmetic: :mod:`chainrule.nn.fused.rnn`); the input projections of all steps are one
matrix product per layer and direction, before the loop.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops as P
from ..tensor import Tensor, as_dtype, float32
from . import functional as F
from . import fused, init
from .module import Module, module_error
from .parameter import Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _linear(x, w, b=None):
    return fused.LinearOp.apply(x, w) if b is None else fused.LinearOp.apply(x, w, b)


def _step(mode, xg, h, c, w_hh, b_hh, w_hr=None):
    """One time step: the new (h, c) from the input's projection xg (with b_ih, and b_hh for
    the RNN and LSTM) and the state (h projected by ``w_hr`` for an LSTM with proj_size)."""
    if mode == "GRU":
        return fused.GRUCellOp.apply(xg, _linear(h, w_hh, b_hh), h), None
    pre = xg + _linear(h, w_hh)
    if mode == "LSTM":
        H = c.shape[-1]
        out = fused.LSTMCellOp.apply(pre, c)
        h = out[:, :H]
        return (h if w_hr is None else _linear(h, w_hr)), out[:, H:]
    return (P.tanh(pre) if mode == "RNN_TANH" else P.relu(pre)), None


class RNNBase(Module):
    """The shared body of RNN, LSTM and GRU (see the module docstring)."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0,
                 device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        if proj_size < 0 or (proj_size and mode != "LSTM"):
            raise ValueError(f"{name}: proj_size must be 0 (or, for an LSTM, positive), got "
                             f"{proj_size}")
        if proj_size >= hidden_size > 0:
            raise ValueError(f"{name}: proj_size ({proj_size}) must be smaller than "
                             f"hidden_size ({hidden_size})")
        if not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        if hidden_size <= 0 or num_layers <= 0:
            raise ValueError(f"{name}: hidden_size and num_layers must be positive, got "
                             f"{hidden_size} and {num_layers}")
        self.mode, self.input_size, self.hidden_size = mode, int(input_size), int(hidden_size)
        self.num_layers, self.bias, self.batch_first = int(num_layers), bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bidirectional
        self.proj_size = int(proj_size)
        dt = as_dtype(dtype) or float32
        G = _GATES[mode] * self.hidden_size
        D = 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(self.num_layers):
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                R = self.proj_size or self.hidden_size
                isz = self.input_size if layer == 0 else R * D
                shapes = [("weight_ih", (G, isz)), ("weight_hh", (G, R))]
                if bias:
                    shapes += [("bias_ih", (G,)), ("bias_hh", (G,))]
                if self.proj_size:
                    shapes += [("weight_hr", (self.proj_size, self.hidden_size))]
                for n, shape in shapes:
                    setattr(self, n + sfx, Parameter(np.empty(shape, dt)))
                    self._flat_weights_names.append(n + sfx)
        self.reset_parameters()
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for n in self._flat_weights_names:
            init.uniform_(getattr(self, n), -stdv, stdv)

    def _weights(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        w_ih, w_hh = getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx)
        if not self.bias:
            return w_ih, w_hh, None, None
        return w_ih, w_hh, getattr(self, "bias_ih" + sfx), getattr(self, "bias_hh" + sfx)

    def _check_input(self, x):
        if not isinstance(x, Tensor):
            raise module_error(self, TypeError, f"input of type {type(x).__name__} received, "
                               "expected a Tensor (packed sequences are not supported: pad the "
                               "batch and pass a Tensor)")
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            lay = "(N, L, H_in)" if self.batch_first else "(L, N, H_in)"
            raise module_error(self, ValueError, f"input of shape {tuple(x.shape)} received, "
                               f"expected {lay} or (L, H_in) with H_in = input_size = "
                               f"{self.input_size}")
        if x.dtype != self.weight_ih_l0.dtype:
            raise module_error(self, TypeError, f"input of dtype {x.dtype} received, expected "
                               f"{self.weight_ih_l0.dtype} (the layer's parameters' dtype)")

    def _state(self, h, B, what, unbatched):
        D = 2 if self.bidirectional else 1
        size = self.proj_size if self.proj_size and what != "c_0" else self.hidden_size
        shape = (self.num_layers * D, B, size)
        if h is None:
            return Tensor._wrap(self.weight_ih_l0.xp.zeros(shape, self.weight_ih_l0._data.dtype))
        if not isinstance(h, Tensor):
            raise module_error(self, TypeError, f"{what} of type {type(h).__name__} received, "
                               "expected a Tensor")
        if unbatched:
            h = h.unsqueeze(1)
        if tuple(h.shape) != shape:
            raise module_error(self, ValueError, f"{what} of shape {tuple(h.shape)} received, "
                               f"expected {shape} (num_layers * num_directions, batch, "
                               "hidden_size)")
        return h

    def forward(self, input, hx=None):
        self._check_input(input)
        mode = self.mode
        unbatched = input.ndim == 2
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first
                                                  else input)
        T, B = x.shape[0], x.shape[1]
        if mode == "LSTM":
            if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise module_error(self, TypeError, "hx must be a pair (h_0, c_0) for an LSTM")
            h0 = self._state(hx[0] if hx is not None else None, B, "h_0", unbatched)
            c0 = self._state(hx[1] if hx is not None else None, B, "c_0", unbatched)
        else:
            h0 = self._state(hx, B, "hx", unbatched)
            c0 = None
        D = 2 if self.bidirectional else 1
        hn, cn = [], []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                x = F.dropout(x, self.dropout, True)
            outs = []
            for d in range(D):
                w_ih, w_hh, b_ih, b_hh = self._weights(layer, d)
                w_hr = getattr(self, "weight_hr" + (f"_l{layer}" + ("_reverse" if d else "")),
                               None) if self.proj_size else None
                if mode == "GRU" or b_ih is None:
                    xg = _linear(x.reshape(T * B, -1), w_ih, b_ih)
                else:
                    xg = _linear(x.reshape(T * B, -1), w_ih, b_ih + b_hh)
                steps = P.unbind(xg.reshape(T, B, -1), 0)
                k = layer * D + d
                h = h0[k]
                c = c0[k] if c0 is not None else None
                hs = [None] * T
                order = range(T - 1, -1, -1) if d else range(T)
                for t in order:
                    h, c = _step(mode, steps[t], h, c, w_hh, b_hh if mode == "GRU" else None,
                                 w_hr)
                    hs[t] = h
                outs.append(P.stack(hs, 0))
                hn.append(h)
                if c is not None:
                    cn.append(c)
            x = outs[0] if D == 1 else P.cat(outs, 2)
        out = x
        h_n = P.stack(hn, 0)
        if unbatched:
            out, h_n = out.squeeze(1), h_n.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if mode == "LSTM":
            c_n = P.stack(cn, 0)
            return out, (h_n, c_n.squeeze(1) if unbatched else c_n)
        return out, h_n

    def flatten_parameters(self):
        """Nothing to do (PyTorch's cuDNN weight layout); kept for its scripts."""

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got "
                             f"{nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)


class LSTM(RNNBase):
    """Long short-term memory; forward returns (output, (h_n, c_n))."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit; forward returns (output, h_n)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)


class RNNCellBase(Module):
    _mode = "RNN_TANH"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bias
        dt = as_dtype(dtype) or float32
        G = _GATES[self._mode] * self.hidden_size
        self.weight_ih = Parameter(np.empty((G, self.input_size), dt))
        self.weight_hh = Parameter(np.empty((G, self.hidden_size), dt))
        if bias:
            self.bias_ih = Parameter(np.empty(G, dt))
            self.bias_hh = Parameter(np.empty(G, dt))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -stdv, stdv)

    def _prepare(self, x, hx):
        if not isinstance(x, Tensor) or x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise module_error(self, ValueError, f"input {got} received, expected (N, "
                               f"{self.input_size}) or ({self.input_size},)")
        unbatched = x.ndim == 1
        if unbatched:
            x = x.unsqueeze(0)
        B = x.shape[0]

        def state(h):
            if h is None:
                return Tensor._wrap(x.xp.zeros((B, self.hidden_size), x._data.dtype))
            h = h.unsqueeze(0) if unbatched else h
            if tuple(h.shape) != (B, self.hidden_size):
                raise module_error(self, ValueError, f"hidden state of shape "
                                   f"{tuple(h.shape)} received, expected "
                                   f"{(B, self.hidden_size)}")
            return h
        return x, state, unbatched

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(RNNCellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got "
                             f"{nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self._mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        x, state, unbatched = self._prepare(input, hx)
        h = state(hx)
        pre = _linear(x, self.weight_ih, self.bias_ih) + _linear(h, self.weight_hh, self.bias_hh)
        h = P.tanh(pre) if self._mode == "RNN_TANH" else P.relu(pre)
        return h.squeeze(0) if unbatched else h


class LSTMCell(RNNCellBase):
    """One LSTM step; forward(input, (h, c)) returns (h', c')."""

    _mode = "LSTM"

    def forward(self, input, hx=None):
        x, state, unbatched = self._prepare(input, hx)
        h, c = (state(None), state(None)) if hx is None else (state(hx[0]), state(hx[1]))
        H = self.hidden_size
        pre = _linear(x, self.weight_ih, self.bias_ih) + _linear(h, self.weight_hh, self.bias_hh)
        out = fused.LSTMCellOp.apply(pre, c)
        h, c = out[:, :H], out[:, H:]
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)


class GRUCell(RNNCellBase):
    """One GRU step; forward(input, h) returns h'."""

    _mode = "GRU"

    def forward(self, input, hx=None):
        x, state, unbatched = self._prepare(input, hx)
        h = state(hx)
        h = fused.GRUCellOp.apply(_linear(x, self.weight_ih, self.bias_ih),
                                  _linear(h, self.weight_hh, self.bias_hh), h)
        return h.squeeze(0) if unbatched else h
