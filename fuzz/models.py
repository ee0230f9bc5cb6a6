"""A model's attention layer as the lines of source a model would have.

Each knob of `ModelAttention` is a choice real models make in their source: `F.linear` or
`x @ w.T`, one fused qkv weight cut by `split`, `chunk` or `unbind`, heads by `view`,
`reshape` or `unflatten`, rotary embeddings, a KV cache grown by `torch.cat`, Llama's
`repeat_kv`. Sizes are read from the tensors (`x.shape`), as models do, so that dynamic
shapes trace them as symbols.
"""

from __future__ import annotations

from fuzz.case import ModelAttention


def _project(a: ModelAttention, x: str, w: str) -> str:
    return f"F.linear({x}, {w})" if a.project == "linear" else f"{x} @ {w}.T"


def _heads(a: ModelAttention, t: str, heads: int) -> str:
    """(B, L, heads*E) to (B, heads, L, E)."""
    e, t = a.head_dim, f"({t})" if " " in t else t
    split = {"view": f"{t}.view(b, l, {heads}, {e})", "reshape": f"{t}.reshape(b, l, {heads}, {e})",
             "unflatten": f"{t}.unflatten(-1, ({heads}, {e}))"}[a.head_op]
    return f"{split}.transpose(1, 2)"


def _rotated(t: str, e: int, cos: str, sin: str) -> str:
    """`t * cos + rotate_half(t) * sin`, with rotate_half written out as models write it."""
    half = e // 2
    return f"{t} * {cos} + torch.cat((-{t}[..., {half}:], {t}[..., :{half}]), dim=-1) * {sin}"


def model_attention_lines(a: ModelAttention) -> list[str]:
    """The layer, from `a.x` to `a.out`; its locals are prefixed with `a.out`."""
    o, h, kvh, e = a.out, a.heads, a.kv_heads, a.head_dim
    q, k, v = f"{o}_q", f"{o}_k", f"{o}_v"
    lines = [f"b, l = {a.x}.shape[0], {a.x}.shape[1]"]
    if not a.weights:
        lines += [f"{q} = {k} = {v} = {_heads(a, a.x, h)}"]
    elif len(a.weights) == 3:
        lines += [f"{n} = {_heads(a, _project(a, a.x, w), heads)}"
                  for n, w, heads in zip((q, k, v), a.weights, (h, kvh, kvh))]
    else:
        lines.append(f"{o}_qkv = {_project(a, a.x, a.weights[0])}")
        if a.split == "unbind":
            lines += [f"{q}, {k}, {v} = {o}_qkv.view(b, l, 3, {h}, {e}).unbind(2)"]
            lines += [f"{n} = {n}.transpose(1, 2)" for n in (q, k, v)]
        else:
            cut = ("chunk(3, dim=-1)" if a.split == "chunk"
                   else f"split([{h * e}, {kvh * e}, {kvh * e}], dim=-1)")
            lines += [f"{q}, {k}, {v} = {o}_qkv.{cut}"]
            lines += [f"{n} = {_heads(a, n, heads)}" for n, heads in ((q, h), (k, kvh), (v, kvh))]
    if a.rotary:
        lines += [f"{n} = {_rotated(n, e, *a.rotary)}" for n in (q, k)]
    if a.cache:
        lines += [f"{n} = torch.cat([{past}, {n}], dim=2)" for n, past in zip((k, v), a.cache)]
    if a.gqa == "repeat_kv":
        rep = h // kvh
        lines += [f"{n} = {n}[:, :, None].expand(b, {kvh}, {rep}, {n}.shape[2], {e})"
                  f".reshape(b, {h}, {n}.shape[2], {e})" for n in (k, v)]
    args = [q, k, v] + [f"{name}={value!r}" for name, value, plain in (
        ("dropout_p", a.dropout_p, 0.0), ("is_causal", a.is_causal, False),
        ("scale", a.scale, None), ("enable_gqa", a.gqa == "enable", False)) if value != plain]
    if a.mask is not None:
        args.insert(3, f"attn_mask={a.mask}")
    lines.append(f"{o} = F.scaled_dot_product_attention({', '.join(args)})")
    merged = {"reshape": f"{o}.transpose(1, 2).reshape(b, l, {h * e})",
              "contiguous_view": f"{o}.transpose(1, 2).contiguous().view(b, l, {h * e})",
              "flatten": f"{o}.transpose(1, 2).flatten(2)"}[a.merge]
    lines.append(f"{o} = {merged}")
    if a.out_proj is not None:
        lines.append(f"{o} = {_project(a, o, a.out_proj)}")
    return lines
