"""Adafactor exactly as Mesh TensorFlow ran it for the T5 paper (facts §5.1).

Reference: ``MTF:mesh_tensorflow/optimize.py`` ``AdafactorOptimizer.apply_grad`` with the
T5 settings (beta1 = 0, ``decay_rate = adafactor_decay_rate_pow(0.8)``, clipping 1.0,
factored, ``min_dim_size_to_factor = 128``, epsilons 1e-30 / 1e-3, parameter-scaled steps).
Per parameter ``p`` with gradient ``g`` (all arithmetic in float32):

* ``t`` is the 1-based index of the update.  MTF computes
  ``decay = 1 - (global_step + 1) ** -0.8`` where ``global_step`` (0-based) counts the
  updates *already done*, so the first update uses ``t = 1`` and ``decay = 0`` (the
  second-moment estimate starts as the first squared gradient).  MTF's
  ``adafactor_decay_rate_pow`` has no offset.  By default ``t`` is this optimizer's own
  per-parameter update count (which survives ``state_dict()`` round trips).  Because T5
  *continues* the global step when fine-tuning (β2 stays ≈ 1), a run loop may set
  ``param_group["global_step"]`` (0-based) before each step; then ``t = global_step + 1``
  for every parameter, exactly as MTF does, even for parameters created mid-run.
* ``g2 = g**2 + epsilon1``; ``mixing = 1 - decay``.
* Factored (the two largest dims ``d0 >= d1`` both ``>= min_dim_size_to_factor``; ties
  keep the earlier dim first): ``vr`` = running mean of ``g2`` reduced over ``d0`` and
  ``vc`` = reduced over ``d1`` (MTF's slot shapes ``shape - d0`` / ``shape - d1``), then
  ``u = g * rsqrt(vr / mean_{d1}(vr)) * rsqrt(vc)``.  Otherwise a full ``v`` and
  ``u = g * rsqrt(v)``.  Both are torch-layout independent: the factored estimate
  ``R_i C_j / mean(R)`` is symmetric in the two dims.
* ``u /= max(1, RMS(u) / clipping_threshold)``.
* ``step = lr * max(RMS(p_old), epsilon2) * u`` (``lr`` alone without parameter scale);
  with ``beta1 > 0`` a first moment ``m = beta1 m + (1 - beta1) step`` replaces it.
* ``p -= step``; no weight decay, no gradient-norm clipping.

Sharded parameters (FSDP2 ``DTensor``): the state tensors are ``DTensor`` too, sharded
like the parameter (a slot that drops a sharded dim is replicated), so the row/column
means and RMS values are those of the whole tensor — DTensor inserts the reductions over
ranks — and the update is the unsharded one up to summation order. ``state_dict()`` holds
the shards; :meth:`Adafactor.load_state_dict` re-shards full tensors.

Plain (unsharded) CPU/CUDA parameters are updated together with ``torch._foreach_*`` ops
(one C++ call per op over all parameters instead of ~25 Python calls per parameter); only
the factored row/column means stay per-parameter reductions.  The arithmetic is the same;
the RMS values come from ``_foreach_norm`` (``norm / sqrt(numel)``) and the clip and
parameter-scale factors are applied as one product, so the result equals the
per-parameter path to float32 rounding.  DTensor parameters always take the per-parameter
path (their reductions must go through DTensor).

Differences from ``transformers.optimization.Adafactor(scale_parameter=True,
relative_step=False, warmup_init=False, clip_threshold=1.0, decay_rate=-0.8,
beta1=None)``: HF factors *every* tensor with >= 2 dims over its last two dims (no
``min_dim_size_to_factor``), and its step count always restarts at 0.  Where both factor
the same dims (or neither factors), the two agree to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from t5kernel.errors import ConfigError


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.square().mean().sqrt()


def _is_dtensor(x: Any) -> bool:
    return type(x).__name__ == "DTensor"  # no torch.distributed import for plain runs


def _slot_placements(p: Any, drop: int | None) -> list[Any]:
    """The placements of a slot of ``p`` with dim ``drop`` removed (None: same shape)."""
    from torch.distributed.tensor import Replicate, Shard

    out = []
    for pl in p.placements:
        if isinstance(pl, Shard) and drop is not None:
            pl = Replicate() if pl.dim == drop else Shard(pl.dim - (pl.dim > drop))
        out.append(pl)
    return out


def _slot_zeros(p: torch.Tensor, drop: int | None = None) -> torch.Tensor:
    """float32 zeros shaped like ``p`` without dim ``drop``, sharded like ``p``."""
    shape = list(p.shape)
    if drop is not None:
        del shape[drop]
    if _is_dtensor(p):
        from torch.distributed.tensor import zeros

        return zeros(shape, dtype=torch.float32, device_mesh=p.device_mesh,
                     placements=_slot_placements(p, drop))
    return torch.zeros(shape, dtype=torch.float32, device=p.device)


#: which dim of the parameter each slot drops ("vr"/"vc": factored dims 0 / 1)
_SLOT_DROP = {"vr": 0, "vc": 1}

#: most elements per foreach update, by device type: bounds the float32 temporaries (g**2
#: and the update, ~8 bytes per element).  On CPU small chunks stay in cache (measured on
#: T5-small: 2**20 is ~1.5x faster than the whole model at once); elsewhere fewer, larger
#: chunks mean fewer kernel launches.
_FOREACH_CHUNK_NUMEL = {"cpu": 2**20}
_FOREACH_CHUNK_NUMEL_DEFAULT = 2**26

#: CPU norm kernels sum long runs sequentially in float32 (relative error ~5e-4 at 16M
#: elements, unlike ``mean``'s cascade sum), so CPU RMS values add up norms of blocks
_CPU_NORM_BLOCK = 2**16


def factored_dims(
    shape: tuple[int, ...], factored: bool, min_dim_size_to_factor: int
) -> tuple[int, int] | None:
    """The (largest, second-largest) dim indices MTF factors over, or None.

    MTF sorts the dims by size (stably, descending) and factors only when the second
    largest is at least ``min_dim_size_to_factor``.
    """
    if not factored or len(shape) < 2:
        return None
    order = sorted(range(len(shape)), key=lambda i: -shape[i])
    d0, d1 = order[0], order[1]
    if shape[d1] < min_dim_size_to_factor:
        return None
    return d0, d1


class Adafactor(torch.optim.Optimizer):
    """Mesh TF's Adafactor (see the module docstring for the exact update).

    ``lr`` is the *relative* step size; the run loop writes ``param_group["lr"]`` from
    the schedule before every step (it may start as None, but stepping with None is an
    error).  State per parameter is a plain dict: ``step`` (int) plus float32 tensors
    ``vr``/``vc`` (factored) or ``v``, and ``m`` when ``beta1 > 0``.  Parameters whose
    ``requires_grad`` is False or whose ``grad`` is None are skipped and get no state.

    ``foreach``: None (default) updates plain CPU/CUDA tensors with ``torch._foreach_*``
    ops and everything else (DTensors, other devices) parameter by parameter; True uses
    foreach for every non-DTensor parameter; False always goes parameter by parameter.
    It is not part of ``state_dict()``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | None = None,
        beta1: float | None = 0.0,
        decay_exponent: float = 0.8,
        clipping_threshold: float | None = 1.0,
        factored: bool = True,
        min_dim_size_to_factor: int = 128,
        epsilon1: float = 1e-30,
        epsilon2: float = 1e-3,
        multiply_by_parameter_scale: bool = True,
        foreach: bool | None = None,
    ) -> None:
        if beta1 is not None and not 0.0 <= beta1 < 1.0:
            raise ConfigError(f"adafactor beta1 must be in [0, 1) or None, got {beta1}")
        if not 0.0 < decay_exponent <= 1.0:
            raise ConfigError(f"adafactor decay_exponent must be in (0, 1], got {decay_exponent}")
        if clipping_threshold is not None and clipping_threshold <= 0:
            raise ConfigError(
                f"adafactor clipping_threshold must be > 0 or None, got {clipping_threshold}"
            )
        if min_dim_size_to_factor < 1:
            raise ConfigError(
                f"adafactor min_dim_size_to_factor must be >= 1, got {min_dim_size_to_factor}"
            )
        if epsilon1 < 0 or epsilon2 < 0:
            raise ConfigError("adafactor epsilon1 and epsilon2 must be >= 0")
        defaults = dict(
            lr=lr,
            beta1=beta1 or 0.0,
            decay_exponent=decay_exponent,
            clipping_threshold=clipping_threshold,
            factored=factored,
            min_dim_size_to_factor=min_dim_size_to_factor,
            epsilon1=epsilon1,
            epsilon2=epsilon2,
            multiply_by_parameter_scale=multiply_by_parameter_scale,
            global_step=None,
        )
        super().__init__(params, defaults)
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["lr"] is None:
                raise ConfigError(
                    "adafactor: param_group['lr'] is unset; set it from the schedule "
                    "before calling step()"
                )
            batched: dict[torch.device, list[torch.Tensor]] = {}
            single = []
            for p in group["params"]:
                if p.grad is None or not p.requires_grad:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("adafactor does not support sparse gradients")
                if self._use_foreach(p):
                    batched.setdefault(p.device, []).append(p)
                else:
                    single.append(p)
            for p in single:
                self._update(p, group)
            for device, params in batched.items():
                max_numel = _FOREACH_CHUNK_NUMEL.get(device.type, _FOREACH_CHUNK_NUMEL_DEFAULT)
                for chunk in _chunks(params, max_numel):
                    self._foreach_update(chunk, group)
        return loss

    def _use_foreach(self, p: torch.Tensor) -> bool:
        if self.foreach is False or _is_dtensor(p):
            return False
        return self.foreach is True or p.device.type in ("cpu", "cuda")

    def _init_state(self, p: torch.Tensor, group: dict, dims: tuple[int, int] | None) -> dict:
        state = self.state[p]
        state["step"] = 0
        if dims is not None:
            state["vr"] = _slot_zeros(p, dims[0])
            state["vc"] = _slot_zeros(p, dims[1])
        else:
            state["v"] = _slot_zeros(p)
        if group["beta1"]:
            state["m"] = _slot_zeros(p)
        return state

    def _update(self, p: torch.Tensor, group: dict) -> None:
        dims = factored_dims(tuple(p.shape), group["factored"], group["min_dim_size_to_factor"])
        state = self.state[p]
        if not state:
            state = self._init_state(p, group, dims)
        state["step"] += 1
        t = state["step"] if group["global_step"] is None else int(group["global_step"]) + 1
        decay = 1.0 - t ** (-group["decay_exponent"])
        mixing = 1.0 - decay

        grad = p.grad.float()
        old = p if p.dtype == torch.float32 else p.float()
        grad_sq = grad.square().add_(group["epsilon1"])
        if dims is not None:
            d0, d1 = dims
            vr, vc = state["vr"], state["vc"]
            vr.mul_(decay).add_(grad_sq.mean(dim=d0) * mixing)
            vc.mul_(decay).add_(grad_sq.mean(dim=d1) * mixing)
            d1_in_vr = d1 - 1 if d1 > d0 else d1
            r_factor = (vr / vr.mean(dim=d1_in_vr, keepdim=True)).rsqrt().unsqueeze(d0)
            c_factor = vc.rsqrt().unsqueeze(d1)
            x = grad * r_factor * c_factor
        else:
            v = state["v"]
            v.mul_(decay).add_(grad_sq * mixing)
            x = grad * v.rsqrt()
        if group["clipping_threshold"] is not None:
            x.div_((_rms(x) / group["clipping_threshold"]).clamp(min=1.0))
        if group["multiply_by_parameter_scale"]:
            x.mul_(_rms(old).clamp(min=group["epsilon2"]) * group["lr"])
        else:
            x.mul_(group["lr"])
        if group["beta1"]:
            m = state["m"]
            m.mul_(group["beta1"]).add_(x * (1.0 - group["beta1"]))
            x = m
        if p.dtype == torch.float32:
            p.sub_(x)
        else:
            p.copy_(old - x)

    def _foreach_update(self, params: list[torch.Tensor], group: dict) -> None:
        """:meth:`_update` for many plain tensors of one device at once (same arithmetic)."""
        decays, dims_of, grads = [], [], []
        for p in params:
            dims = factored_dims(tuple(p.shape), group["factored"],
                                 group["min_dim_size_to_factor"])
            state = self.state[p] or self._init_state(p, group, dims)
            state["step"] += 1
            t = state["step"] if group["global_step"] is None else int(group["global_step"]) + 1
            decays.append(1.0 - t ** (-group["decay_exponent"]))
            dims_of.append(dims)
            grads.append(p.grad.float())  # the grad itself when float32: never written
        mixings = [1.0 - d for d in decays]
        grad_sq = torch._foreach_mul(grads, grads)
        torch._foreach_add_(grad_sq, group["epsilon1"])

        fac = [i for i, d in enumerate(dims_of) if d is not None]
        unf = [i for i, d in enumerate(dims_of) if d is None]
        xs: list[Any] = [None] * len(params)
        if unf:
            v = [self.state[params[i]]["v"] for i in unf]
            torch._foreach_mul_(v, [decays[i] for i in unf])
            new = [grad_sq[i] for i in unf]
            torch._foreach_mul_(new, [mixings[i] for i in unf])
            torch._foreach_add_(v, new)
            new = None
            x_unf = torch._foreach_rsqrt(v)
            torch._foreach_mul_(x_unf, [grads[i] for i in unf])
            for i, x in zip(unf, x_unf, strict=True):
                xs[i] = x
        if fac:
            rows = [grad_sq[i].mean(dim=dims_of[i][0]) for i in fac]
            cols = [grad_sq[i].mean(dim=dims_of[i][1]) for i in fac]
            grad_sq = None  # free g**2 before the updates are allocated
            dec, mix = [decays[i] for i in fac], [mixings[i] for i in fac]
            vr = [self.state[params[i]]["vr"] for i in fac]
            vc = [self.state[params[i]]["vc"] for i in fac]
            for slot, mean in ((vr, rows), (vc, cols)):
                torch._foreach_mul_(slot, dec)
                torch._foreach_mul_(mean, mix)
                torch._foreach_add_(slot, mean)
            r_factor = torch._foreach_div(vr, [
                r.mean(dim=d1 - 1 if d1 > d0 else d1, keepdim=True)
                for r, (d0, d1) in zip(vr, (dims_of[i] for i in fac), strict=True)
            ])
            torch._foreach_rsqrt_(r_factor)
            c_factor = torch._foreach_rsqrt(vc)
            x_fac = torch._foreach_mul(
                [grads[i] for i in fac],
                [r.unsqueeze(dims_of[i][0]) for r, i in zip(r_factor, fac, strict=True)],
            )
            torch._foreach_mul_(
                x_fac, [c.unsqueeze(dims_of[i][1]) for c, i in zip(c_factor, fac, strict=True)]
            )
            for i, x in zip(fac, x_fac, strict=True):
                xs[i] = x
        grad_sq = grads = None

        # One scale per parameter: lr * max(RMS(p_old), eps2) / max(1, RMS(u) / clip).
        scale = torch.full((len(params),), float(group["lr"]), dtype=torch.float32,
                           device=params[0].device)
        if group["clipping_threshold"] is not None:
            scale /= (_foreach_rms(xs) / group["clipping_threshold"]).clamp_(min=1.0)
        if group["multiply_by_parameter_scale"]:
            scale *= _foreach_rms(params).clamp_(min=group["epsilon2"])
        torch._foreach_mul_(xs, scale.unbind())

        if group["beta1"]:
            m = [self.state[p]["m"] for p in params]
            torch._foreach_mul_(m, group["beta1"])
            torch._foreach_mul_(xs, 1.0 - group["beta1"])
            torch._foreach_add_(m, xs)
            xs = m
        full = [i for i, p in enumerate(params) if p.dtype == torch.float32]
        low = [i for i, p in enumerate(params) if p.dtype != torch.float32]
        if full:
            torch._foreach_sub_([params[i] for i in full], [xs[i] for i in full])
        if low:  # float32 math, one rounding to the parameter's dtype: p.copy_(old - x)
            new = torch._foreach_sub([params[i].float() for i in low], [xs[i] for i in low])
            torch._foreach_copy_([params[i] for i in low], new)

    def load_state_dict(self, state_dict: dict) -> None:
        """Load as torch does, but keep the float32 state of low-precision parameters.

        ``torch.optim.Optimizer.load_state_dict`` casts floating state to the parameter's
        dtype; for bfloat16 parameters that would round the second moments, so the saved
        float32 values are put back (exact resume).
        """
        super().load_state_dict(state_dict)
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [(p, g) for g in self.param_groups for p in g["params"]]
        for pid, (p, group) in zip(saved_ids, params, strict=True):
            saved = state_dict["state"].get(pid)
            if not saved:
                continue
            dims = factored_dims(tuple(p.shape), group["factored"],
                                 group["min_dim_size_to_factor"])
            for key, value in saved.items():
                if not (torch.is_tensor(value) and value.is_floating_point()):
                    continue
                if _is_dtensor(p):  # full tensors from a checkpoint: keep this rank's shard
                    self.state[p][key] = _shard_like(p, value, key, dims)
                elif p.dtype != torch.float32:
                    self.state[p][key] = value.to(device=p.device, dtype=torch.float32)


def _foreach_rms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """float32 RMS of each tensor (all on one device), as one vector."""
    device = tensors[0].device
    if device.type == "cpu":  # sum the squared norms of blocks (see _CPU_NORM_BLOCK)
        blocks = [
            (t,) if t.numel() <= _CPU_NORM_BLOCK
            else t.reshape(-1).tensor_split(-(-t.numel() // _CPU_NORM_BLOCK))
            for t in tensors
        ]
        norms = torch._foreach_norm([b for bs in blocks for b in bs], dtype=torch.float32)
        owner = torch.repeat_interleave(torch.arange(len(tensors)),
                                        torch.tensor([len(bs) for bs in blocks]))
        sum_sq = torch.zeros(len(tensors)).index_add_(0, owner, torch.stack(norms).square())
    else:
        sum_sq = torch.stack(torch._foreach_norm(tensors, dtype=torch.float32)).square()
    numel = torch.tensor([t.numel() for t in tensors], dtype=torch.float32, device=device)
    return (sum_sq / numel).sqrt()


def _chunks(params: list[torch.Tensor], max_numel: int) -> Iterable[list[torch.Tensor]]:
    """Consecutive runs of ``params`` of at most ``max_numel`` elements (or one tensor)."""
    chunk: list[torch.Tensor] = []
    size = 0
    for p in params:
        if chunk and size + p.numel() > max_numel:
            yield chunk
            chunk, size = [], 0
        chunk.append(p)
        size += p.numel()
    if chunk:
        yield chunk


def _shard_like(p: Any, value: torch.Tensor, key: str, dims: tuple[int, int] | None) -> Any:
    """A full slot tensor as the DTensor slot of sharded parameter ``p``."""
    from torch.distributed.tensor import distribute_tensor

    if _is_dtensor(value):
        value = value.full_tensor()
    drop = dims[_SLOT_DROP[key]] if (dims is not None and key in _SLOT_DROP) else None
    local = value.to(device=p.to_local().device, dtype=torch.float32)
    return distribute_tensor(local, p.device_mesh, _slot_placements(p, drop))


class AdafactorFactory:
    """Registered target of the ``adafactor`` optimizer plugin (config: AdafactorConfig)."""

    def __init__(self, config: Any, context: Any = None) -> None:
        self.config = config
        self.context = context
        # Validate now so a bad config fails before training starts.
        self.create([torch.zeros(1, requires_grad=True)])

    def create(self, parameters: Iterable[Any]) -> Adafactor:
        c = self.config
        return Adafactor(
            parameters,
            lr=None,
            beta1=c.beta1,
            decay_exponent=c.decay_exponent,
            clipping_threshold=c.clipping_threshold,
            factored=c.factored,
            min_dim_size_to_factor=c.min_dim_size_to_factor,
            epsilon1=c.epsilon1,
            epsilon2=c.epsilon2,
            multiply_by_parameter_scale=c.multiply_by_parameter_scale,
        )
