"""A Case as real Python source: the function under test, and the standalone repro script.

Dynamo traces bytecode, so the function under test must be a plain `def` as a user would
write it, not a closure assembled at run time. The repro script is that same source with
the input builder and a small, torch-only checker around it.
"""

from __future__ import annotations

import inspect
import math

from fuzz.carry import carried_source
from fuzz.case import (Attention, BuildParams, Case, GraphBreak, HandAttention, KernelBlock,
                       ModelAttention, ModuleCall, ModuleInput, Mutate, ParamsAttr, ParamsInput,
                       ReadBackends, ReadFlag, SetFlag, Shift, Statement, TensorSpec, grow_dims,
                       marked_dims, reseed)
from fuzz.handwritten import hand_attention_globals, hand_attention_lines, logical_head_dim
from fuzz.models import model_attention_lines
from fuzz.modules import module_call_lines, module_lines
from fuzz.kernels import ReferenceSDPA, RoundingJitter
from fuzz.materialize import BUILD_TENSOR_SOURCE, build_call
from fuzz.plan import calls_of, plan_of

RESEED_SOURCE = inspect.getsource(reseed)

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


def number(x: float) -> str:
    """A float as Python source: `float('nan')` and `float('inf')` have no literal."""
    return repr(x) if math.isfinite(x) else f"float('{x}')"


def _attention(stmt: Attention) -> str:
    args = [stmt.query, stmt.key, stmt.value]
    if stmt.mask is not None:
        args.append(f"attn_mask={stmt.mask}")
    if stmt.dropout_p:
        args.append(f"dropout_p={stmt.dropout_p!r}")
    if stmt.is_causal:
        args.append("is_causal=True")
    if stmt.scale is not None:
        args.append(f"scale={number(stmt.scale)}")
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

    def __init__(self, shapes: dict[str, tuple[int, ...]],
                 modules: dict[str, ModuleInput], device: str) -> None:
        self.device = device
        self.helpers: list[str] = []
        self.modules = modules
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
            head_dim = logical_head_dim(stmt, self.shapes[stmt.query])
            self.helpers += hand_attention_globals(stmt, head_dim, self.device)
            lines = hand_attention_lines(stmt, head_dim)
        elif isinstance(stmt, ModelAttention):
            lines = model_attention_lines(stmt)
        elif isinstance(stmt, ModuleCall):
            lines = module_call_lines(stmt, self.modules[stmt.module])
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
                        for name, spec in case.inputs},
                       {name: spec for name, spec in case.inputs if isinstance(spec, ModuleInput)},
                       case.device)
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
    longer); with a dtype, its floating tensors are cast to it before any SDPAParams or
    module is built."""
    dims = grow_dims(case) if any(c.grow for c in case.calls) else {}
    tensors = ",\n".join(f"        {name!r}: {build_call(spec, case.device, dims.get(name, ()))}"
                         for name, spec in case.inputs if isinstance(spec, TensorSpec))
    params = "".join(f"    t[{name!r}] = torch.backends.cuda.{_params(spec, ref)}\n"
                     for name, spec in case.inputs if isinstance(spec, ParamsInput))
    params += "".join(f"    {line}\n" for name, spec in case.inputs
                      if isinstance(spec, ModuleInput) for line in module_lines(name, spec, ref))
    return (f"import torch\n\n\n{BUILD_TENSOR_SOURCE}\n\n{RESEED_SOURCE}\n\n"
            f"def make_inputs(dtype=None, salt=0, grow=0):\n    t = {{\n{tensors},\n    }}\n"
            "    if dtype is not None:\n"
            "        t = {n: x.detach().to(dtype).requires_grad_(x.requires_grad)\n"
            "             if x.is_floating_point() else x\n"
            "             for n, x in t.items()}\n"
            f"{params}    return t\n")


def input_factory(case: Case):
    """`make_inputs(dtype=None, salt=0, grow=0)` for the case, compiled from the very source a
    repro script carries, so that the fuzzer and the script cannot build different inputs."""
    namespace: dict = {}
    exec(compile(inputs_source(case), "<sdpa-fuzz inputs>", "exec"), namespace)
    return namespace["make_inputs"]


def ref(name: str) -> str:
    return f"t[{name!r}]"


def backend_expression(backend: str) -> tuple[str, str]:
    """(import lines, expression) that name the backend in a script."""
    if ":" in backend:
        module, attr = backend.split(":", 1)
        return (f"import os\nsys.path.append(os.getcwd())  # a backend module in this folder\n"
                f"import {module}\n", f"{module}.{attr}")
    return "", repr(backend)


def repro_script(case: Case, backend: str) -> str:
    """A torch-only script that shows the divergence and exits 1 while it holds: the case's
    function and inputs, its plan as a literal, and the fuzzer's own running and judging
    code (`fuzz.carry`)."""
    imports, backend_expr = backend_expression(backend)
    settings = case.compile
    compile_kwargs = {"fullgraph": settings.fullgraph, "dynamic": settings.dynamic}
    if backend == "inductor" and settings.mode not in (None, "default"):
        # as `fuzz.backends.resolve_backend`: torch.compile hands a callable backend's
        # `mode` to the backend itself, which the counter in front of Inductor refuses
        backend_expr = (f"torch._TorchCompileInductorWrapper({settings.mode!r}, None, "
                        f"{settings.dynamic!r})")
    reference = f"lambda rounded_to=None: ReferenceSDPA({case.device == 'cuda'}, rounded_to)"
    return "\n".join([
        '"""sdpa-fuzz repro: runs fn eagerly, compiled and in float64 on identical inputs, once\n'
        'per call, and compares outputs, identities, inputs after the call, the global SDPA\n'
        'backend state and Dynamo\'s frame counts, with sdpa-fuzz\'s own checker (below).\n\n'
        'Exit status 1 while a divergence holds, 0 once it is gone."""',
        "from __future__ import annotations\n",
        "import sys",
        imports + function_source(case),
        inputs_source(case),
        "from torch.overrides import TorchFunctionMode",
        "from torch.utils._python_dispatch import TorchDispatchMode\n\n",
        inspect.getsource(RoundingJitter),
        inspect.getsource(ReferenceSDPA),
        carried_source(),
        "",
        f"BACKEND = {backend_expr}",
        f"COMPILE_KWARGS = {compile_kwargs!r}",
        f"CALLS = {calls_of(case)!r}",
        f"PLAN = {plan_of(case)!r}",
        f"MARK_DYNAMIC = {marked_dims(case)!r}  # input -> dims marked dynamic before compiled calls",
        "",
        "if __name__ == \"__main__\":",
        *(["    torch._inductor.config.freezing = True  # Inductor's freezing, as the case "
           "compiles"] if settings.freezing else []),
        f"    sys.exit(main(fn, make_inputs, BACKEND, COMPILE_KWARGS, CALLS, PLAN, MARK_DYNAMIC,"
        f" {reference}))",
        "",
    ])
