"""The process-global SDPA backend state: which backends are enabled, and their priority.

`sdpa_kernel` and `torch.backends.cuda.enable_*_sdp` change it; compiled code must leave
it exactly as eager code does, so it is captured after every run and restored between runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FLAGS = ("flash", "mem_efficient", "math", "cudnn", "overrideable")


@dataclass(frozen=True)
class BackendState:
    enabled: tuple[str, ...]
    priority: tuple[int, ...]

    def describe(self) -> str:
        return f"enabled={list(self.enabled)} priority={list(self.priority)}"


def _getter(flag: str):
    return getattr(torch._C, f"_get_{flag}_sdp_enabled")


def _setter(flag: str):
    return getattr(torch._C, f"_set_sdp_use_{flag}")


def current_state() -> BackendState:
    enabled = tuple(flag for flag in FLAGS if _getter(flag)())
    return BackendState(enabled, tuple(int(p) for p in torch._C._get_sdp_priority_order()))


def restore_state(state: BackendState) -> None:
    for flag in FLAGS:
        _setter(flag)(flag in state.enabled)
    torch._C._set_sdp_priority_order(list(state.priority))


def settle(device: torch.device) -> None:
    """Let CUDA torch choose its default priority order before any state is captured.

    It does so lazily, at the first SDPA dispatch in a process (`priority_order` in
    sdp_utils.cpp puts cuDNN first where `check_prefer_cudnn_attention` holds, as on an
    H100 or H200). A state captured before that dispatch and restored after it would
    undo torch's choice for good, and the first case of every process would see a
    priority change that no compiled code made. One dispatch choice on a tiny input
    settles it; it runs no kernel."""
    if device.type == "cuda":
        q = torch.zeros(1, 1, 1, 8, device=device, dtype=torch.float16)
        torch._fused_sdp_choice(q, q, q)
