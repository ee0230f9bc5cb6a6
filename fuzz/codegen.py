"""A Case as real Python source: the function under test, and the standalone repro script.

Dynamo traces bytecode, so the function under test must be a plain `def` as a user would
write it, not a closure assembled at run time. The repro script is that same source with
the input builder and a small, torch-only checker around it.
"""

from __future__ import annotations

import inspect
import math

from fuzz.case import (DROPOUT_SEED, Attention, BuildParams, Case, GraphBreak, HandAttention,
                       KernelBlock, Mutate, ParamsAttr, ParamsInput, ReadBackends, ReadFlag,
                       SetFlag, Shift, Statement, TensorSpec, exact_ops, fed_by_attention,
                       grow_dims, marked_dims, reseed, walk)
from fuzz.frames import must_break, predict_frames, size_recompiles
from fuzz import errors, tolerance
from fuzz.handwritten import (effective_scale, hand_attention_lines, logical_head_dim,
                              program_precision)
from fuzz.kernels import MathSDPA
from fuzz.materialize import BUILD_TENSOR_SOURCE, build_call
from fuzz.tolerance import gradient_bounds, score_conditioning

RESEED_SOURCE = inspect.getsource(reseed)
# The error-parity rule, as the oracle applies it: the module's own code, less its docstring.
ERRORS_SOURCE = inspect.getsource(errors).split('"""', 2)[2].strip() + "\n"


def _tolerance_source() -> str:
    """`measure_exact` and what it needs, from fuzz.tolerance itself."""
    constants = {name: getattr(tolerance, name) for name in ("EPS", "SUBNORMAL", "TINY")}
    return ("from dataclasses import dataclass\n\n"
            + "".join(f"{name} = {value!r}\n" for name, value in constants.items())
            + "\n\n" + inspect.getsource(tolerance.ErrorMeasure)
            + "\n\n" + inspect.getsource(tolerance.measure_exact))

HEADER = "import torch\nimport torch.nn.functional as F\n"
KERNEL_IMPORT = "from torch.nn.attention import SDPBackend, _cur_sdpa_kernel_backends, sdpa_kernel\n"
PARAMS_LINE = ("# Traceable the way PyTorch's own test makes it (test/dynamo/test_sdpa.py).\n"
               "SDPAParams = torch._dynamo.allow_in_graph(torch.backends.cuda.SDPAParams)\n")
BREAK_HELPERS = {
    "helper": "def _break_1():\n    torch._dynamo.graph_break()\n",
    "helper2": "def _break_2():\n    _break_1()\n",
}
FLAG_GETTERS = {"flash": "flash_sdp_enabled", "mem_efficient": "mem_efficient_sdp_enabled",
                "math": "math_sdp_enabled", "cudnn": "cudnn_sdp_enabled"}


def backend_list(backends: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"SDPBackend.{b}" for b in backends) + "]"


def kernel_call(backends: tuple[str, ...], set_priority: bool) -> str:
    return f"sdpa_kernel({backend_list(backends)}" + (", set_priority=True)" if set_priority
                                                      else ")")


def _attention(stmt: Attention) -> str:
    args = [stmt.query, stmt.key, stmt.value]
    if stmt.mask is not None:
        args.append(f"attn_mask={stmt.mask}")
    if stmt.dropout_p:
        args.append(f"dropout_p={stmt.dropout_p!r}")
    if stmt.is_causal:
        args.append("is_causal=True")
    if stmt.scale is not None:
        args.append(f"scale={stmt.scale!r}")
    if stmt.enable_gqa:
        args.append("enable_gqa=True")
    return f"{stmt.out} = F.scaled_dot_product_attention({', '.join(args)})"


def _mutate(stmt: Mutate) -> str:
    t, v = stmt.target, repr(stmt.value)
    return {"add_": f"{t}.add_({v})", "mul_": f"{t}.mul_({v})",
            "copy_": f"{t}.copy_({t} * {v})", "iadd": f"{t} += {v}",
            "setitem": f"{t}[..., 0] = {v}"}[stmt.method]


def _params(p: BuildParams | ParamsInput, ref=lambda name: name) -> str:
    mask = ref(p.mask) if p.mask is not None else "None"
    return (f"SDPAParams({ref(p.query)}, {ref(p.key)}, {ref(p.value)}, {mask}, "
            f"{p.dropout!r}, {p.is_causal!r}, {p.enable_gqa!r})")


class _Emitter:
    """Turns statements into lines of `fn`, collecting the module-level helpers they use."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.helpers: list[str] = []
        self.uses_kernel = False
        self.uses_params = False
        self.uses_math = False
        self.shapes = shapes
        self.defined = list(shapes)

    def block(self, body: tuple[Statement, ...]) -> list[str]:
        return [line for stmt in body for line in self.statement(stmt)]

    def statement(self, stmt: Statement) -> list[str]:
        if isinstance(stmt, Attention):
            lines = [_attention(stmt)]
        elif isinstance(stmt, Mutate):
            lines = [_mutate(stmt)]
        elif isinstance(stmt, BuildParams):
            self.uses_params = True
            lines = [f"{stmt.out} = {_params(stmt)}"]
        elif isinstance(stmt, ParamsAttr):
            lines = [f"{stmt.out} = {stmt.params}.{stmt.attr}"]
        elif isinstance(stmt, Shift):
            lines = [f"{stmt.out} = {stmt.source} + {stmt.value!r}"]
        elif isinstance(stmt, GraphBreak):
            lines = self._graph_break(stmt.place)
        elif isinstance(stmt, ReadBackends):
            self.uses_kernel = True
            arg = "with_priority=True" if stmt.with_priority else ""
            lines = [f"{stmt.out} = _cur_sdpa_kernel_backends({arg})"]
        elif isinstance(stmt, ReadFlag):
            lines = [f"{stmt.out} = torch.backends.cuda.{FLAG_GETTERS[stmt.flag]}()"]
        elif isinstance(stmt, SetFlag):
            lines = [f"torch.backends.cuda.enable_{stmt.flag}_sdp({stmt.enabled!r})"]
        elif isinstance(stmt, HandAttention):
            self.uses_math |= stmt.scale_type == "size"
            lines = hand_attention_lines(stmt, logical_head_dim(stmt, self.shapes[stmt.query]))
        else:
            return self._kernel_block(stmt)
        if getattr(stmt, "out", None):
            self.defined.append(stmt.out)
        return lines

    def _graph_break(self, place: str) -> list[str]:
        if place == "top":
            return ["torch._dynamo.graph_break()"]
        if place == "loop":
            return ["for _ in range(2):", "    torch._dynamo.graph_break()"]
        for needed in ("helper", "helper2")[: 1 + (place == "helper2")]:
            if BREAK_HELPERS[needed] not in self.helpers:
                self.helpers.append(BREAK_HELPERS[needed])
        return ["_break_1()" if place == "helper" else "_break_2()"]

    def _kernel_block(self, stmt: KernelBlock) -> list[str]:
        self.uses_kernel = True
        ctx = kernel_call(stmt.backends, stmt.set_priority)
        if stmt.style == "with":
            return [f"with {ctx}:"] + ["    " + line for line in self.block(stmt.body)]
        params = list(self.defined)
        body = self.block(stmt.body)
        made = [name for name in self.defined if name not in params]
        name = f"_kernel_{len(self.helpers)}"
        ret = ["return " + ", ".join(made) + ("," if len(made) == 1 else "")] if made else []
        self.helpers.append(f"@{ctx}\ndef {name}({', '.join(params)}):\n" +
                            "".join(f"    {line}\n" for line in body + ret))
        call = f"{name}({', '.join(params)})"
        return [f"{', '.join(made)}{',' if len(made) == 1 else ''} = {call}" if made else call]


def function_source(case: Case) -> str:
    """The module that defines `fn`, the function under test."""
    emitter = _Emitter({name: spec.shape if isinstance(spec, TensorSpec) else ()
                        for name, spec in case.inputs})
    body = emitter.block(case.program.body)
    returns = case.program.returns
    body.append(f"return {returns[0] if len(returns) == 1 else ', '.join(returns)}")
    header = ("import math\n" if emitter.uses_math else "") + HEADER + (
        KERNEL_IMPORT if emitter.uses_kernel else "")
    if emitter.uses_params:
        header += "\n" + PARAMS_LINE
    parts = [header] + emitter.helpers
    parts.append(f"def fn({', '.join(case.input_names)}):\n" +
                 "".join(f"    {line}\n" for line in body))
    return "\n\n".join(parts)


def inputs_source(case: Case) -> str:
    """`build_tensor` and `make_inputs(dtype=None, salt=0, grow=0)`, which returns a fresh
    dict of the case's inputs (of its seed variant `salt`, with sequence lengths `grow`
    longer); with a dtype, its floating tensors are cast to it before any SDPAParams is
    built."""
    dims = grow_dims(case) if any(c.grow for c in case.calls) else {}
    tensors = ",\n".join(f"        {name!r}: {build_call(spec, case.device, dims.get(name, ()))}"
                         for name, spec in case.inputs if isinstance(spec, TensorSpec))
    params = "".join(f"    t[{name!r}] = torch.backends.cuda.{_params(spec, ref)}\n"
                     for name, spec in case.inputs if isinstance(spec, ParamsInput))
    return (f"import torch\n\n\n{BUILD_TENSOR_SOURCE}\n\n{RESEED_SOURCE}\n\n"
            f"def make_inputs(dtype=None, salt=0, grow=0):\n    t = {{\n{tensors},\n    }}\n"
            "    if dtype is not None:\n"
            "        t = {n: x.detach().to(dtype).requires_grad_(x.requires_grad)\n"
            "             if x.is_floating_point() else x\n"
            "             for n, x in t.items()}\n"
            f"{params}    return t\n")


def ref(name: str) -> str:
    return f"t[{name!r}]"


def backend_expression(backend: str) -> tuple[str, str]:
    """(import lines, expression) that name the backend in a script."""
    if ":" in backend:
        module, attr = backend.split(":", 1)
        return (f"import os\nsys.path.append(os.getcwd())  # a backend module in this folder\n"
                f"import {module}\n", f"{module}.{attr}")
    return "", repr(backend)


def repro_script(case: Case, backend: str, tolerances: dict[str, tuple[float, ...]]) -> str:
    """A torch-only script that shows the divergence and exits 1 while it holds."""
    imports, backend_expr = backend_expression(backend)
    settings = case.compile
    compile_kwargs = {"fullgraph": settings.fullgraph, "dynamic": settings.dynamic}
    if settings.mode is not None:
        compile_kwargs["mode"] = settings.mode
    scores = [(s.query, s.key, s.scale, (), s.value, s.mask) if isinstance(s, Attention) else
              (s.query, s.key, effective_scale(s, logical_head_dim(s, case.spec(s.query).shape)),
               s.perm, s.value, s.mask) for s in walk(case.program.body)
              if isinstance(s, (Attention, HandAttention))]
    scores = [t for t in scores if t[2] is None or math.isfinite(t[2])]  # x / 0: no scores
    calls = [None if c.backends is None else (list(c.backends), c.set_priority)
             for c in case.calls]
    salts = [c.reseed for c in case.calls]
    return "\n".join([
        '"""sdpa-fuzz repro: runs fn eagerly, compiled and in float64 on identical inputs, once\n'
        'per outer sdpa_kernel context, and compares outputs, identities, inputs after the call,\n'
        'the global SDPA backend state and Dynamo\'s frame count.\n\n'
        'Exit status 1 while a divergence holds, 0 once it is gone."""',
        "import sys",
        imports + function_source(case),
        inputs_source(case),
        f"BACKEND = {backend_expr}",
        f"COMPILE_KWARGS = {compile_kwargs!r}",
        f"CALLS = {calls!r}  # outer sdpa_kernel (backends, set_priority) per call, or None",
        f"SALTS = {salts!r}  # per call: 0, or the seed variant whose input values it gets",
        f"GROWS = {[c.grow for c in case.calls]!r}  # per call: how much longer L and S are",
        f"RECOMPILES = {_recompiles(case)!r}  # per call: graphs it may compile, if sizes vary",
        f"EXPECTED_FRAMES = {_expected_frames(case)!r}  # the frame model's count",
        f"MUST_BREAK = {must_break(case.program)!r}  # so fullgraph=True must raise",
        f"NUMERIC = {case.program.draws_comparable!r}  # False: an unused dropout's draws",
        f"RETURNS = {list(case.program.returns)!r}  # the names fn returns",
        f"DROPOUT_SEED = {DROPOUT_SEED!r}  # torch.manual_seed before every call",
        f"FED = {sorted(fed_by_attention(case))!r}  # names some attention computes",
        f"EXACT_OPS = {exact_ops(case)!r}  # ulps a value no attention feeds may differ by",
        f"BACKWARD = {case.backward!r}  # run backward from seeded upstream gradients",
        f"TOLERANCES = {tolerances!r}  # dtype -> (fudge, output floor, score floor, absolute floor)",
        f"SCORES = {scores!r}  # (query, key, scale, permutation, value, mask) per attention",
        f"PRECISION = {program_precision(case)!r}  # the coarsest dtype fn casts through",
        f"MATH_REFERENCE = {case.device == 'cuda'!r}  # float64 SDPA by math (see MathSDPA)",
        f"MARK_DYNAMIC = {marked_dims(case)!r}  # input -> dims marked dynamic before compiled calls",
        "",
        "from torch.overrides import TorchFunctionMode\n\n",
        inspect.getsource(MathSDPA),
        inspect.getsource(score_conditioning),
        inspect.getsource(gradient_bounds),
        _tolerance_source(),
        ERRORS_SOURCE,
        CHECKER_SOURCE,
    ])


def _recompiles(case: Case) -> list[list[int]] | None:
    allowed = size_recompiles(case)
    return None if allowed is None else [sorted(a) for a in allowed]


def _expected_frames(case: Case) -> int | None:
    try:
        return predict_frames(case.program, dict(case.inputs), case.compile.dynamic)
    except ValueError:
        return None  # a construct the frame model has no rule for


CHECKER_SOURCE = '''
import contextlib

from torch._dynamo.testing import CompileCounterWithBackend
from torch.utils._pytree import tree_flatten_with_path

FLAGS = ("flash", "mem_efficient", "math", "cudnn", "overrideable")


def backend_state():
    enabled = [f for f in FLAGS if getattr(torch._C, f"_get_{f}_sdp_enabled")()]
    return enabled, list(torch._C._get_sdp_priority_order())


def set_backend_state(state):
    for f in FLAGS:
        getattr(torch._C, f"_set_sdp_use_{f}")(f in state[0])
    torch._C._set_sdp_priority_order(state[1])


def upstream(leaf, index, rounded_to=None):
    """the seeded gradient flowing into output leaf `index`, as sdpa-fuzz draws it"""
    gen = torch.Generator().manual_seed(7919 * (index + 1))
    g = torch.randn(tuple(leaf.shape), generator=gen).to(rounded_to or leaf.dtype)
    return g.to(device=leaf.device, dtype=leaf.dtype)


def gradients(leaves, inputs, rounded_to=None):
    """(grads of the inputs that require grad, backward's error)"""
    wanted = [n for n, t in inputs.items() if isinstance(t, torch.Tensor) and t.requires_grad]
    outs = [(i, t) for i, t in enumerate(leaves)
            if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    if not wanted or not outs:
        return {}, None
    try:
        grads = torch.autograd.grad(
            [t for _, t in outs], [inputs[n] for n in wanted],
            [upstream(t, i, rounded_to[i] if rounded_to else None) for i, t in outs],
            allow_unused=True)
    except Exception as exc:
        return None, exc
    return dict(zip(wanted, grads)), None


def call(f, inputs, context, start, rounded_to=None):
    """(leaves, error, inputs, state right after the call inside its outer context,
    (input gradients, backward's error), the returned name of each leaf); dropout draws
    from a generator seeded right before the call, the same in every run"""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    set_backend_state(start)
    torch.manual_seed(DROPOUT_SEED)
    outer = contextlib.nullcontext() if context is None else sdpa_kernel(
        [getattr(SDPBackend, b) for b in context[0]], set_priority=context[1])
    with outer:
        try:
            flat = tree_flatten_with_path(f(**inputs))[0]
            leaves, error = [leaf for _, leaf in flat], None
            names = [RETURNS[path[0].idx] if len(RETURNS) > 1 else RETURNS[0]
                     for path, _ in flat]
            if torch.cuda.is_initialized():
                torch.cuda.synchronize()
        except Exception as exc:  # the outcome is part of what is compared
            if type(exc).__name__ == "AcceleratorError" or "CUDA error" in str(exc):
                print("device error (the CUDA context is unusable now):", exc)
                sys.exit(3)
            leaves, error, names = None, exc, None
        state = backend_state()
        grads = gradients(leaves, inputs, rounded_to) if BACKWARD and leaves else (None, None)
    set_backend_state(start)
    return leaves, error, inputs, state, grads, names


def input_name(inputs, x):
    return next((n for n, t in inputs.items() if t is x), None)


def compare(name, e, c, r, kappa, problems, strides=True, terms=0.0, ops=0):
    """as the oracle's compare_tensor: with `ops`, a value no attention feeds, held to
    eager's own value within `ops` ulps"""
    if not isinstance(e, torch.Tensor):
        if type(e) is not type(c) or (not isinstance(e, torch.backends.cuda.SDPAParams)
                                      and e != c):
            problems.append(f"{name}: eager {e!r}, compiled {c!r}")
        return
    meta = lambda t: (tuple(t.shape), t.dtype, t.device, t.requires_grad)
    if meta(e) != meta(c):
        problems.append(f"{name}: shape, dtype, device, requires_grad: eager {meta(e)}, "
                        f"compiled {meta(c)}")
        return
    big = lambda t: [(d, s) for d, (n, s) in enumerate(zip(t.shape, t.stride())) if n > 1]
    if strides and big(e) != big(c):
        problems.append(f"{name}: strides eager {e.stride()}, compiled {c.stride()}")
    if not (NUMERIC or ops):
        return
    if not e.is_floating_point():
        if not torch.equal(e, c):
            problems.append(f"{name}: values differ")
        return
    e, c = e.detach(), c.detach()
    if ops:
        for what, test in (("NaN", torch.isnan), ("+inf", torch.isposinf),
                           ("-inf", torch.isneginf)):
            if (test(e) != test(c)).any():
                problems.append(f"{name}: {what} positions differ")
        m = measure_exact(e, c, ops)
        if m is not None:
            print(f"{name}: no attention feeds it; compiled differs from eager by "
                  f"{m.compiled:.3g}, allowed {m.allowed:.3g}")
            if not m.passes:
                problems.append(f"{name}: compiled differs from eager by {m.compiled:.3g} "
                                f"> allowed {m.allowed:.3g}")
        return
    exact = isinstance(r, torch.Tensor) and r.shape == e.shape
    r = r.detach().to(torch.float64) if exact else None
    # eager overflowed where the float64 truth is finite: compiled may be finite there
    rescued = (~torch.isfinite(e) & torch.isfinite(c) & torch.isfinite(r) if exact
               else torch.zeros_like(e, dtype=torch.bool))
    for what, test in (("NaN", torch.isnan), ("+inf", torch.isposinf), ("-inf", torch.isneginf)):
        if ((test(e) != test(c)) & ~rescued).any():
            problems.append(f"{name}: {what} positions differ")
    if not exact:
        return
    ok_c = torch.isfinite(c) & torch.isfinite(r)
    ok = ok_c & torch.isfinite(e)
    if ok_c.any():
        err_e = (e.double() - r)[ok].abs().max().item() if ok.any() else 0.0
        err_c = (c.double() - r)[ok_c].abs().max().item()
        dtype = str(e.dtype).replace("torch.", "")
        if PRECISION is not None and TOLERANCES[PRECISION][1] > TOLERANCES[dtype][1]:
            dtype = PRECISION  # the program rounds through a coarser dtype
        fudge, floor, score_floor, abs_floor = TOLERANCES[dtype]
        relative = max(floor, score_floor * kappa)
        allowed = fudge * max(err_e, relative * r[ok_c].abs().max().item(), abs_floor,
                              score_floor * terms, 1e-300)
        print(f"{name}: error vs float64: eager {err_e:.3g}, compiled {err_c:.3g}, "
              f"allowed {allowed:.3g}")
        if err_c > allowed:
            problems.append(f"{name}: compiled error {err_c:.3g} > allowed {allowed:.3g}")


def storage_outside(name, e, c, problems):
    """the storage around an input's view is bit for bit eager's"""
    if e.untyped_storage().nbytes() == e.numel() * e.element_size():
        return
    def outside(t):
        raw = torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage())
        inside = torch.zeros(raw.numel() // t.element_size(), dtype=torch.bool, device=t.device)
        if t.numel():
            inside.as_strided(t.shape, t.stride(), t.storage_offset()).fill_(True)
        return raw[~inside.repeat_interleave(t.element_size())]
    if not torch.equal(outside(e.detach()), outside(c.detach())):
        problems.append(f"{name}: its storage outside the view differs")


def check_call(i, eager, ref, compiled, problems):
    """every check, whatever failed before it, as the oracle's judge"""
    (e_out, e_exc, e_in, e_state, e_grads, e_names), (r_out, _, r_in, _, r_grads, _), \\
        (c_out, c_exc, c_in, c_state, c_grads, _) = eager, ref, compiled
    tag = f"call {i}: "
    if e_state != c_state:  # compared whatever the outcome: a raising call must clean up too
        problems.append(tag + f"SDPA backend state after the call: eager {e_state}, "
                        f"compiled {c_state}")
    if COMPILE_KWARGS["fullgraph"] and MUST_BREAK:
        from torch._dynamo.exc import Unsupported
        if not (isinstance(c_exc, Unsupported) or (e_exc is not None and same_error(e_exc, c_exc))):
            problems.append(tag + f"fullgraph=True must raise on a graph break; compiled {c_exc!r}")
        return
    for name, e in e_in.items():
        if isinstance(e, torch.Tensor):
            compare(tag + f"input {name} after the call", e, c_in[name], r_in[name], 1.0,
                    problems, ops=EXACT_OPS)
            storage_outside(tag + f"input {name}", e, c_in[name], problems)
    if e_exc is not None or c_exc is not None:
        if e_exc is None or c_exc is None or not same_error(e_exc, c_exc):
            problems.append(tag + f"outcome: eager {e_exc!r}, compiled {c_exc!r}")
        return
    if len(e_out) != len(c_out):
        problems.append(tag + f"eager returned {len(e_out)} values, compiled {len(c_out)}")
        return
    kappas = [score_conditioning(r_in[q].permute(p) if p else r_in[q],
                                 r_in[k].permute(p) if p else r_in[k], scale)
              for q, k, scale, p, _, _ in SCORES if isinstance(r_in.get(q), torch.Tensor)
              and isinstance(r_in.get(k), torch.Tensor)]
    kappa = max([1.0] + kappas)
    for j, (e, c, r) in enumerate(zip(e_out, c_out, r_out or [None] * len(e_out))):
        if input_name(e_in, e) != input_name(c_in, c):
            problems.append(tag + f"output[{j}] is input {input_name(e_in, e)} in eager but "
                            f"{input_name(c_in, c)} in compiled")
        ops = 0 if e_names[j] in FED else EXACT_OPS
        compare(tag + f"output[{j}]", e, c, r, kappa, problems, ops=ops)
        if isinstance(e, torch.backends.cuda.SDPAParams):
            for attr in ("query", "key", "value", "attn_mask", "dropout", "is_causal",
                         "enable_gqa"):
                fe, fc = getattr(e, attr), getattr(c, attr)
                if input_name(e_in, fe) != input_name(c_in, fc):
                    problems.append(tag + f"output[{j}].{attr} is input {input_name(e_in, fe)} "
                                    f"in eager but {input_name(c_in, fc)} in compiled")
                compare(tag + f"output[{j}].{attr}", fe, fc, getattr(r, attr, None), kappa,
                        problems, ops=ops)
    if BACKWARD:
        (e_g, e_gexc), (c_g, c_gexc), (r_g, _) = e_grads, c_grads, r_grads
        if e_gexc is not None or c_gexc is not None:
            if e_gexc is None or c_gexc is None or not same_error(e_gexc, c_gexc):
                problems.append(tag + f"backward: eager {e_gexc!r}, compiled {c_gexc!r}")
            return
        g_max = max([upstream(t, j).abs().max().item() for j, t in enumerate(e_out)
                     if isinstance(t, torch.Tensor) and t.numel()] or [0.0])
        terms = {}
        for q, k, scale, p, v, m in SCORES:
            qkv = [r_in.get(n) for n in (q, k, v)]
            if all(isinstance(t, torch.Tensor) for t in qkv):
                qkv = [t.permute(p) if p else t for t in qkv]
                for role, bound in gradient_bounds(*qkv, scale, g_max).items():
                    name = dict(query=q, key=k, value=v, mask=m)[role]
                    terms[name] = max(terms.get(name, 0.0), bound)
        for name, ge in e_g.items():
            gc = c_g.get(name)
            if (ge is None) != (gc is None):
                problems.append(tag + f"grad {name}: eager {ge is not None}, compiled "
                                f"{gc is not None} (has a gradient)")
            elif ge is not None:
                compare(tag + f"grad {name}", ge, gc, (r_g or {}).get(name), kappa, problems,
                        strides=False, terms=terms.get(name, 0.0))


def mark(inputs):
    for name, dims in MARK_DYNAMIC.items():
        for dim in dims:
            torch._dynamo.mark_dynamic(inputs[name], dim)
    return inputs


def main():
    import torch._inductor.config
    torch._inductor.config.fallback_random = True  # Inductor draws as eager does
    problems = []
    start = backend_state()
    counter = CompileCounterWithBackend(BACKEND)
    compiled_fn = torch.compile(fn, backend=counter, **COMPILE_KWARGS)
    first_frames = first_raised = None
    for i, (context, salt, grow) in enumerate(zip(CALLS, SALTS, GROWS)):
        eager = call(fn, make_inputs(salt=salt, grow=grow), context, start)
        with MathSDPA() if MATH_REFERENCE else contextlib.nullcontext():
            ref = call(fn, make_inputs(torch.float64, salt, grow), context, start,
                       [getattr(t, "dtype", None) for t in eager[0] or ()])
        before = counter.frame_count
        compiled = call(compiled_fn, mark(make_inputs(salt=salt, grow=grow)), context, start)
        if first_frames is None:
            first_frames, first_raised = counter.frame_count, compiled[1] is not None
        elif RECOMPILES and compiled[1] is None and \
                counter.frame_count - before not in RECOMPILES[i]:
            problems.append(f"recompile: call {i} (lengths +{grow}) compiled "
                            f"{counter.frame_count - before} graph(s); the dynamic-shape "
                            f"rules allow {RECOMPILES[i]}")
        check_call(i, eager, ref, compiled, problems)
    if not first_raised:
        before = counter.frame_count
        call(compiled_fn, mark(make_inputs(salt=SALTS[0], grow=GROWS[0])), CALLS[0], start)
        if counter.frame_count != before:
            problems.append("recompile: repeating the first call with equal inputs compiled "
                            f"{counter.frame_count - before} more graph(s)")
    print(f"graphs compiled by the first call: {first_frames}; frame model: {EXPECTED_FRAMES}")
    if EXPECTED_FRAMES is not None and first_frames != EXPECTED_FRAMES and not first_raised:
        problems.append(f"frames: {first_frames} graphs, the frame model predicts "
                        f"{EXPECTED_FRAMES}")
    for p in problems:
        print("DIVERGENCE:", p)
    print("diverges" if problems else "no divergence")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
'''
