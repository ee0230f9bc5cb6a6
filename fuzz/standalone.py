"""The repro script's main: the case's calls run as the fuzzer runs them, judged as the
fuzzer judges them, in a process of their own. A script carries this module's source.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch._inductor.config

from fuzz.calls import DEVICE_ERROR_EXIT, AcceptedGraphCounter, Call, DeviceError, run_calls
from fuzz.check import Plan, judge


def main(fn: Callable[..., Any], make_inputs: Callable[..., dict[str, Any]], backend: Any,
         compile_kwargs: dict[str, Any], calls: tuple[Call, ...], plan: Plan,
         mark_dynamic: dict[str, list[int]], reference_mode: Callable[..., Any]) -> int:
    """Run and judge the case; print every measurement and divergence. Exit status: 1
    while a divergence holds, 0 once it is gone, DEVICE_ERROR_EXIT after a GPU error."""
    torch._inductor.config.fallback_random = True  # Inductor draws as eager does
    counter = AcceptedGraphCounter(backend)
    compiled_fn = torch.compile(fn, backend=counter, **compile_kwargs)

    def mark(inputs: dict[str, Any]) -> dict[str, Any]:
        for name, dims in mark_dynamic.items():
            for dim in dims:
                torch._dynamo.mark_dynamic(inputs[name], dim)
        return inputs

    try:
        runs = run_calls(fn, compiled_fn, lambda: counter.frame_count, make_inputs, calls,
                         plan.backward, mark=mark, reference_mode=reference_mode)
    except DeviceError as exc:
        print("device error (the CUDA context is unusable now):", exc)
        return DEVICE_ERROR_EXIT
    judged = judge(plan, runs.eager, runs.reference, runs.compiled, runs.frames, runs.rounded)
    for _, where, m in judged.measures:
        print(f"{where}: max error vs float64: eager {m.eager:.3g}, compiled "
              f"{m.compiled:.3g}, allowed {m.allowed:.3g}")
    print(f"graphs compiled per call: {list(runs.frames.per_call)}, by repeating the first: "
          f"{runs.frames.repeat}; the frame model predicts {plan.expected_frames} first")
    for f in judged.failures:
        print(f"DIVERGENCE [{f.signature}] {f.detail}")
    print("diverges" if judged.failures else "no divergence")
    return 1 if judged.failures else 0
