"""`torch.compile` settings other than the backend, which the user chooses."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from fuzz.case import Case, CompileSpec

# Inductor's modes that change what it generates: autotuned kernels (on the CPU, its GEMM
# templates). Drawn one time in MODE_ODDS, since autotuning may cost several compiles.
# Not `reduce-overhead` (CUDA graphs, whose outputs a later call overwrites): no GPU run
# has checked the oracle against it yet.
INDUCTOR_MODES = ("max-autotune-no-cudagraphs",)
MODE_ODDS = 16
# Inductor's freezing (`torch._inductor.config.freezing`) applies where grad is disabled:
# Dynamo then guards nn.Module parameters by identity, and Inductor folds them into the
# graph as constants (docs/oracle.md, "Freezing"). Drawn one time in FREEZING_ODDS, apart
# from a compile mode (each costs compiles of its own).
FREEZING_ODDS = 16
NO_GRAD_MODES = ("no_grad", "inference_mode")


@st.composite
def compile_specs(draw: st.DrawFn, backend: str, allow_dynamic: bool = True,
                  allow_marks: bool = False) -> CompileSpec:
    """`allow_dynamic=False` leaves out `dynamic=True`, for programs the frame model has no
    rule for under it (an SDPAParams input). `allow_marks`: sometimes `mark_dynamic` on the
    sequence lengths, for single SDPA calls (the only ones whose lengths are known). A
    mode only for Inductor: torch.compile hands any other backend the mode as an option
    it may not take."""
    dynamic = (None, False, True) if allow_dynamic else (None, False)
    spec = CompileSpec(backend=backend, fullgraph=draw(st.booleans()),
                       dynamic=draw(st.sampled_from(dynamic)),
                       mark_dynamic=allow_marks and draw(st.booleans()))
    if backend == "inductor" and draw(st.integers(0, MODE_ODDS - 1)) == MODE_ODDS - 1:
        return replace(spec, mode=draw(st.sampled_from(INDUCTOR_MODES)))
    return spec


@st.composite
def sometimes_frozen(draw: st.DrawFn, case: Case, freezing: bool = True) -> Case:
    """Sometimes `case` with freezing on and every call in a disabled grad mode
    (inference, where freezing applies), without backward; not for calls of grown sizes,
    whose dynamic-shape rules hold without grad modes. For every backend: the flag is
    Inductor's, but Dynamo reads it too, to guard parameters by identity and make them
    graph attributes. Drawn last, shrinking to the case as it was. `freezing` False:
    never, drawing nothing (for the seeded searches of tests whose faults freezing does
    not trigger, which one more draw would move)."""
    if not freezing or case.compile.mode is not None or any(c.grow for c in case.calls) or \
            draw(st.integers(0, FREEZING_ODDS - 1)) != FREEZING_ODDS - 1:
        return case
    mode = draw(st.sampled_from(NO_GRAD_MODES))
    return replace(case, backward=False,
                   compile=replace(case.compile, freezing=True),
                   calls=tuple(replace(c, grad_mode=mode) for c in case.calls))
