"""torch.nn attention modules as source: building one from its parameter inputs, calling it.

A module input is built in each run, after the run's inputs are cast (so the float64 run
gets a float64 module), on the meta device and then given the parameter inputs as its
own `nn.Parameter`s, each of which replaces its tensor in the inputs: gradients are read
from the very parameters the module used. The fuzzer, the full repro script and the
minimal one build it from these same lines.
"""

from __future__ import annotations

from fuzz.case import ModuleCall, ModuleInput

CLASSES = {"mha": "torch.nn.MultiheadAttention",
           "encoder_layer": "torch.nn.TransformerEncoderLayer",
           "decoder_layer": "torch.nn.TransformerDecoderLayer"}


def module_options(m: ModuleInput) -> dict:
    """The constructor's keyword arguments: only those that differ from its defaults,
    except dropout, which is always 0 (an encoder layer's default is 0.1)."""
    if m.module == "mha":
        options: dict = {"embed_dim": m.embed_dim, "num_heads": m.heads, "dropout": 0.0}
        extra = (("bias", m.bias, True), ("add_bias_kv", m.add_bias_kv, False),
                 ("kdim", m.kdim, None), ("vdim", m.vdim, None))
    else:
        options = {"d_model": m.embed_dim, "nhead": m.heads,
                   "dim_feedforward": m.feedforward, "dropout": 0.0}
        extra = (("activation", m.activation, "relu"), ("norm_first", m.norm_first, False),
                 ("bias", m.bias, True))
    options.update({k: v for k, v, default in extra + (("batch_first", m.batch_first, False),)
                    if v != default})
    return options


def module_lines(name: str, m: ModuleInput, ref) -> list[str]:
    """Lines that set `ref(name)` to the module, with the parameter inputs (`ref(input)`)
    as its parameters; `ref` renders a name as the source reads it (`t['attn']`). Where
    the inputs are named after the parameters (`attn_linear1_weight`, as the strategies
    name them) and there are more than four, in a loop over the module's own."""
    first = ref(m.params[0][1])
    args = ", ".join(f"{k}={v!r}" for k, v in module_options(m).items())
    lines = [f"{ref(name)} = {CLASSES[m.module]}({args}, device='meta', "
             f"dtype={first}.dtype).train({m.training!r})"]
    named = all(tensor == f"{name}_{path.replace('.', '_')}" for path, tensor in m.params)
    if not named or len(m.params) <= 4:
        return lines + [f"{ref(name)}.{path} = {ref(tensor)} = torch.nn.Parameter("
                        f"{ref(tensor)}, requires_grad={ref(tensor)}.requires_grad)"
                        for path, tensor in m.params]
    held = ref("@").replace("'@'", "n")  # how the source reads the input named by `n`
    return lines + [
        f"for path, _ in list({ref(name)}.named_parameters()):  # each parameter input "
        "becomes its own",
        f"    n, (owner, _, leaf) = {name + '_'!r} + path.replace('.', '_'), path.rpartition('.')",
        f"    {held} = torch.nn.Parameter({held}, requires_grad={held}.requires_grad)",
        f"    setattr({ref(name)}.get_submodule(owner), leaf, {held})"]


def module_call_lines(c: ModuleCall, module: ModuleInput) -> list[str]:
    """The call, as a model's forward makes it."""
    if module.module == "mha":
        args = [c.query, c.key or c.query, c.value or c.query]
        named = (("key_padding_mask", c.key_padding_mask, None),
                 ("need_weights", c.need_weights, True), ("attn_mask", c.attn_mask, None),
                 ("average_attn_weights", c.average_attn_weights, True),
                 ("is_causal", c.is_causal, False))
        args += [f"{k}={v if isinstance(v, str) else repr(v)}" for k, v, default in named
                 if v != default]
        call = f"{c.module}({', '.join(args)})"
        return [f"{c.out}, {c.weights_out} = {call}" if c.need_weights else f"{c.out} = {call}[0]"]
    if module.module == "encoder_layer":
        args = [c.query]
        named = (("src_mask", c.attn_mask, None),
                 ("src_key_padding_mask", c.key_padding_mask, None),
                 ("is_causal", c.is_causal, False))
    else:
        args = [c.query, c.key or c.query]
        named = (("tgt_mask", c.attn_mask, None),
                 ("tgt_key_padding_mask", c.key_padding_mask, None),
                 ("tgt_is_causal", c.is_causal, False))
    args += [f"{k}={v if isinstance(v, str) else repr(v)}" for k, v, default in named
             if v != default]
    return [f"{c.out} = {c.module}({', '.join(args)})"]
