"""Which SDPA kernel eager ran for each call, and SDPA in float64 whatever the context.

Eager SDPA picks one kernel per call at run time. On CUDA, `select_sdp_backend` walks the
priority order and takes the first backend whose `can_use_*` check accepts the call's
`SDPAParams` (each check includes "is it enabled"), or math if it is enabled. The oracle
records that choice per call, so that a report says which kernel eager's numbers came
from, tolerances can follow the kernel, and runs can count findings per kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.backends.cuda import (SDPAParams, can_use_cudnn_attention,
                                 can_use_efficient_attention, can_use_flash_attention)
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

KERNELS = ("math", "flash", "efficient", "cudnn", "overrideable")  # SDPBackend's order
FUSED = ("flash", "efficient", "cudnn")
CUDA_KERNELS = FUSED + ("math",)  # what the CUDA dispatcher's priority walk knows
NO_KERNEL = "none"  # nothing enabled accepts the call: eager raises "No available kernel"
CHECKS: dict[str, Callable[[SDPAParams], bool]] = {
    "flash": can_use_flash_attention, "efficient": can_use_efficient_attention,
    "cudnn": can_use_cudnn_attention}


@dataclass(frozen=True)
class SDPACall:
    """The arguments of one SDPA call, as `SDPAParams` and the dispatcher read them."""

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    attn_mask: torch.Tensor | None = None
    dropout_p: float = 0.0
    is_causal: bool = False
    scale: float | None = None
    enable_gqa: bool = False

    def run(self, **changes: Any) -> torch.Tensor:
        """SDPA on these arguments, with `changes` to some of them."""
        c = replace(self, **changes)
        return F.scaled_dot_product_attention(
            c.query, c.key, c.value, attn_mask=c.attn_mask, dropout_p=c.dropout_p,
            is_causal=c.is_causal, scale=c.scale, enable_gqa=c.enable_gqa)

    def params(self) -> SDPAParams:
        return SDPAParams(self.query, self.key, self.value, self.attn_mask, self.dropout_p,
                          self.is_causal, self.enable_gqa)


def eligible(call: SDPACall) -> tuple[str, ...]:
    """The fused CUDA kernels whose `can_use_*` check accepts the call, as things stand
    (enabled flags included); empty off CUDA, where those checks do not apply."""
    if call.query.device.type != "cuda":
        return ()
    params = call.params()
    return tuple(name for name, check in CHECKS.items() if check(params))


def kernel_of(backend: int) -> str:
    return KERNELS[backend] if 0 <= backend < len(KERNELS) else NO_KERNEL


def chosen_kernel(call: SDPACall) -> str:
    """The kernel eager runs for `call` under the current backend state.

    On CUDA: the first backend in the priority order that is eligible (math: enabled);
    none if the walk meets a backend the CUDA dispatcher has no case for (OVERRIDEABLE put
    ahead by `set_priority`), where it raises.
    Elsewhere there is no per-kernel check in Python, and the dispatcher's own choice
    (`torch._fused_sdp_choice`) says fused (CPU flash) or math. Malformed calls, which
    eager rejects before choosing, have no kernel.
    """
    try:
        if call.query.device.type != "cuda":
            return kernel_of(torch._fused_sdp_choice(
                call.query, call.key, call.value, call.attn_mask, call.dropout_p,
                call.is_causal, scale=call.scale, enable_gqa=call.enable_gqa))
        usable = set(eligible(call))
    except RuntimeError:
        return NO_KERNEL
    if torch._C._get_math_sdp_enabled():
        usable.add("math")
    for backend in torch._C._get_sdp_priority_order():
        kernel = kernel_of(int(backend))
        if kernel in usable:
            return kernel
        if kernel not in CUDA_KERNELS:  # the CUDA dispatcher raises "Invalid backend" here
            return NO_KERNEL
    return NO_KERNEL


class KernelLog(TorchFunctionMode):
    """Records the kernel eager runs for every SDPA call made while active."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.kernels.append(chosen_kernel(SDPACall(*args, **kwargs)))
        return func(*args, **kwargs)


class RoundingJitter(TorchDispatchMode):
    """Moves every new float64 result of an aten op that computes (not a view, not a
    copy) by a random relative amount up to `dtype`'s eps, from a generator seeded alike
    in every run: the float64 run as one of the implementations that round a 16-bit
    program's results at other points than eager does. Inductor keeps a fused chain's
    intermediates in float32 and rounds where it stores them, and where the program
    amplifies rounding (a layer norm over three features) eager's error is one lucky
    sample. A bfloat16 encoder layer: eager 0.017 from float64, Inductor 0.112; the
    float64 run with every aten op rounded to bfloat16 0.017 (eager's own points), and
    moved at random by up to an eps 0.05 to 0.16 (four seeds)."""

    COPIES = {"_to_copy", "clone", "copy", "cat", "stack", "index", "index_select",
              "gather", "masked_fill", "where", "expand", "repeat", "constant_pad_nd",
              "zeros_like", "ones_like", "full_like", "empty_like", "new_zeros", "new_ones",
              "new_full", "new_empty", "lift_fresh", "slice_scatter", "select_scatter",
              "tril", "triu", "flip", "roll", "scalar_tensor", "zeros", "ones", "full",
              "empty", "arange", "fill"}

    def __init__(self, dtype):
        super().__init__()
        self.eps = torch.finfo(dtype).eps
        self.generator = torch.Generator().manual_seed(0x5DFA)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__.rstrip("_") in self.COPIES or \
                func.overloadpacket.__name__.endswith("_") or \
                any(r.alias_info is not None for r in func._schema.returns):
            return out
        if isinstance(out, (tuple, list)):
            return type(out)(self._moved(t) for t in out)
        return self._moved(out)

    def _moved(self, t):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float64 or \
                t.device.type == "meta":
            return t
        noise = torch.rand(t.shape, generator=self.generator, dtype=t.dtype).to(t.device)
        return t * (1 + (2 * noise - 1) * self.eps)


class ReferenceSDPA(TorchFunctionMode):
    """The float64 reference run's view of SDPA: records the query, key and value of every
    call (`operands`), which condition its scores however the program computed them; with
    `math`, computes every call with the math kernel, whatever the backend state: on CUDA,
    where no fused kernel takes float64, so that a context enabling only fused kernels
    would otherwise leave no reference at all. With `rounded_to`, rounds every call's
    query, key and value to that dtype first (differentiably), and the operands and
    result of every matrix product the program writes (`@`, `bmm`, `baddbmm`, `einsum`:
    hand-written attention's scores, and its weights before they meet the values): the
    float64 run as an implementation that rounds computed operands and materializes what
    its matrix products read and write, as the case's own runs must, and moves every
    other result by up to that dtype's eps (`RoundingJitter`). `products` counts those
    products.

    A torch.nn module's attention (`F.multi_head_attention_forward`, which its layers call
    too) reaches this mode as one call, handled with the mode off, so its own SDPA or
    `bmm` calls are out of sight. Its operands are then its input projection's output,
    taken per head (as its scores see them) from the module-level helpers it calls for
    the projection, swapped for the length of that call: one log entry per attention,
    with or without `need_weights`.
    Self-contained (torch only): repro scripts embed its source."""

    PRODUCTS = (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm,
                torch.Tensor.bmm, torch.baddbmm, torch.Tensor.baddbmm, torch.einsum)

    def __init__(self, math=False, rounded_to=None):
        super().__init__()
        self.math = math
        self.rounded_to = rounded_to
        self.operands = []
        self.products = 0
        self.jitter = None if rounded_to is None else RoundingJitter(rounded_to)

    def __enter__(self):
        if self.jitter is not None:
            self.jitter.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if self.jitter is not None:
            self.jitter.__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        nn_functional = torch.nn.functional
        if func is nn_functional.multi_head_attention_forward:
            return self._module_attention(func, args, kwargs)
        if func in self.PRODUCTS:  # a matrix product the program wrote: materialized,
            self.products += 1  # its operands and its result are held in the case's dtype
            return self._rounded(func(*map(self._rounded, args), **kwargs))
        if func is not nn_functional.scaled_dot_product_attention:
            return func(*args, **kwargs)
        kwargs.update(zip(("query", "key", "value", "attn_mask", "dropout_p", "is_causal"),
                          args))
        for n in ("query", "key", "value"):
            kwargs[n] = self._rounded(kwargs[n])
        self.operands.append(tuple(kwargs[n].detach() for n in ("query", "key", "value")))
        if not self.math:
            return func(**kwargs)
        mask = kwargs.get("attn_mask")
        if mask is not None and mask.dtype == torch.bool:  # as SDPA does before any kernel
            kwargs["attn_mask"] = torch.zeros_like(mask, dtype=kwargs["query"].dtype
                                                   ).masked_fill(~mask, float("-inf"))
        return torch.ops.aten._scaled_dot_product_attention_math(**kwargs)[0]

    def _rounded(self, x):
        if self.rounded_to is None or not isinstance(x, torch.Tensor) or \
                not x.is_floating_point():
            return x
        return x.to(self.rounded_to).to(x.dtype)

    def _module_attention(self, func, args, kwargs):
        nn_functional = torch.nn.functional
        heads = args[4] if len(args) > 4 else kwargs["num_heads"]
        helpers = {n: getattr(nn_functional, n) for n in ("_in_projection_packed",
                                                          "_in_projection")}

        def logged(project):
            def projected(*a, **kw):
                qkv = project(*a, **kw)
                qkv = tuple(map(self._rounded, qkv))
                # (L, B, E) -> (B * heads, L, E / heads), as the module splits its heads
                self.operands.append(tuple(
                    t.detach().reshape(t.shape[0], -1, t.shape[-1] // heads).transpose(0, 1)
                    for t in qkv))
                return qkv
            return projected

        try:
            for name, project in helpers.items():
                setattr(nn_functional, name, logged(project))
            return func(*args, **kwargs)
        finally:
            for name, project in helpers.items():
                setattr(nn_functional, name, project)
