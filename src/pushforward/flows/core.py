r"""The :class:`Flow`: a base distribution pushed through a bijection."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..checks import (
    MAX_SAMPLE_VALUES,
    WORK_PER_VALUE,
    check_input,
    check_memory,
    check_sample_shape,
    chunk_rows,
    module_dtype_device,
    validation_enabled,
)
from ..distributions.base import Distribution, StandardNormal
from ..registry import Registered
from ..transforms.base import Transform, rowwise_outputs

__all__ = ["Flow"]


class Flow(Registered, nn.Module):
    r"""A normalizing flow: a :class:`~pushforward.transforms.Transform` ``f`` (data → latent) and a base
    distribution :math:`p_Z`.

    .. math:: \log p_X(x \mid c) = \log p_Z(f(x; e(c))) + \log\left|\det \frac{\partial f(x; e(c))}{\partial x}\right|,
        \qquad x = f^{-1}(z; e(c)),\ z \sim p_Z,

    where :math:`e` is the optional context embedding (the identity without one): a network applied to each
    context before the transform sees it, trained with the flow (Radev et al., "BayesFlow: Learning complex
    stochastic models with invertible neural networks", IEEE TNNLS 2020, learn it jointly with the flow).

    Shapes follow ``torch.distributions``: ``log_prob`` takes ``(*batch, *event_shape)`` and returns
    ``batch``; ``sample((n,))`` returns ``(n, *event_shape)``, and with a context of batch shape ``(B,)``,
    ``(n, B, *event_shape)``. Inputs are validated (shape, dtype, NaN/inf, empty batch) with clear errors.
    ``flow(x, context)`` is ``flow.log_prob(x, context)``, so a ``Flow`` can be wrapped by
    ``DistributedDataParallel``.

    Args:
        transform: The bijection, mapping data to latent.
        base: The base distribution; default a standard normal on the transform's event shape.
        embedding: Optional module mapping contexts ``(m, *context_shape)`` to ``(m, K)``, ``K`` the
            transform's ``context_features``; every conditional flow takes its context through it. To save
            the flow, it must be built from registered classes (e.g. :mod:`pushforward.nets.embedding`).
        context_shape: Shape of one context the embedding takes (default: the embedding's ``in_shape``).

    Attributes:
        context_shape: Shape of one context as the caller passes it (None for an unconditional flow).
        context_features: Number of scalars in it (0 for an unconditional flow).

    Reference: Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015; Papamakarios et
    al., "Normalizing Flows for Probabilistic Modeling and Inference", JMLR 2021.

    Example:
        >>> from pushforward.transforms import AffineCoupling, Compose, half_mask
        >>> f = Compose([AffineCoupling(half_mask(2)), AffineCoupling(~half_mask(2))])
        >>> flow = Flow(f)
        >>> flow.log_prob(torch.randn(10, 2)).shape
        torch.Size([10])
        >>> flow.sample((4,)).shape
        torch.Size([4, 2])
        >>> from pushforward.nets.embedding import MLPEmbedding
        >>> g = Flow(Compose([AffineCoupling(half_mask(2), context=3)]), embedding=MLPEmbedding((5,), 3))
        >>> g.sample((4,), torch.randn(6, 5)).shape, g.context_shape
        (torch.Size([4, 6, 2]), (5,))
    """

    def __init__(
        self,
        transform: Transform,
        base: Distribution | None = None,
        *,
        embedding: nn.Module | None = None,
        context_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(transform, Transform):
            raise TypeError(f"transform must be a Transform, got {type(transform).__name__}")
        self.transform = transform
        self.base = base if base is not None else StandardNormal(transform.latent_shape)
        if self.base.event_shape != transform.latent_shape:
            raise ValueError(
                f"base event shape {self.base.event_shape} does not match the transform's latent shape "
                f"{transform.latent_shape}"
            )
        self.event_shape: tuple[int, ...] = transform.event_shape
        self.embedding = embedding
        #: Shape of one context as the caller passes it (None: unconditional); with an embedding, its input.
        self.context_shape: tuple[int, ...] | None = _context_shape(transform, embedding, context_shape)
        #: Number of scalars of one context as the caller passes it (0: unconditional).
        self.context_features: int = math.prod(self.context_shape) if self.context_shape else 0
        # ``flow.transform(x)`` is public (data → latent): validate its arguments like log_prob's. A flow that
        # takes this transform into a longer chain removes the hook (its own hook validates the chain's input).
        self.transform_hook = transform.register_forward_pre_hook(
            self._check_transform_args, with_kwargs=True
        )

    # ------------------------------------------------------------------ helpers
    @property
    def features(self) -> int:
        """Number of scalar dimensions of one event."""
        return math.prod(self.event_shape)

    @property
    def dtype(self) -> torch.dtype | None:
        """The floating dtype of the flow's parameters and buffers (None for a flow with none); inputs must
        match it. Stops at the first floating tensor instead of listing every parameter on each call."""
        for t in itertools.chain(self.parameters(), self.buffers()):
            if t.is_floating_point():
                return t.dtype
        return None

    @property
    def device(self) -> torch.device | None:
        """The device of the flow's parameters and buffers (None for a flow with none); inputs must be on it."""
        return module_dtype_device(self)[1]

    def _caller_context(self, context: Tensor | None) -> tuple[Tensor | None, tuple[int, ...]]:
        """The caller's context validated (shape, dtype, device, finite) as rows ``(m, *context_shape)``, and
        its batch shape (``()`` for one context); ``(None, ())`` for an unconditional flow."""
        if self.context_shape is None:
            if context is not None:
                raise ValueError("this flow is unconditional (context_features=0) but a context was given")
            return None, ()
        if context is None:
            if self.embedding is None:
                raise ValueError(
                    f"this flow is conditional: pass a context of {self.context_features} features"
                )
            raise ValueError(f"this flow is conditional: pass a context of shape {self.context_shape}")
        k = len(self.context_shape)
        single = isinstance(context, Tensor) and context.dim() == k
        if single:
            context = context.unsqueeze(0)  # one context for the whole batch
        context = check_input(
            context, self.context_shape, name="context", dtype=self.dtype, device=self.device
        )
        cb = () if single else tuple(context.shape[: context.dim() - k])
        return context.reshape(-1, *self.context_shape), cb

    def _embed(self, rows: Tensor) -> Tensor:
        """The embedding of context rows ``(m, *context_shape)``: ``(m, K)`` with ``K`` the transform's
        context features (a ``ValueError`` for any other shape)."""
        out = self.embedding(rows)  # type: ignore[misc]
        k = self.transform.context_features
        if not isinstance(out, Tensor) or tuple(out.shape) != (rows.shape[0], k):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"the embedding maps {rows.shape[0]} contexts of shape {self.context_shape} to {got}; the "
                f"transform takes ({rows.shape[0]}, {k})"
            )
        return out

    def _context(self, context: Tensor | None, batch_shape: tuple[int, ...] | None) -> Tensor | None:
        """The context rows the transform sees (embedded when the flow has an embedding): ``(m, K)`` for the
        ``m`` contexts given, or expanded to ``batch_shape`` and flattened when it is given. Each context is
        embedded once, before any expansion."""
        rows, cb = self._caller_context(context)
        if rows is None:
            return None
        if self.embedding is not None:
            rows = self._embed(rows)
        k = rows.shape[-1]
        rows = rows.reshape(*cb, k)
        if batch_shape is not None:
            try:
                rows = rows.expand(*batch_shape, k)
            except RuntimeError:
                raise ValueError(
                    f"context batch shape {cb} does not match the input's {batch_shape}"
                ) from None
        return rows.reshape(-1, k)

    def _caller_rows(self, context: Tensor | None, batch_shape: tuple[int, ...]) -> Tensor | None:
        """The caller's (already validated) context, one row per input row: ``(prod(batch_shape),
        *context_shape)``, an expanded view (nothing is copied)."""
        if context is None or self.context_shape is None:
            return None
        k = len(self.context_shape)
        if context.dim() == k:
            context = context.unsqueeze(0)
        return context.expand(*batch_shape, *self.context_shape).reshape(-1, *self.context_shape)

    def _check_transform_args(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook of ``self.transform``: ``x`` must be ``(batch, *event_shape)``, finite, of the
        flow's dtype, and ``context`` (what the transform sees: after the embedding, if any) must fit it (see
        :func:`~pushforward.checks.check_input`)."""
        x = args[0] if args else kwargs.get("x")
        context = args[1] if len(args) > 1 else kwargs.get("context")
        event = tuple(getattr(module, "event_shape", self.event_shape))  # AugmentedFlow: wider than the data
        x = check_input(x, event, dtype=self.dtype, device=self.device)
        if x.dim() != len(event) + 1:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; the transform takes (batch, {', '.join(map(str, event))})"
            )
        k = int(getattr(module, "context_features", self.transform.context_features))
        if not k and context is not None:
            raise ValueError("this flow is unconditional (context_features=0) but a context was given")
        if k:
            if context is None:
                raise ValueError(f"this flow is conditional: pass a context of {k} features")
            if isinstance(context, Tensor) and context.dim() == 1:
                context = context.unsqueeze(0)
            ctx = check_input(context, (k,), name="context", dtype=self.dtype, device=self.device)
            rows = ctx.reshape(-1, k).shape[0]
            if rows != x.shape[0]:
                raise ValueError(f"context has {rows} rows but x has {x.shape[0]}")

    # ------------------------------------------------------------------ density
    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Exact log-density of ``x`` (shape ``(*batch, *event_shape)``) given ``context``."""
        x = check_input(x, self.event_shape, dtype=self.dtype, device=self.device)
        batch_shape = tuple(x.shape[: x.dim() - len(self.event_shape)])
        ctx = self._context(context, batch_shape)
        raw = self._caller_rows(context, batch_shape)  # what a float64 rescoring passes again
        flat = x.reshape(-1, *self.event_shape)
        step = chunk_rows(flat.shape[0], self._row_bytes(), self.device)  # bounded working memory
        lps = []
        for i in range(0, flat.shape[0], step):
            xi, ci = flat[i : i + step], None if ctx is None else ctx[i : i + step]
            lost = None
            if self.embedding is not None and validation_enabled():  # an embedding that overflowed
                lost = ~torch.isfinite(ci).all(-1)  # type: ignore[union-attr]
                ci = torch.where(lost[:, None], torch.zeros_like(ci), ci)  # type: ignore[arg-type]
            with rowwise_outputs():  # overflowing rows are rescored, or -inf, one by one
                z, ladj = self.transform.forward(xi, ci)  # validated above
            lp = self.base.log_prob(z) + ladj
            if lost is not None:
                lp = torch.where(lost, torch.full_like(lp, -math.inf), lp)
            lps.append(_rescore_overflow(self, lp, xi, None if raw is None else raw[i : i + step]))
        return (lps[0] if len(lps) == 1 else torch.cat(lps)).reshape(batch_shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Alias of :meth:`log_prob`."""
        return self.log_prob(x, context)

    # ------------------------------------------------------------------ sampling
    def _itemsize(self) -> int:
        return torch.finfo(self.dtype or torch.get_default_dtype()).bits // 8

    def _row_bytes(self) -> int:
        """Estimated working bytes of one event while the flow maps it (:data:`~pushforward.checks.WORK_PER_VALUE`
        per scalar): sets chunk sizes."""
        width = max(self.features, self.context_features, self.transform.context_features, 1)
        return WORK_PER_VALUE * width * self._itemsize()

    def _check_count(self, count: int) -> None:
        """Refuse, before allocating, draws beyond :data:`~pushforward.checks.MAX_SAMPLE_VALUES` scalars or whose
        result (samples and log-densities, and one copy for the caller) exceeds the memory budget
        (:func:`~pushforward.checks.check_memory`); smaller draws run in chunks (:meth:`_draw`)."""
        if count * max(self.features, self.context_features) > MAX_SAMPLE_VALUES:
            raise ValueError(
                f"sampling {count} events of {self.features} values exceeds the limit of {MAX_SAMPLE_VALUES} "
                "values per call; draw in smaller batches"
            )
        need = 2 * count * (self.features + 1) * self._itemsize()
        check_memory(need, f"sampling {count} events of {self.features} values", self.device)

    def _sample_plan(
        self, sample_shape: int | Sequence[int], context: Tensor | None
    ) -> tuple[Tensor | None, tuple[int, ...], int]:
        """The one rule for sample shapes, shared by every flow: ``(context rows, output batch shape, count)``.

        Output batch shape ``(*sample_shape, *context_batch)`` where a context of shape ``(*B, K)`` has batch
        ``B`` (``()`` for a single ``(K,)`` row); the ``count`` draws use the context rows in that order.
        Refuses bad shapes and draws too large for the memory budget."""
        shape = check_sample_shape(sample_shape)
        n = math.prod(shape)
        ctx = self._context(context, None)  # raises when a conditional flow has no context (or vice versa)
        cb = ()
        if ctx is not None:
            cb = tuple(context.shape[: context.dim() - len(self.context_shape)])  # type: ignore[union-attr,arg-type]
            if self.embedding is not None and not bool(torch.isfinite(ctx).all()):
                raise ValueError(
                    "the embedding of the context is not finite (a context far outside the data the flow was "
                    "trained on): no samples can be drawn for it"
                )
        m = ctx.shape[0] if ctx is not None else 1
        count = n * m
        if count == 0:
            raise ValueError("sample_shape has zero samples")
        self._check_count(count)  # before anything of that size is allocated
        if ctx is not None:
            k = ctx.shape[-1]
            ctx = ctx.unsqueeze(0).expand(n, m, k).reshape(count, k)
        return ctx, shape + cb, count

    def _draw(self, sample_shape: int | Sequence[int], context: Tensor | None, with_log_prob: bool):
        ctx, out_shape, count = self._sample_plan(sample_shape, context)
        step = chunk_rows(count, self._row_bytes(), self.device)
        clamps = with_log_prob and any(getattr(m, "inverse_clamps", False) for m in self.transform.modules())
        xs, lps = [], []
        for i in range(0, count, step):
            c = None if ctx is None else ctx[i : i + step]
            z, log_q = self.base.rsample_and_log_prob((min(step, count - i),))
            x, ladj = self.transform.inverse(z, c)
            xs.append(x)
            if clamps:  # a step rounded samples into its support (Logit): the returned sample's density
                lps.append(self.log_prob(x, c))
            elif with_log_prob:
                lps.append(log_q - ladj)
        x = (xs[0] if len(xs) == 1 else torch.cat(xs)).reshape(*out_shape, *self.event_shape)
        if not with_log_prob:
            return x
        return x, (lps[0] if len(lps) == 1 else torch.cat(lps)).reshape(out_shape)

    def rsample(self, sample_shape: int | Sequence[int] = (), context: Tensor | None = None) -> Tensor:
        """Reparameterised samples of shape ``(*sample_shape, *context_batch, *event_shape)``."""
        return self._draw(sample_shape, context, False)

    @torch.no_grad()
    def sample(self, sample_shape: int | Sequence[int] = (), context: Tensor | None = None) -> Tensor:
        """Samples without gradient (see :meth:`rsample` for shapes)."""
        return self._draw(sample_shape, context, False)

    def sample_and_log_prob(
        self, sample_shape: int | Sequence[int] = (), context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""Reparameterised samples and their log-density in one inverse pass:
        :math:`\log p_X(x) = \log p_Z(z) - \log|\det \partial x / \partial z|`."""
        return self._draw(sample_shape, context, True)


def _context_shape(
    transform: Transform, embedding: nn.Module | None, context_shape: Sequence[int] | None
) -> tuple[int, ...] | None:
    """The shape of one context a flow takes: ``(K,)`` for a transform of ``K`` context features, the input
    shape of the embedding when there is one (``context_shape``, else the embedding's ``in_shape``), None for
    an unconditional flow. Checks that an embedding comes with a conditional transform."""
    if embedding is None:
        if context_shape is not None:
            raise ValueError("context_shape is the input shape of an embedding: give it with embedding=")
        return (transform.context_features,) if transform.context_features else None
    if not isinstance(embedding, nn.Module):
        raise TypeError(f"embedding must be an nn.Module, got {type(embedding).__name__}")
    if not transform.context_features:
        raise ValueError("an embedding needs a conditional transform (context_features >= 1)")
    if context_shape is None:
        context_shape = getattr(embedding, "in_shape", None)
    if context_shape is None:
        raise ValueError("give context_shape=, the shape of one context the embedding takes")
    shape = tuple(context_shape)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"context_shape must be a non-empty tuple of positive ints, got {context_shape!r}")
    return shape


def _rescore_overflow(model: nn.Module, lp: Tensor, x: Tensor, ctx: Tensor | None) -> Tensor:
    """Rows of a finite input whose log-density is not finite — float32 overflow far from the data, e.g. at
    1e30 — are scored again in float64, as ``pushforward score`` does; a row still not finite in the flow's
    dtype is −inf for that row alone, with a ``RuntimeWarning`` saying how many (never an error for the batch,
    never a silent NaN). Data dependent, so off with validation (:func:`~pushforward.set_validation`) and
    while ``torch.compile`` traces."""
    if not validation_enabled() or torch.compiler.is_compiling():
        return lp
    bad = ~torch.isfinite(lp)
    if not bool(bad.any()):
        return lp
    idx = bad.nonzero().squeeze(1)
    if lp.dtype != torch.float64:
        state = {
            k: v.double() if v.is_floating_point() else v
            for k, v in itertools.chain(model.named_parameters(), model.named_buffers())
        }
        c64 = None if ctx is None else ctx[idx].double()
        with warnings.catch_warnings():  # the float64 pass reports nothing itself: this function does below
            warnings.simplefilter("ignore", RuntimeWarning)
            lp64 = torch.func.functional_call(model, state, (x[idx].double(), c64))
        lp = lp.index_put((idx,), lp64.to(lp.dtype))
        idx = (~torch.isfinite(lp)).nonzero().squeeze(1)
    if idx.numel():
        scored = "" if lp.dtype == torch.float64 else ", even scored in float64"
        warnings.warn(
            f"{idx.numel()} of {lp.shape[0]} rows have no finite log-density in {lp.dtype}{scored} (far outside "
            "the data the flow was fitted on); they are reported as -inf",
            RuntimeWarning,
            stacklevel=3,
        )
        lp = lp.index_put((idx,), torch.full((idx.numel(),), -torch.inf, dtype=lp.dtype, device=lp.device))
    return lp
