"""Hand-written attention as the lines of source a model would have.

Inductor's `fuse_attention` pass matches the ATen graph these lines trace to, so every
structural choice of a `HandAttention` is a real choice in the source: `x / s` or
`x * s`, `k.transpose(-2, -1)` or `k.permute(...)`, `torch.where` or `masked_fill`.
"""

from __future__ import annotations

import math

from fuzz.case import Case, HandAttention, walk
from fuzz.tolerance import EPS

MATMUL = {"@": "{} @ {}", "matmul": "torch.matmul({}, {})", "bmm": "torch.bmm({}, {})",
          "einsum": 'torch.einsum("...ij,...jk->...ik", {}, {})',
          # scores as an addmm onto zeros, the probabilities times values by bmm
          "baddbmm": "torch.baddbmm({0}.new_zeros(1, 1, 1), {0}, {1})"}
VALUE_MATMUL = {"baddbmm": MATMUL["bmm"]}
# GPT-2's `bias` buffer: a causal mask as large as any sequence a case draws, sliced.
CAUSAL_BUFFER_SIZE = 256
COMPARE = {"none": "{}", "not": "~{}", "eq0": "({} == 0)", "ne0": "({} != 0)",
           "gt0": "({} > 0)", "lt1": "({} < 1)"}
SOFTMAX = {"method": "{x}.softmax({dim}{dtype})", "torch": "torch.softmax({x}, {dim}{dtype})",
           "functional": "F.softmax({x}, dim={dim}{dtype})"}


def logical_head_dim(a: HandAttention, query_shape: tuple[int, ...]) -> int:
    """E as the scores see it: the query's last dim after the layout's permutation."""
    return query_shape[a.perm[-1]] if a.perm else query_shape[-1]


def scale_value(a: HandAttention, head_dim: int) -> float:
    """The number the source divides or multiplies by."""
    if a.scale is not None:
        return a.scale
    root = math.sqrt(head_dim)
    return root if a.scale_op in ("div", "query_div") else 1 / root


def effective_scale(a: HandAttention, head_dim: int) -> float:
    """The factor the scores end up multiplied by (SDPA's `scale`)."""
    if a.scale_op == "none":
        return 1.0
    value = scale_value(a, head_dim)
    if a.scale_op in ("div", "query_div"):
        return math.inf if value == 0 else 1 / value
    return value


def _scale_expr(a: HandAttention, query: str, head_dim: int) -> str:
    value = scale_value(a, head_dim)
    if a.scale_type == "size":
        root = f"math.sqrt({query}.size(-1))"
        return root if a.scale_op in ("div", "query_div") else f"(1 / {root})"
    if a.scale_type == "full":  # as GPT-2 writes it
        return f"torch.full([], {value!r}, dtype={query}.dtype, device={query}.device)"
    if a.scale_type == "tensor":
        return f"torch.tensor({value!r}, device={query}.device)"
    if a.scale_type == "tensor_float64":
        return f"torch.tensor({value!r}, dtype=torch.float64, device={query}.device)"
    if a.scale_type == "parameter":
        return f"_{a.out}_scale"
    return repr(value)


def hand_attention_globals(a: HandAttention, head_dim: int, device: str) -> list[str]:
    """Module-level definitions the statement reads, as a model's `__init__` would make
    them: a scale held in an `nn.Parameter`, GPT-2's causal `bias` buffer."""
    found = []
    if a.scale_type == "parameter":
        found.append(f"_{a.out}_scale = torch.nn.Parameter(torch.tensor("
                     f"{scale_value(a, head_dim)!r}, device={device!r}))")
    if a.causal == "buffer":
        n = CAUSAL_BUFFER_SIZE
        found.append(f"_{a.out}_bias = torch.ones({n}, {n}, dtype=torch.bool, "
                     f"device={device!r}).tril().view(1, 1, {n}, {n})")
    return found


def _fill_expr(a: HandAttention, scores: str) -> str:
    literal = f"float({str(a.fill)!r})" if math.isinf(a.fill) else repr(a.fill)
    if a.fill_type == "finfo_min":
        return f"torch.finfo({scores}.dtype).min"
    if a.fill_type == "tensor":
        return f"torch.full([], {literal}, dtype={scores}.dtype, device={scores}.device)"
    if a.fill_type == "tensor_float32":
        return f"torch.full([], {literal}, dtype=torch.float32, device={scores}.device)"
    return literal


def hand_attention_lines(a: HandAttention, head_dim: int) -> list[str]:
    """The statement's lines in `fn`; helper names are prefixed with its output's name."""
    o, q, k, v = a.out, a.query, a.key, a.value
    w = f"{o}_w"
    lines = []
    if a.layout == "bshe":
        perm = ", ".join(map(str, a.perm))
        for name in ("q", "k", "v"):
            lines.append(f"{o}_{name} = {dict(q=q, k=k, v=v)[name]}.permute({perm})")
        q, k, v = f"{o}_q", f"{o}_k", f"{o}_v"
    elif a.layout == "mbart":  # the query viewed, keys and values reshaped, as MBart does
        lines += [f"{o}_q = {q}.view({q}.size(0) * {q}.size(1), -1, {q}.size(-1))",
                  f"{o}_k = {k}.reshape({k}.size(0) * {k}.size(1), -1, {k}.size(-1))",
                  f"{o}_v = {v}.reshape({v}.size(0) * {v}.size(1), -1, {v}.size(-1))"]
        q, k, v = f"{o}_q", f"{o}_k", f"{o}_v"
    scale = _scale_expr(a, q, head_dim)
    if a.scale_op in ("query_div", "query_mul"):
        lines.append(f"{o}_q = {q} {'/' if a.scale_op == 'query_div' else '*'} {scale}")
        q = f"{o}_q"
    key_t = {"transpose": f"{k}.transpose(-2, -1)", "transpose_rev": f"{k}.transpose(-1, -2)",
             "mT": f"{k}.mT",
             "permute": f"{k}.permute({', '.join(map(str, a.key_perm))})"}[a.key_t]
    matmul = MATMUL[a.matmul]
    lines.append(f"{w} = {matmul.format(q, key_t)}")
    scale_line = {"div": f"{w} = {w} / {scale}", "mul": f"{w} = {w} * {scale}"}.get(a.scale_op)
    if scale_line and a.order == "scale_first":
        lines.append(scale_line)
    four_d = a.scores_rank == 3 and (a.mask is not None or a.causal != "none")
    if four_d:
        heads = a.heads if a.layout == "flat" else f"{a.query}.size(1)"
        lines.append(f"{w} = {w}.view(-1, {heads}, {w}.size(-2), {w}.size(-1))")
    fill = _fill_expr(a, w)
    if a.mask is not None:
        m = COMPARE[a.mask_cmp].format(a.mask)
        if a.mask_view:
            m = f"{m}.view({a.mask}.size(0), 1, 1, {a.mask}.size(-1))"
        if a.expand_mask:
            m = f"{m}.expand_as({w})"
        lines.append({"add": f"{w} = {w} + {m}",
                      "where": f"{w} = torch.where({m}, {w}, {fill})",
                      "masked_fill": f"{w} = {w}.masked_fill({m}, {fill})"}[a.mask_op])
    if a.causal != "none":
        ones = f"torch.ones({w}.size(-2), {w}.size(-1), dtype=torch.bool, device={w}.device)"
        if a.causal == "tril":
            lines += [f"{o}_causal = {ones}.tril(diagonal={a.causal_diagonal})",
                      f"{w} = torch.where({o}_causal, {w}, {fill})"]
        elif a.causal == "triu":
            lines += [f"{o}_causal = {ones}.triu(diagonal={a.causal_diagonal + 1})",
                      f"{w} = {w}.masked_fill({o}_causal, {fill})"]
        elif a.causal == "band":  # each query sees the `window` keys up to its diagonal
            lines += [f"{o}_causal = {ones}.tril(diagonal={a.causal_diagonal}) & "
                      f"{ones}.triu(diagonal={a.causal_diagonal - a.window + 1})",
                      f"{w} = torch.where({o}_causal, {w}, {fill})"]
        else:  # GPT-2: bias[:, :, key_length - query_length : key_length, :key_length]
            lines += [f"{o}_causal = _{o}_bias[:, :, {w}.size(-1) - {w}.size(-2) : "
                      f"{w}.size(-1), : {w}.size(-1)]",
                      f"{w} = torch.where({o}_causal, {w}, {fill})"]
    if four_d:
        lines.append(f"{w} = {w}.view(-1, {w}.size(-2), {w}.size(-1))")
    if scale_line and a.order == "mask_first":
        lines.append(scale_line)
    if a.upcast == "float":
        lines.append(f"{w} = {w}.float()")
    dtype = ", dtype=torch.float32" if a.upcast == "dtype_kwarg" else ""
    probs = SOFTMAX[a.softmax_fn].format(x=w, dim=a.softmax_dim, dtype=dtype)
    probs += {"none": "", "query": f".to({a.query}.dtype)", "type_as_value": f".type_as({v})",
              "float16": ".to(torch.float16)", "bfloat16": ".to(torch.bfloat16)"}[a.cast_back]
    lines.append(f"{w} = {probs}")
    if a.cast_back in ("float16", "bfloat16"):
        lines.append(f"{o}_v = {v}.to(torch.{a.cast_back})")
        v = f"{o}_v"
    if a.dropout != "none":
        p = 0.0 if a.dropout == "zero" else a.dropout_p
        training = ", training=False" if a.dropout == "eval" else ""
        lines.append(f"{w} = F.dropout({w}, p={p!r}{training})")
    lines.append(f"{o} = {VALUE_MATMUL.get(a.matmul, matmul).format(w, v)}")
    if a.layout == "mbart":
        lines.append(f"{o} = {o}.view({a.query}.size(0), {a.query}.size(1), {o}.size(-2), "
                     f"{o}.size(-1))")
    if a.transpose_out:
        lines.append(f"{o} = {o}.transpose(-3, -2)")
    return lines


def program_precision(case: Case) -> str | None:
    """The coarsest dtype hand-written attention casts its scores through (`.float()`, a
    softmax dtype, a cast back to a literal dtype), or None. The float64 run makes the
    same casts, so its answer carries their rounding, and implementations that round in
    different places may differ by that much."""
    dtypes = []
    for a in walk(case.program.body):
        if not isinstance(a, HandAttention):
            continue
        if a.upcast != "none":
            dtypes.append("float32")
        if a.cast_back in ("float16", "bfloat16"):
            dtypes.append(a.cast_back)
    return max(dtypes, key=EPS.__getitem__, default=None)
