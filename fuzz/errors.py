"""Error parity: when an error compiled code raised is the error eager raised.

Dynamo wraps what it meets: a fake-tensor error while tracing comes out as
`TorchRuntimeError` (raised `from None`, the original in `__context__` behind an
`Unsupported`), a backend's failure as `BackendCompilerFailed` (`InductorError`), a bug of
Dynamo's own as `InternalTorchDynamoError`. All of them derive from `RuntimeError`, so an
`isinstance` test against eager's type would take a compiler crash for the user's error.

`unwrap` sees through the wrappers that carry a user-facing error and stops at those that
mean the compiler failed; `same_error` then asks for the innermost user-facing type to be
eager's type exactly. Messages are not compared: a meta kernel or a decomposition words
an error differently from the ATen kernel (`message_class` is for telling bugs apart).

This module imports only torch and the standard library: every repro script carries its
source (`inspect.getsource`), so the script and the oracle judge errors alike.
"""

import builtins
import os
import re
import traceback

import torch

_TORCH_DIR = os.path.dirname(torch.__file__)
# Where an AssertionError means the compiler's own invariant broke, not the user's input.
_COMPILER_DIRS = tuple(os.path.join(_TORCH_DIR, p) for p in (
    "_dynamo", "_inductor", "_functorch", "_subclasses", "fx", "_guards.py",
    "_higher_order_ops", "_export", "export"))
# Graph breaks whose cause is a genuine user-level error met while tracing.
_SEE_THROUGH = {"RuntimeError when making fake tensor call",
                "TypeError when making fake tensor call",
                "RuntimeError when trying to get real value from fx.Node",
                "Observed exception"}
_FX_NODE_FAILED = "Dynamo failed to run FX node"


def _compiler_failures():
    from torch._dynamo import exc as dx
    from torch._subclasses import fake_tensor as ft
    from torch.fx.experimental import symbolic_shapes as ss
    found = [dx.BackendCompilerFailed, dx.InternalTorchDynamoError,
             dx.ResumePrologueTracingError, dx.RestartAnalysis,
             dx.UnknownPropertiesDuringBackwardTrace, ft.UnsupportedFakeTensorException,
             ft.DynamicOutputShapeException, ft.DataDependentOutputException,
             ft.UnsupportedOperatorException, ft.MetadataMismatchError,
             ss.GuardOnDataDependentSymNode]
    try:
        from torch._inductor import exc as ix
        found += [ix.OperatorIssue, ix.CppCompileError]
    except ImportError:
        pass
    return tuple(found)


def _raised_in_compiler(exc):
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    if not frames:
        return False
    path = os.path.abspath(frames[-1].f_code.co_filename)
    return path.startswith(_COMPILER_DIRS) or "torchinductor_" in path


def _observed_type(exc):
    from torch._dynamo import exc as dx
    for builtin, observed in dx.observed_exception_map.items():
        if type(exc) is observed:
            return builtin
    match = re.fullmatch(r"Observed(\w+?)(Error)?", type(exc).__name__)
    return getattr(builtins, match.group(1) + "Error", type(exc)) if match else type(exc)


def _root(exc):
    for _ in range(16):
        inner = getattr(exc, "inner_exception", None) or exc.__cause__ or exc.__context__
        if inner is None or inner is exc:
            break
        exc = inner
    return exc


def unwrap(exc):
    """(kind, innermost exception, the type to compare): kind is `user` (an error a user
    sees in eager too), `compiler` (the compiler failed: its innermost error is kept, to
    tell one failure from another) or `unsupported` (Dynamo refused the program)."""
    from torch._dynamo import exc as dx
    failures = _compiler_failures()
    for _ in range(64):
        if isinstance(exc, failures):
            root = _root(exc)
            return "compiler", root, type(root)
        if isinstance(exc, dx.TorchRuntimeError):
            inner = exc.__cause__ or exc.__context__
            if inner is None:
                return "user", exc, RuntimeError
            exc = inner
        elif isinstance(exc, dx.ObservedException):
            return "user", exc, _observed_type(exc)
        elif isinstance(exc, dx.Unsupported):
            if getattr(exc, "gb_type", None) in _SEE_THROUGH and exc.__cause__ is not None:
                exc = exc.__cause__
            else:
                return "unsupported", exc, type(exc)
        elif isinstance(exc, (dx.TorchDynamoException, dx.FailOnRecompileLimitHit)):
            return "unsupported", exc, type(exc)
        elif (type(exc) is RuntimeError and str(exc).startswith(_FX_NODE_FAILED)
              and exc.__cause__ is not None):
            exc = exc.__cause__
        elif isinstance(exc, AssertionError) and _raised_in_compiler(exc):
            return "compiler", exc, type(exc)
        else:
            return "user", exc, type(exc)
    return "compiler", exc, type(exc)


def same_error(eager, compiled):
    """Whether compiled raised the error eager raised: a user-facing error of exactly
    eager's type, once Dynamo's wrappers are seen through. A compiler failure never is.
    Dynamo turns `assert cond, msg` on a tensor into a RuntimeError with the same text."""
    kind, inner, kind_type = unwrap(compiled)
    if kind != "user":
        return False
    _, eager_inner, eager_type = unwrap(eager)
    if eager_type is AssertionError and kind_type is RuntimeError:
        return str(eager_inner) == str(inner)
    return kind_type is eager_type


_MESSAGE_SUBSTITUTIONS = [
    (re.compile(r"FakeTensor\(.*?\)"), "T"),
    (re.compile(r"torch\.Size\(\[[^\]]*\]\)"), "S"),
    (re.compile(r"\[[^\[\]]*\]"), "S"),
    (re.compile(r"\((?=[^)]*\d)[\d\s,\-]*\)"), "S"),
    (re.compile(r"torch\.\w+"), "D"),
    (re.compile(r"\b(?:unsigned |signed )?(?:long int|long|int|short|char|float|double|half|"
                r"bool|bfloat16|BFloat16|Half|Float|Double|Long|Int|Bool|c10::\w+|"
                r"complex\w*|u?int\d+|float\d+)\b"), "D"),
    (re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`"), "Q"),
    (re.compile(r"\b\w*\d\w*\b"), "N"),
    # a tuple of symbolic sizes (`(s0**2*s85, s0, 1)`, dynamic shapes), its names now N;
    # not the empty `()` of a call (`aten::scaled_dot_product_attention()`)
    (re.compile(r"\((?=[^)]*N)[N\s,*/+\-()]*\)"), "S"),
    (re.compile(r"\s+"), " "),
]


def message_class(exc):
    """The first line of the message with what varies between cases of one error taken
    out (shapes, dtypes, quoted names, numbers and numbered names), so that an error keeps
    its class as its case shrinks, and two errors rarely share one."""
    lines = str(exc).strip().splitlines()
    text = re.sub(r"^\w+(Error|Exception): ", "", lines[0] if lines else "")
    for pattern, token in _MESSAGE_SUBSTITUTIONS:
        text = pattern.sub(token, text)
    return text.strip().lower()[:100]
