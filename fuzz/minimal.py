"""A finding as the short script a maintainer reads: the shrunk function, its inputs built
with only the operations they need, the calls the failure needs, and the one check that
fails, printing both sides. It imports only torch, and exits 1 while the divergence holds.

The full checker (`fuzz.codegen.repro_script`) judges every check; this script judges one
(`Target`), as the fuzzer judged it: the same inputs bit for bit (`tensor_lines` renders
`build_tensor`'s steps for one spec), the same seeding, contexts and upstream gradients,
and for values the bound the fuzzer computed (its floor travels in the target).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from fuzz.calls import DROPOUT_SEED
from fuzz.case import (CallContext, Case, ModuleInput, ParamsInput, TensorSpec, grow_dims,
                       marked_dims, reseed)
from fuzz.check import Failure
from fuzz.codegen import backend_expression, backend_list, function_source
from fuzz.modules import module_lines
from fuzz.plan import plan_of
from fuzz.tolerance import EPS, SUBNORMAL

TENSOR_CHECKS = ("values", "nan-inf", "metadata", "stride")


@dataclass(frozen=True)
class Target:
    """The failure a minimal script shows: its check, site and condition, what it compared
    (`Failure.subject`), the call it was seen in, and for values the bound it was held to,
    `fudge` x max(eager's error, `floor`) (an exact comparison: `floor` is the allowance)."""

    check: str
    where: str
    condition: str
    subject: str = ""
    call: int = 0
    fudge: float = 0.0
    floor: float = 0.0

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in ("", 0, 0.0)}

    @staticmethod
    def from_dict(d: dict) -> "Target":
        return Target(**d)


def target_of(failure: Failure, bounds: tuple[tuple[str, float, float, float], ...]) -> Target:
    """The target for `failure`, with the bound of the worst measure of its subject."""
    fudge = floor = 0.0
    measured = [b for b in bounds if b[0] == failure.subject]
    if failure.check == "values" and measured:
        _, fudge, floor, _ = max(measured, key=lambda b: b[3])
    return Target(failure.check, failure.where, failure.condition, failure.subject,
                  failure.call, fudge, floor)


# --- inputs -----------------------------------------------------------------------------

def _value_lines(spec: TensorSpec, shape: str, seed: str) -> list[str]:
    """Lines whose last is the expression of build_tensor's base tensor (before its layout):
    the same draws from the same generator, in the same order."""
    dtype = f"torch.{spec.dtype}"
    gen = f"generator=torch.Generator().manual_seed({seed})"
    if spec.values == "padding":  # each row's keys past a drawn length are padding
        try:
            dims = ast.literal_eval(shape)
            keys, rows = repr(dims[-1]), repr(tuple(dims[:-1]) + (1,))
        except ValueError:
            keys, rows = f"{shape}[-1]", f"{shape}[:-1] + (1,)"
        lines = [f"lengths = torch.randint(0, {keys} + 1, {rows}, {gen})",
                 f"padded = torch.arange({keys}).expand({shape}) >= lengths"]
        cast = "" if spec.dtype == "float32" else f".to({dtype})"
        return lines + ["padded" if spec.dtype == "bool" else
                        f"torch.zeros({shape}).masked_fill(padded, float('-inf')){cast}"]
    if spec.is_mask:
        if spec.dtype == "bool" or spec.dtype not in EPS and spec.values != "full_rows":
            keep = f"torch.rand({shape}, {gen}) < 0.7"
        else:  # two draws from one generator
            keep = f"torch.rand({shape}, generator=g) < 0.7"
        if spec.dtype == "bool" and spec.values != "full_rows":
            return [keep]
        lines = [] if "generator=g)" not in keep else [f"g = torch.Generator().manual_seed({seed})"]
        lines += [f"keep = {keep}"] if spec.values != "additive" else \
            [f"torch.rand({shape}, generator=g)  # as sdpa-fuzz draws: keep flags, then values"]
        if spec.values == "full_rows":
            lines.append("keep[..., :1, :] = False  # the first query row attends to nothing")
        if spec.dtype not in EPS:
            return lines + ["keep" if spec.dtype == "bool" else f"keep.to({dtype})"]
        bias = f"torch.randn({shape}, generator=g) * 0.5"
        cast = "" if spec.dtype == "float32" else f".to({dtype})"
        if spec.values == "additive":
            return lines + [f"({bias}){cast}" if cast else bias]
        return lines + [f"({bias}).masked_fill(~keep, float('-inf')){cast}"]
    cast = "" if spec.dtype == "float32" else f".to({dtype})"
    if spec.values == "repeated":  # one row drawn, repeated down the rows
        try:
            dims = ast.literal_eval(shape)
            row = repr(tuple(dims[:-2]) + (1, dims[-1]))
        except ValueError:
            row = f"{shape}[:-2] + (1, {shape}[-1])"
        return [f"torch.randn({row}, {gen}).expand({shape}).contiguous(){cast}"]
    scale = {"normal": "", "tiny": " * 0.0001", "large": " * 30.0"}[spec.values]
    draw = f"torch.randn({shape}, {gen})"
    return [f"({draw}{scale}){cast}" if scale and cast else f"{draw}{scale}{cast}"]


def _layout(x: str, spec: TensorSpec, shape: str, device: str) -> str:
    """The expression that lays base tensor `x` out as the spec asks."""
    x += f".to({device!r})" if device != "cpu" else ""
    if spec.layout == "expanded":
        return f"{x}.expand({shape})"
    if spec.layout == "transposed":
        return f"{x}.transpose(-1, -2).contiguous().transpose(-1, -2)"
    if spec.layout == "permuted":
        inverse = tuple(spec.perm.index(d) for d in range(len(spec.shape)))
        return f"{x}.permute{spec.perm!r}.contiguous().permute{inverse!r}"
    if spec.layout == "offset":  # a view at offset 3 into a zeroed buffer
        return (f"torch.cat([torch.zeros(3, dtype={x}.dtype, device={x}.device), "
                f"{x}.flatten()])[3:].view({shape})")
    if spec.layout == "strided":  # every other element of a zeroed buffer
        return f"torch.stack([{x}, torch.zeros_like({x})], -1).flatten(-2)[..., ::2]"
    return x


def tensor_lines(name: str, spec: TensorSpec, device: str, shape: str, seed: str,
                 base_shape: str | None = None) -> list[str]:
    """Lines that set `name` to what `build_tensor` builds for `spec`, bit for bit: `shape`
    and `seed` are source expressions; `base_shape` is the shape drawn where it differs
    (an expanded layout draws size 1 on its expanded dim)."""
    *lines, value = _value_lines(spec, base_shape or shape, seed)
    grad = ".requires_grad_()" if spec.requires_grad else ""
    if spec.layout in ("offset", "strided"):  # they use the base tensor twice
        return lines + [f"{name} = {value}",
                        f"{name} = {_layout(name, spec, shape, device)}{grad}"]
    wrapped = value if not any(op in value for op in (" < ", " * ")) else f"({value})"
    laid = _layout(wrapped, spec, shape, device)
    return lines + [f"{name} = {value if laid == wrapped and not grad else laid}{grad}"]


def _pick(values: list) -> str:
    """A literal, or a tuple indexed by the call number where the calls differ."""
    return repr(values[0]) if len(set(values)) == 1 else f"{tuple(values)!r}[i]"


def _shape(dims: list[tuple[int, ...]]) -> str:
    if len(set(dims)) == 1:
        return repr(dims[0])
    return "(" + ", ".join(_pick([d[j] for d in dims]) for j in range(len(dims[0]))) + ",)"


def inputs_source(case: Case, calls: int, cast: bool) -> tuple[str, bool]:
    """`def inputs(...)` for the case's first `calls` calls: a fresh dict of its inputs for
    call `i` (in `dtype`, with `cast`), and whether it takes `i` (whether calls differ)."""
    grow = grow_dims(case)
    variants = [(c.reseed, c.grow) for c in case.calls[:calls]]
    varies = len(set(variants)) > 1
    body: list[str] = []
    for name, spec in case.inputs:
        if not isinstance(spec, TensorSpec):
            continue
        marks = grow.get(name, (0,) * len(spec.shape))
        dims = [tuple(d + g * m for d, m in zip(spec.shape, marks)) for _, g in variants]
        base = [tuple(1 if spec.layout == "expanded" and j == spec.expand_dim else n
                      for j, n in enumerate(d)) for d in dims]
        seeds = [reseed(spec.seed, salt) for salt, _ in variants]
        body += tensor_lines(name, spec, case.device, _shape(dims), _pick(seeds),
                             _shape(base) if base != dims else None)
    tensors = [n for n, s in case.inputs if isinstance(s, TensorSpec)]
    params = [(n, s) for n, s in case.inputs if isinstance(s, ParamsInput)]
    modules = [(n, s) for n, s in case.inputs if isinstance(s, ModuleInput)]
    made = "{" + ", ".join(f"{n!r}: {n}" for n in tensors) + "}"
    if not (cast or params or modules):
        return (f"def inputs({'i=0' if varies else ''}):\n"
                + "".join(f"    {line}\n" for line in body) + f"    return {made}\n"), varies
    body.append(f"t = {made}")
    if cast:
        body.append("if dtype is not None:  # the float64 reference: the same values")
        body.append("    t = {n: x.detach().to(dtype).requires_grad_(x.requires_grad)")
        body.append("         if x.is_floating_point() else x for n, x in t.items()}")
    for name, spec in params:
        fields = [f"t[{f!r}]" if f else "None" for f in (spec.query, spec.key, spec.value,
                                                         spec.mask)]
        body.append(f"t[{name!r}] = torch.backends.cuda.SDPAParams({', '.join(fields)}, "
                    f"{spec.dropout!r}, {spec.is_causal!r}, {spec.enable_gqa!r})")
    for name, spec in modules:
        body += module_lines(name, spec, lambda n: f"t[{n!r}]")
    args = ", ".join((["i=0"] if varies else []) + (["dtype=None"] if cast else []))
    return (f"def inputs({args}):\n" + "".join(f"    {line}\n" for line in body)
            + "    return t\n"), varies


# --- the calls --------------------------------------------------------------------------

def _random(case: Case) -> bool:
    return bool(case.program.random_statements)


def _touches_state(case: Case) -> bool:
    return case.program.sets_backend_state or any(c.backends is not None for c in case.calls)


NULL = "contextlib.nullcontext()"


def _kernel_context(c: CallContext, device: str) -> str:
    return NULL if c.backends is None else (
        f"sdpa_kernel({backend_list(c.backends)}"
        + (", set_priority=True)" if c.set_priority else ")"))


def _grad_context(c: CallContext, device: str) -> str:
    return NULL if c.grad_mode == "default" else f"torch.{c.grad_mode}()"


def _autocast_context(c: CallContext, device: str) -> str:
    return NULL if c.autocast is None else \
        f"torch.autocast({device!r}, dtype=torch.{c.autocast})"


CONTEXT_KINDS = (_kernel_context, _grad_context, _autocast_context)


def _context_item(kind, calls: tuple[CallContext, ...], device: str) -> str:
    """One `with` item: the context of this kind each call is made from, or nothing
    where none is; `(a, b)[i]` where the calls differ."""
    contexts = [kind(c, device) for c in calls]
    if all(c == NULL for c in contexts):
        return ""
    if len(set(contexts)) == 1:
        return contexts[0]
    return "(" + ",\n      ".join(contexts) + ")[i]"


def call_source(case: Case, calls: int, varies: bool, catch: bool, cast: bool,
                read_state: bool = False) -> str:
    """`def call(f, i=0, dtype=None)`: call `i` of `f` as the fuzzer makes it, from fresh
    inputs (marked dynamic for `compiled` where the case marks them) and the starting
    backend state, inside the call's context: (inputs, result, or with `catch` the
    exception; with `read_state`, the backend state right after it, still inside the
    context)."""
    lines = ["t = inputs(" + ", ".join((["i"] if varies else []) + (["dtype"] if cast else []))
             + ")"]
    marks = [f"    torch._dynamo.mark_dynamic(t[{name!r}], {d})"
             for name, dims in marked_dims(case).items() for d in dims]
    if marks:
        lines += ["if f is compiled:  # sequence lengths dynamic, as the case marks them"] + marks
    if _touches_state(case):
        lines.append("restore(START)")
    if _random(case):
        lines.append(f"torch.manual_seed({DROPOUT_SEED})  # eager and compiled draw alike")
    body = ["try:", "    return t, f(**t)", "except Exception as e:", "    return t, e"] \
        if catch else ["return t, f(**t)"]
    if read_state:
        body = ["try:", "    f(**t)", "except Exception as e:  # the state after an error "
                "counts too", '    print(f"{f.__name__} raised {e!r}")', "return state()"]
    items = [_context_item(kind, case.calls[:calls], case.device) for kind in CONTEXT_KINDS]
    items = [item for item in items if item]
    if items:
        lines += f"with {', '.join(items)}:".split("\n")
        body = ["    " + line for line in body]
    args = "f" + (", i=0" if calls > 1 else "") + (", dtype=None" if cast else "")
    return f"def call({args}):\n" + "".join(f"    {line}\n" for line in lines + body)


STATE_SOURCE = """\
FLAGS = ("flash", "mem_efficient", "math", "cudnn")
def state():  # which SDPA backends are enabled, and their priority order
    return ({f: getattr(torch.backends.cuda, f"{f}_sdp_enabled")() for f in FLAGS},
            list(torch._C._get_sdp_priority_order()))
START = state()
def restore(s):
    [getattr(torch.backends.cuda, f"enable_{f}_sdp")(on) for f, on in s[0].items()]
    torch._C._set_sdp_priority_order(s[1])
"""

GRADS_SOURCE = """\
def grads(t, result, like=None):  # backward from seeded upstream gradients, as sdpa-fuzz
    leaves = torch.utils._pytree.tree_leaves(result)
    outs = [(j, x) for j, x in enumerate(leaves) if isinstance(x, torch.Tensor) and x.grad_fn]
    ups = [torch.randn(x.shape, generator=torch.Generator().manual_seed(7919 * (j + 1)))
           .to((like or leaves)[j].dtype).to(x) for j, x in outs]
    wanted = [n for n, x in t.items() if isinstance(x, torch.Tensor) and x.requires_grad]
    got = torch.autograd.grad([x for _, x in outs], [t[n] for n in wanted], ups,
                              allow_unused=True)
    return dict(zip(wanted, got))
"""

ERROR_VS_REFERENCE = """\
def error(x):  # largest error against the float64 reference `r`, where both are finite
    ok = x.isfinite() & r.isfinite()
    return (x.double() - r.double())[ok].abs().max().item()
"""

BACKWARD_SOURCE = """\
def backward(t, result):  # what backward raised, or None
    try:
        grads(t, result)
    except Exception as e:
        return e
"""


# --- the check --------------------------------------------------------------------------

def _leaf(case: Case, result: str, subject: str) -> str:
    """The expression, on a call's `result`, for the returned leaf named `subject`."""
    returns = case.program.returns
    head = subject.split("[")[0].split(".")[0]
    rest = subject[len(head):]
    return result + ("" if len(returns) == 1 else f"[{returns.index(head)}]") + rest


def _compare(target: Target, plan_ops: int) -> list[str]:
    """Judge eager's `e` against compiled's `c` (and float64's `r`) as the target says."""
    check, dtype = target.check, target.condition
    if check == "metadata":
        return ["meta = lambda x: (tuple(x.shape), x.dtype, x.device, x.requires_grad)",
                'print("shape, dtype, device, requires_grad: eager", meta(e))',
                'print("                                  compiled", meta(c))',
                "raise SystemExit(meta(e) != meta(c))"]
    if check == "stride":
        return ["strides = lambda x: [s for n, s in zip(x.shape, x.stride()) if n > 1]",
                'print("strides of the dims of size > 1: eager", strides(e), '
                '"compiled", strides(c))',
                "raise SystemExit(strides(e) != strides(c))"]
    if check == "nan-inf":
        return ["kinds = lambda x: (x.isnan(), x.isposinf(), x.isneginf())",
                'print("NaN, +inf, -inf: eager", [int(k.sum()) for k in kinds(e)], '
                '"compiled", [int(k.sum()) for k in kinds(c)])',
                "raise SystemExit(any(not torch.equal(a, b) for a, b in zip(kinds(e), kinds(c))))"]
    if dtype not in EPS:  # integers, bools, Python values: equal or not
        return ['print("eager:   ", e)', 'print("compiled:", c)',
                "raise SystemExit(not (torch.equal(e, c) if isinstance(e, torch.Tensor) else e == c))"]
    if not target.fudge:  # no attention feeds it: held to eager's own value
        return _exact(dtype, plan_ops)
    return [f"allowed = {target.fudge:g} * max(error(e), {target.floor:.6g})  # sdpa-fuzz's "
            "rounding floor for this case",
            'print(f"max error vs float64: eager {error(e):.3g}, compiled {error(c):.3g}, '
            'allowed {allowed:.3g}")',
            "raise SystemExit(error(c) > allowed)"]


OUTCOME_LINES = [
    "root = lambda e: root(e.__cause__ or e.__context__) if isinstance(e, Exception) and "
    "(e.__cause__ or e.__context__) else e  # the innermost exception, through Dynamo's "
    "wrappers",
    'print("eager:   ", repr(e), "\\n  innermost:", repr(root(e)))',
    'print("compiled:", repr(c), "\\n  innermost:", repr(root(c)))',
    "x = torch._dynamo.exc  # a compiler failure, or Dynamo refusing the program, is no "
    "user error",
    "failed = isinstance(c, (x.BackendCompilerFailed, x.InternalTorchDynamoError)) or "
    "isinstance(c, x.Unsupported) and c.__cause__ is None",
    "raise SystemExit((e is None) != (c is None) or e is not None and "
    "(failed or type(root(e)) is not type(root(c))))"]


def _earlier_calls(count: int) -> list[str]:
    """The compiled calls before the target's, for the state they leave (Dynamo's caches,
    the SDPA backend state). One that raises is let go, as the fuzzer's run let it go: it
    raised in eager too, or the fuzzer would have reported that call (a call under
    `sdpa_kernel` of a backend the device lacks raises in both)."""
    if count == 1:
        return ["with contextlib.suppress(Exception):  # raises in eager too, if at all",
                "    call(compiled, 0)"]
    return [f"for j in range({count}):  # the earlier calls, for the state they leave",
            "    with contextlib.suppress(Exception):  # raises in eager too, if at all",
            "        call(compiled, j)"] if count else []


def check_source(case: Case, target: Target) -> tuple[list[str], set[str]]:
    """The lines that make the calls the target needs and judge it, and the helpers they
    use (`state`, `grads`, `backward`, `error`)."""
    i = f", {target.call}" if target.call else ""
    lines = _earlier_calls(target.call)
    check, subject = target.check, target.subject
    if check in ("frames", "recompile"):
        return _frames_lines(case, target), set()
    if check in ("crash", "timeout"):
        return lines + ["call(fn)", "call(compiled)",
                        'print("compiled returned: no crash, no hang")'], set()
    if check == "fullgraph":
        return [f"_, c = call(compiled{i})", 'print("compiled:", repr(c))',
                "# the program breaks the graph, so fullgraph=True must raise Unsupported",
                "raise SystemExit(not isinstance(c, torch._dynamo.exc.Unsupported))"], set()
    if check == "backend-state":
        return lines + [f"after_eager = call(fn{i})", f"after_compiled = call(compiled{i})",
                        'print("SDPA backend state after the call: eager  ", after_eager)',
                        'print("                                   compiled", after_compiled)',
                        "raise SystemExit(after_eager != after_compiled)"], {"state"}
    if check == "outcome" and target.where != "backward":
        return lines + [f"_, e = call(fn{i})", f"_, c = call(compiled{i})", *OUTCOME_LINES], \
            set()
    lines += [f"te, out_e = call(fn{i})", f"tc, out_c = call(compiled{i})"]
    if check == "outcome":
        return lines + ["e, c = backward(te, out_e), backward(tc, out_c)", *OUTCOME_LINES], \
            {"grads", "backward"}
    if check == "mutation":
        return lines + _mutation_lines(target, plan_of(case).exact_ops), set()
    if check == "structure" and subject and not subject.startswith("grad-"):
        return lines + [f"e, c = {_leaf(case, 'out_e', subject)}, "
                        f"{_leaf(case, 'out_c', subject)}",
                        f'print("{subject}: eager", type(e).__name__, "compiled", '
                        "type(c).__name__)",
                        "raise SystemExit(type(e) is not type(c))"], set()
    if check == "structure" and not subject.startswith("grad-"):
        return lines + ["se, sc = (torch.utils._pytree.tree_structure(x) for x in "
                        "(out_e, out_c))",
                        'print("eager returns   ", se)', 'print("compiled returns", sc)',
                        "raise SystemExit(se != sc)"], set()
    if check == "identity":
        return lines + [f"e, c = {_leaf(case, 'out_e', subject)}, "
                        f"{_leaf(case, 'out_c', subject)}",
                        "ide = [n for n, x in te.items() if x is e]",
                        "idc = [n for n, x in tc.items() if x is c]",
                        'print("returns an input itself: eager", ide, "compiled", idc)',
                        "raise SystemExit(ide != idc)"], set()
    reference = check == "values" and bool(target.fudge)
    if subject.startswith("grad-"):  # a gradient, from the same seeded upstream gradients
        name = subject[len("grad-"):]
        lines.append(f"e, c = grads(te, out_e)[{name!r}], grads(tc, out_c)[{name!r}]")
        if check == "structure":
            return lines + ['print("has a gradient: eager", e is not None, "compiled", '
                            'c is not None)', "raise SystemExit((e is None) != (c is None))"], \
                {"grads"}
        if reference:
            lines += [f"tr, out_r = call(fn{i}, dtype=torch.float64)",
                      "r = grads(tr, out_r, like=torch.utils._pytree.tree_leaves(out_e))"
                      f"[{name!r}]"]
        return lines + _compare(target, plan_of(case).exact_ops), \
            {"grads"} | ({"error"} if reference else set())
    if _leaf(case, "out_e", subject) == "out_e":  # the whole result
        lines[-2:] = [f"_, e = call(fn{i})", f"_, c = call(compiled{i})"]
    else:
        lines.append(f"e, c = {_leaf(case, 'out_e', subject)}, "
                     f"{_leaf(case, 'out_c', subject)}")
    if reference and _leaf(case, "out_r", subject) == "out_r":
        lines.append(f"_, r = call(fn{i}, dtype=torch.float64)")
    elif reference:
        lines += [f"_, out_r = call(fn{i}, dtype=torch.float64)",
                  f"r = {_leaf(case, 'out_r', subject)}"]
    return lines + _compare(target, plan_of(case).exact_ops), {"error"} if reference else set()


def _mutation_lines(target: Target, plan_ops: int) -> list[str]:
    x = target.subject
    if target.where == "input-storage":
        return ["def storage(x):  # every element of the buffer the view lies in",
                "    return torch.empty(0, dtype=x.dtype, device=x.device).set_("
                "x.untyped_storage())",
                f"e, c = storage(te[{x!r}].detach()), storage(tc[{x!r}].detach())",
                f'print(f"the buffer under input {x}: {{int((e != c).sum())}} element(s) '
                'differ between eager and compiled")',
                "raise SystemExit(not torch.equal(e, c))"]
    lines = [f"e, c = te[{x!r}].detach(), tc[{x!r}].detach()",
             f'print("input {x} after the call: eager   ", e.flatten()[:6].tolist())',
             f'print("{" " * len(x)}                  compiled", c.flatten()[:6].tolist())']
    if target.condition not in EPS:
        return lines + ["raise SystemExit(not torch.equal(e, c))"]
    return lines + _exact(target.condition, plan_ops)


def _exact(dtype: str, ops: int) -> list[str]:
    """Compiled `c` against eager's `e`: NaNs alike, and within `ops` ulps of `dtype` at
    eager's magnitude (one per elementwise op that may round differently)."""
    return ["ok = e.isfinite() & c.isfinite()",
            "err = (c.double() - e.double())[ok].abs().max().item() if ok.any() else 0.0",
            f"allowed = max({ops} * {EPS[dtype]!r} * e[ok].abs().max().item() if ok.any() else "
            f"0.0, {ops * SUBNORMAL[dtype]!r})  # {ops} ulp(s) of {dtype}",
            'print(f"compiled differs from eager by {err:.3g}; allowed {allowed:.3g}")',
            "raise SystemExit(err > allowed or not torch.equal(e.isnan(), c.isnan()))"]


# `import torch` does not import torch._dynamo.testing: a script that only names it fails
# in a fresh process (every frames and recompile finding was quarantined for it).
COUNTER_SOURCE = '''
import torch._dynamo.testing


class Accepted(torch._dynamo.testing.CompileCounterWithBackend):
    """Graphs the backend accepted, as sdpa-fuzz counts them: less those it threw back
    with RestartAnalysis (AOTAutograd does for a graph with a symbolic float)."""

    def __call__(self, gm, example_inputs):
        try:
            return super().__call__(gm, example_inputs)
        except torch._dynamo.exc.RestartAnalysis:
            self.frame_count -= 1
            raise
'''


def _frames_lines(case: Case, target: Target) -> list[str]:
    plan = plan_of(case)
    if target.where == "first-call":
        return ["call(compiled)",
                'print("graphs compiled on the first call:", counter.frame_count, '
                f'"- the frame model predicts {plan.expected_frames}")',
                f"raise SystemExit(counter.frame_count != {plan.expected_frames})"]
    if target.where == "repeat":
        return ["call(compiled)", "before = counter.frame_count", "call(compiled)",
                'print("graphs compiled by repeating the first call with equal inputs:", '
                "counter.frame_count - before)",
                "raise SystemExit(counter.frame_count != before)"]
    allowed = (0,) if plan.size_rules is None else plan.size_rules[target.call]
    return _earlier_calls(target.call) + [
        "before = counter.frame_count", f"call(compiled, {target.call})",
        f'print("graphs compiled by call {target.call}:", counter.frame_count - before, '
        f'"- allowed: {" or ".join(map(str, allowed))}")',
        f"raise SystemExit(counter.frame_count - before not in {allowed!r})"]


# --- the script -------------------------------------------------------------------------

def title(target: Target) -> str:
    return {
        "values": "compiled values differ from eager beyond rounding",
        "nan-inf": "compiled NaN/Inf positions differ from eager",
        "metadata": "compiled output shape/dtype/requires_grad differs from eager",
        "stride": "compiled output strides differ from eager",
        "outcome": "compiled and eager raise differently",
        "structure": "compiled returns a different structure from eager",
        "identity": "compiled does not return the input object eager returns",
        "mutation": "an input's value after the call differs between eager and compiled",
        "backend-state": "the SDPA backend state after the call differs from eager",
        "frames": "Dynamo compiles a different number of graphs than the frame model says",
        "recompile": "Dynamo recompiles where its guards should hold",
        "fullgraph": "fullgraph=True does not raise on a graph break",
        "crash": "the compiled call crashes the process",
        "timeout": "the compiled call hangs",
    }.get(target.check, target.check)


def minimal_script(case: Case, target: Target, backend: str) -> str:
    """The minimal repro of `target` on `case`, compiled with `backend`."""
    calls = target.call + 1
    cast = target.check == "values" and bool(target.fudge)
    inputs, varies = inputs_source(case, calls, cast)
    lines, helpers = check_source(case, target)
    catch = target.check not in TENSOR_CHECKS + ("identity", "structure")
    caller = call_source(case, calls, varies, catch, cast,
                         read_state=target.check == "backend-state")
    source = function_source(case)
    imports, backend_expr = backend_expression(backend)
    kwargs = ", fullgraph=True" if case.compile.fullgraph else ""
    if case.compile.dynamic is not None:
        kwargs += f", dynamic={case.compile.dynamic!r}"
    if case.compile.mode is not None:
        kwargs += f", mode={case.compile.mode!r}"
    head = [f'"""sdpa-fuzz, backend {backend!r}: {title(target)}',
            f"({target.check}:{target.where}:{target.condition}). Exits 1 while it diverges, "
            '0 once fixed."""']
    if "contextlib." in caller + "\n".join(lines):
        head.append("import contextlib")
    if imports:
        head.append("import sys\n" + imports.rstrip())
    if "sdpa_kernel(" in caller and "import SDPBackend" not in source:
        source = source.replace("import torch.nn.functional as F\n", "import torch.nn.functional "
                                "as F\nfrom torch.nn.attention import SDPBackend, sdpa_kernel\n")
    if "F." not in source:  # after the line above, which it would otherwise take away
        source = source.replace("import torch.nn.functional as F\n", "")
    parts = ["\n".join(head) + "\n" + source]
    if _touches_state(case) or "state" in helpers:
        parts.append(STATE_SOURCE)
    parts += [inputs, caller]
    parts += [src for name, src in (("grads", GRADS_SOURCE),
                                    ("backward", BACKWARD_SOURCE),
                                    ("error", ERROR_VS_REFERENCE)) if name in helpers]
    setup = []
    if case.compile.freezing:
        setup.append("torch._inductor.config.freezing = True  # Inductor's freezing: "
                     "parameters folded under no_grad")
    if _random(case):
        setup.append("torch._inductor.config.fallback_random = True  # draw as eager does")
    if target.check in ("frames", "recompile"):
        parts.append(COUNTER_SOURCE)
        setup += [f"counter = Accepted({backend_expr})",
                  f"compiled = torch.compile(fn, backend=counter{kwargs})"]
    else:
        setup.append(f"compiled = torch.compile(fn, backend={backend_expr}{kwargs})")
    parts.append("\n".join(setup + lines) + "\n")
    text = "\n".join(p.strip("\n") + "\n" for p in parts).lstrip("\n")
    return text.replace("\n\n\n", "\n\n")
