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

import functools
import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from ..checks import validation_enabled

__all__ = ["Compose", "Inverse", "Transform"]


def as_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    """An event shape given as an int or a sequence of ints, as a tuple."""
    if isinstance(shape, int):
        return (shape,)
    return tuple(int(s) for s in shape)


def _shape_checked(
    method: Callable[..., tuple[Tensor, Tensor]], attribute: str
) -> Callable[..., tuple[Tensor, Tensor]]:
    """``method`` preceded by :func:`check_shapes` against ``getattr(self, attribute)``."""

    @functools.wraps(method)
    def checked(self: Transform, x: Tensor, context: Tensor | None = None, *args: object, **kwargs: object):
        if validation_enabled():
            check_shapes(self, x, context, getattr(self, attribute))
        return method(self, x, context, *args, **kwargs)

    checked.checks_shapes = True  # type: ignore[attr-defined]
    return checked


class Transform(nn.Module):
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
    t: Transform, x: Tensor, context: Tensor | None = None, shape: tuple[int, ...] | None = None
) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(batch, *shape)`` and ``context`` fits ``t``.

    ``shape`` defaults to ``t.event_shape`` (the input of ``forward``; ``inverse`` takes
    ``t.latent_shape``). Every subclass's ``forward`` and ``inverse`` run this check first (see
    :meth:`Transform.__init_subclass__`), so no transform writes its own.
    """
    shape = t.event_shape if shape is None else shape
    if not isinstance(x, Tensor):
        raise TypeError(f"{type(t).__name__} expects a torch.Tensor input, got {type(x).__name__}")
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        expected = ", ".join(map(str, ("batch", *shape)))
        raise ValueError(f"{type(t).__name__} expects input of shape ({expected}), got {tuple(x.shape)}")
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


def broadcast_context(context: Tensor | None, batch: int) -> Tensor | None:
    """Validate that ``context`` has the batch size ``batch`` (used by conditional transforms)."""
    if context is not None and context.shape[0] != batch:
        raise ValueError(f"context has batch size {context.shape[0]} but the input has {batch}")
    return context


def zero_like_batch(x: Tensor) -> Tensor:
    """A ``(batch,)`` zero log-determinant in ``x``'s dtype and device."""
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
