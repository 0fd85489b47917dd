r"""The transform contract every bijection in pushforward follows.

This module is the one place where the direction and sign conventions are written down.

Direction
---------
A :class:`Transform` :math:`f` maps **data to latent** (the *normalizing* direction):

.. math:: z = f(x), \qquad \log p_X(x) = \log p_Z(f(x)) + \log \left| \det \frac{\partial f}{\partial x}(x) \right| .

* ``forward(x, context=None) -> (z, ladj)`` with ``ladj = log|det ∂z/∂x|``.
* ``inverse(z, context=None) -> (x, ladj)`` with ``ladj = log|det ∂x/∂z|`` — the inverse's *own*
  log-determinant, so ``inverse(forward(x)[0])[1] == -forward(x)[1]``.

These two fused methods are the only abstract methods; everything else (:meth:`Transform.map`,
:meth:`Transform.unmap`, :meth:`Transform.ladj`, :attr:`Transform.inv`) is derived from them.

Shapes
------
Inputs have shape ``(batch, *event_shape)``: exactly one batch dimension followed by the transform's
declared :attr:`Transform.event_shape`; outputs have shape ``(batch, *latent_shape)``, where
:attr:`Transform.latent_shape` equals ``event_shape`` unless the transform reshapes (e.g. a squeeze)
while keeping the number of scalars. ``ladj`` has shape ``(batch,)``. Higher batch ranks are
handled by :class:`pushforward.Flow`, which flattens them before calling the transform.

Context
-------
A conditional transform (``context_features > 0``) takes a ``context`` tensor of shape
``(batch, context_features)`` with the same batch size as ``x``. Transforms without a conditioner
accept and ignore ``context``, so any chain can be conditioned as a whole.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..checks import check_finite, check_tensor, module_dtype_device, validation_enabled
from ..inversion import check_round_trip
from ..registry import Registered

__all__ = ["Compose", "Inverse", "Transform"]


def as_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    """An event shape given as an int or a sequence of ints, as a tuple."""
    if isinstance(shape, int):
        return (shape,)
    return tuple(int(s) for s in shape)


_INVERSE_DEPTH = threading.local()
_CALL_DEPTH = threading.local()  # nested transform calls: values are checked by the outermost
_ROWWISE = threading.local()  # set by rowwise_outputs()


def _shape_checked(
    method: Callable[..., tuple[Tensor, Tensor]], attribute: str
) -> Callable[..., tuple[Tensor, Tensor]]:
    """``method`` preceded by :func:`check_shapes` against ``getattr(self, attribute)``.

    An ``inverse`` (``attribute == "latent_shape"``) of a transform without a closed-form inverse is also
    checked in the space its caller sees: the outermost such call maps its result back with ``forward`` and
    raises :class:`~pushforward.inversion.ConvergenceError` unless it lands on the input
    (:func:`~pushforward.inversion.check_round_trip`); nested inverses leave the check to the outermost."""
    is_inverse = attribute == "latent_shape"

    @functools.wraps(method)
    def checked(self: Transform, x: Tensor, context: Tensor | None = None, *args: object, **kwargs: object):
        if torch.compiler.is_compiling():  # traced code: shapes only (value checks are data dependent)
            check_shapes(self, x, context, getattr(self, attribute), values=False)
            return method(self, x, context, *args, **kwargs)
        outermost = not getattr(_CALL_DEPTH, "n", 0)
        rowwise = rowwise_outputs_active()  # Flow.log_prob: it checked the values and handles the outputs
        validate = validation_enabled()
        if validate:
            check_shapes(self, x, context, getattr(self, attribute), values=outermost and not rowwise)
        _CALL_DEPTH.n = getattr(_CALL_DEPTH, "n", 0) + 1
        try:
            if not is_inverse or getattr(_INVERSE_DEPTH, "n", 0) or not _needs_round_trip_check(self):
                out = method(self, x, context, *args, **kwargs)
            else:
                _INVERSE_DEPTH.n = 1
                try:
                    out = method(self, x, context, *args, **kwargs)
                    check_round_trip(
                        lambda t: self.forward(t, context)[0],
                        out[0],
                        x,
                        name=f"{type(self).__name__}.inverse",
                    )
                finally:
                    _INVERSE_DEPTH.n = 0
        finally:
            _CALL_DEPTH.n -= 1
        if outermost and validate and not rowwise:
            _check_outputs(self, out, "inverse" if is_inverse else "forward")
        return out

    checked.checks_shapes = True  # type: ignore[attr-defined]
    return checked


def _check_outputs(t: Transform, out: tuple[Tensor, Tensor], direction: str) -> None:
    """A finite input must not give a non-finite output (float overflow): ``ValueError``, never a silent
    inf or NaN. :meth:`pushforward.Flow.log_prob` handles such rows itself (see :func:`rowwise_outputs`)."""
    for value, what in zip(out[:2], ("output", "log-determinant")):
        if (
            isinstance(value, Tensor)
            and value.device.type != "meta"
            and not bool(torch.isfinite(value).all())
        ):
            bad = ~torch.isfinite(value.detach())
            rows = int(bad.reshape(bad.shape[0], -1).any(1).sum()) if bad.dim() else 1
            raise ValueError(
                f"{type(t).__name__}.{direction} gave a non-finite {what} for {rows} of {value.shape[0]} rows "
                f"of finite input: the values overflow {value.dtype}; use float64, or inputs nearer the data"
            )


@contextlib.contextmanager
def rowwise_outputs() -> Iterator[None]:
    """Within this block, the outermost transform call neither checks its input's values (the caller did) nor
    raises on non-finite outputs: the caller handles them row by row (``Flow.log_prob`` rescores such rows in
    float64 and reports the rest as -inf)."""
    before = getattr(_ROWWISE, "on", False)
    _ROWWISE.on = True
    try:
        yield
    finally:
        _ROWWISE.on = before


def rowwise_outputs_active() -> bool:
    """Whether the caller handles non-finite output rows itself (inside :func:`rowwise_outputs`): a transform
    may then give a failing row NaN instead of raising for the whole batch."""
    return bool(getattr(_ROWWISE, "on", False))


def _needs_round_trip_check(t: Transform) -> bool:
    """A numerical inverse is checked unless a part of it opts out (``round_trip_check = False``: an ODE
    solve, whose accuracy is its solver's error control)."""
    return not t.analytic_inverse and all(getattr(m, "round_trip_check", True) for m in t.modules())


class Transform(Registered, nn.Module):
    r"""Abstract base class of all bijections: ``forward`` maps data → latent.

    Subclasses implement the two fused methods :meth:`forward` and :meth:`inverse`, each returning
    the mapped tensor and the log-absolute-determinant of *its own* Jacobian (see the module
    documentation for the full contract).

    Attributes:
        event_shape: The shape of one sample (``(D,)`` for vectors, ``(C, H, W)`` for images).
        latent_shape: The shape of one output of ``forward`` (same number of scalars); defaults to
            ``event_shape``.
        context_features: Size of the conditioning vector; ``0`` for unconditional transforms.
        analytic_inverse: ``True`` when :meth:`inverse` is closed form; ``False`` when it solves
            numerically (bisection, Newton, fixed point, ODE).

    Example:
        >>> import torch
        >>> from pushforward.transforms import Shift
        >>> t = Shift(3)
        >>> z, ladj = t(torch.randn(8, 3))
        >>> x, ladj_inv = t.inverse(z)
    """

    analytic_inverse: bool = True
    #: ``True`` for layers whose latent has a different number of scalars than the data (the dimension-changing
    #: surjections of :mod:`pushforward.transforms.surjective`); lifts the equal-size rule of ``__init__``.
    changes_size: bool = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Enforce the contract's shapes once, here: every ``forward`` a subclass defines first checks
        ``(batch, *event_shape)`` and the context, every ``inverse`` ``(batch, *latent_shape)``
        (:func:`check_shapes`; skipped while :func:`pushforward.set_validation` is off)."""
        super().__init_subclass__(**kwargs)
        for name, attribute in (("forward", "event_shape"), ("inverse", "latent_shape")):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "checks_shapes", False):
                setattr(cls, name, _shape_checked(method, attribute))

    def __init__(
        self,
        event_shape: int | Sequence[int],
        context_features: int = 0,
        latent_shape: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.event_shape: tuple[int, ...] = as_shape(event_shape)
        self.latent_shape: tuple[int, ...] = (
            self.event_shape if latent_shape is None else as_shape(latent_shape)
        )
        if not self.changes_size and math.prod(self.latent_shape) != math.prod(self.event_shape):
            raise ValueError(f"latent shape {self.latent_shape} has a different size than {self.event_shape}")
        self.context_features = int(context_features)

    # ------------------------------------------------------------------ contract
    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data → latent. Returns ``(z, log|det ∂z/∂x|)`` with the ladj of shape ``(batch,)``."""
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Latent → data. Returns ``(x, log|det ∂x/∂z|)`` with the ladj of shape ``(batch,)``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ derived
    @property
    def features(self) -> int:
        """Number of scalar dimensions of one event (product of :attr:`event_shape`)."""
        return math.prod(self.event_shape)

    def map(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``forward`` without the log-determinant."""
        return self(x, context)[0]

    def unmap(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``inverse`` without the log-determinant."""
        return self.inverse(z, context)[0]

    def ladj(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``log|det ∂f/∂x|`` at ``x``."""
        return self(x, context)[1]

    @property
    def inv(self) -> Transform:
        """This transform with its directions swapped (an :class:`Inverse` wrapper)."""
        return Inverse(self)

    def extra_repr(self) -> str:
        ctx = f", context={self.context_features}" if self.context_features else ""
        return f"event_shape={self.event_shape}{ctx}"


class Inverse(Transform):
    r"""The inverse of a transform: ``Inverse(t).forward == t.inverse`` and vice versa.

    This is how sampling-direction flows are expressed: an IAF is ``Inverse(MaskedAutoregressive(...))``,
    whose density is sequential and whose sampling is one pass.

    Example:
        >>> from pushforward.transforms import Sigmoid
        >>> t = Inverse(Sigmoid(2))  # a logit map
    """

    def __init__(self, transform: Transform) -> None:
        self.changes_size = transform.changes_size
        super().__init__(transform.latent_shape, transform.context_features, transform.event_shape)
        self.transform = transform
        self.analytic_inverse = transform.analytic_inverse

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(z, context)

    @property
    def inv(self) -> Transform:
        return self.transform

    def extra_repr(self) -> str:
        return ""


class Compose(Transform):
    r"""The composition :math:`f = f_K \circ \dots \circ f_1` of transforms, applied in list order.

    .. math:: \log\left|\det \frac{\partial f}{\partial x}\right| = \sum_{k=1}^K
        \log\left|\det \frac{\partial f_k}{\partial h_{k-1}}\right|, \qquad h_0 = x,\ h_K = z,

    the chain rule for determinants (Dinh et al., "Density estimation using Real NVP", 2017, eq. 3.1).
    ``inverse`` runs the inverses in reverse order.

    Example:
        >>> import torch
        >>> from pushforward.transforms import Scale, Shift
        >>> f = Compose([Shift(2), Scale(2)])
        >>> z, ladj = f(torch.randn(5, 2))
    """

    def __init__(self, transforms: Iterable[Transform]) -> None:
        transforms = list(transforms)
        if not transforms:
            raise ValueError("Compose needs at least one transform")
        for t in transforms:
            if not isinstance(t, Transform):
                raise TypeError(f"Compose takes Transform instances, got {type(t).__name__}")
        for a, b in zip(transforms[:-1], transforms[1:]):
            if a.latent_shape != b.event_shape:
                raise ValueError(
                    f"cannot compose: {type(a).__name__} outputs shape {a.latent_shape} "
                    f"but {type(b).__name__} expects {b.event_shape}"
                )
        self.changes_size = any(t.changes_size for t in transforms)
        super().__init__(
            transforms[0].event_shape,
            max(t.context_features for t in transforms),
            transforms[-1].latent_shape,
        )
        self.transforms = nn.ModuleList(transforms)
        self.analytic_inverse = all(t.analytic_inverse for t in transforms)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ladj: Tensor | None = None
        for t in self.transforms:
            x, l = t(x, context)
            ladj = l if ladj is None else ladj + l
        return x, ladj  # type: ignore[return-value]

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ladj: Tensor | None = None
        for t in reversed(self.transforms):
            z, l = t.inverse(z, context)
            ladj = l if ladj is None else ladj + l
        return z, ladj  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Transform:
        return self.transforms[i]  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return ""


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum every dimension but the first: the usual reduction of elementwise log-derivatives."""
    return x.reshape(x.shape[0], -1).sum(-1)


def check_shapes(
    t: Transform,
    x: Tensor,
    context: Tensor | None = None,
    shape: tuple[int, ...] | None = None,
    *,
    values: bool = True,
) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(batch, *shape)`` and ``context`` fits ``t``.

    ``shape`` defaults to ``t.event_shape`` (the input of ``forward``; ``inverse`` takes
    ``t.latent_shape``). Every subclass's ``forward`` and ``inverse`` run this check first (see
    :meth:`Transform.__init_subclass__`), so no transform writes its own. With ``values`` (the outermost
    call of a chain; nested calls see what it checked) ``x`` and ``context`` must also be floating, of the
    transform's dtype, on its device (``TypeError``/``ValueError`` naming both), non-empty and finite
    (:func:`~pushforward.checks.check_tensor`, :func:`~pushforward.checks.check_finite`).
    """
    shape = t.event_shape if shape is None else shape
    name = type(t).__name__
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} expects a torch.Tensor input, got {type(x).__name__}")
    if values:
        dtype, device = module_dtype_device(t)
        check_tensor(x, name=f"{name} input", dtype=dtype, device=device)
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        expected = ", ".join(map(str, ("batch", *shape)))
        raise ValueError(f"{name} expects input of shape ({expected}), got {tuple(x.shape)}")
    if t.context_features:
        if context is None:
            raise ValueError(
                f"this transform is conditional: pass a context of {t.context_features} features"
            )
        if not isinstance(context, Tensor):
            raise TypeError(f"context must be a torch.Tensor, got {type(context).__name__}")
        if context.dim() >= 1 and context.shape[0] != x.shape[0]:
            raise ValueError(f"context has batch size {context.shape[0]} but the input has {x.shape[0]}")
        if tuple(context.shape) != (x.shape[0], t.context_features):
            raise ValueError(
                f"context has shape {tuple(context.shape)}; expected ({x.shape[0]}, {t.context_features})"
            )
        if values:
            check_tensor(context, name="context", dtype=dtype, device=device)
            check_finite(context, "context")
    if values:
        if x.shape[0] == 0:
            raise ValueError(f"{name} input is empty (shape {tuple(x.shape)}); pass at least one row")
        check_finite(x, f"{name} input")


def broadcast_context(context: Tensor | None, batch: int) -> Tensor | None:
    """Validate that ``context`` has the batch size ``batch`` (used by conditional transforms)."""
    if context is not None and context.shape[0] != batch:
        raise ValueError(f"context has batch size {context.shape[0]} but the input has {batch}")
    return context


def zero_like_batch(x: Tensor) -> Tensor:
    """A ``(batch,)`` zero log-determinant in ``x``'s dtype and device."""
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
