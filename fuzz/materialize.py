"""Input tensors from their specs, bit-identical in every process.

`build_tensor` is copied verbatim into every repro script (see `codegen`), so it imports
only torch and uses nothing from this package: the fuzzer and the script a user pastes
into a bug report build the very same bits.
"""

from __future__ import annotations

import inspect

from fuzz.case import TensorSpec


def build_tensor(shape, dtype, values, layout, seed, perm=(), expand_dim=0,
                 requires_grad=False, device="cpu"):
    """Draw values on a seeded CPU generator, cast, then lay them out in memory as asked."""
    import torch

    shape = tuple(shape)
    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, dtype)
    base_shape = list(shape)
    if layout == "expanded":
        base_shape[expand_dim] = 1
    if values == "padding":  # torch.nn's: True (or -inf) on each row's keys past a length
        lengths = torch.randint(0, base_shape[-1] + 1, base_shape[:-1] + [1], generator=gen)
        padded = torch.arange(base_shape[-1]).expand(base_shape) >= lengths
        base = padded.to(dtype) if dtype == torch.bool else \
            torch.zeros(base_shape).masked_fill(padded, float("-inf")).to(dtype)
    elif values in ("random", "full_rows", "additive"):
        keep = torch.rand(base_shape, generator=gen) < 0.7
        if values == "full_rows":  # the first row, where there is one
            keep[..., :1, :] = False
        bias = torch.randn(base_shape, generator=gen) * 0.5
        if not dtype.is_floating_point:  # bool or integer: 1 attends, 0 does not
            base = keep.to(dtype)
        elif values == "additive":
            base = bias.to(dtype)
        else:
            base = bias.masked_fill(~keep, float("-inf")).to(dtype)
    else:
        magnitude = {"normal": 1.0, "tiny": 1e-4, "large": 30.0, "repeated": 1.0}[values]
        if values == "repeated":
            row_shape = base_shape[:-2] + [1, base_shape[-1]]
            base = torch.randn(row_shape, generator=gen).expand(base_shape).contiguous()
        else:
            base = torch.randn(base_shape, generator=gen) * magnitude
        base = base.to(dtype)
    base = base.to(device)
    if layout == "expanded":
        out = base.expand(shape)
    elif layout == "transposed":
        out = base.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif layout == "permuted":
        inverse = [perm.index(d) for d in range(len(shape))]
        out = base.permute(*perm).contiguous().permute(*inverse)
    elif layout == "offset":
        storage = torch.zeros(base.numel() + 3, dtype=dtype, device=device)
        storage[3:] = base.flatten()
        out = storage[3:].view(shape)
    elif layout == "strided":
        storage = torch.zeros(shape[:-1] + (2 * shape[-1],), dtype=dtype, device=device)
        storage[..., ::2] = base
        out = storage[..., ::2]
    else:
        out = base
    out = out.detach()
    return out.requires_grad_() if requires_grad else out


def grown(shape, marks, grow):
    """`shape` with `grow` added to the dims `marks` flags: a call of another size."""
    return tuple(d + grow * m for d, m in zip(shape, marks))


BUILD_TENSOR_SOURCE = inspect.getsource(build_tensor) + "\n\n" + inspect.getsource(grown)


def build_call(spec: TensorSpec, device: str, grow: tuple[int, ...] = ()) -> str:
    """The Python expression that builds `spec` for seed variant `salt`, as it appears in
    generated source; with `grow`, the dims it marks are `grow` larger (see `grown`)."""
    shape = f"grown({spec.shape!r}, {grow!r}, grow)" if any(grow) else repr(spec.shape)
    args = [shape, repr(spec.dtype), repr(spec.values), repr(spec.layout),
            f"reseed({spec.seed!r}, salt)"]
    if spec.perm:
        args.append(f"perm={spec.perm!r}")
    if spec.layout == "expanded":
        args.append(f"expand_dim={spec.expand_dim!r}")
    if spec.requires_grad:
        args.append("requires_grad=True")
    if device != "cpu":
        args.append(f"device={device!r}")
    return f"build_tensor({', '.join(args)})"
