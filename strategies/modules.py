"""torch.nn's attention modules as a model holds them: an `nn.MultiheadAttention`, an
`nn.TransformerEncoderLayer` or an `nn.TransformerDecoderLayer` with seeded weights, passed to the function and called on
its inputs, with padding masks, attention masks, causal hints and returned weights.

The first alternative of every draw is the plainest (self-attention, sequence first,
eval mode, no masks), so a shrunk case keeps only what its failure needs. Under
`no_grad` or `inference_mode` an eval-mode module may take its fast path
(`_native_multi_head_attention`, `_transformer_encoder_layer_fwd`). Half the cases run
backward, to the parameters and, half of those times, to the inputs too: a parameter's
gradient sums over every token, and is held to the magnitudes it sums (`fuzz.terms`).
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from fuzz.case import (ACTIVATIONS, MODULE_KINDS, CallContext, Case, ModuleCall, ModuleInput,
                       Program, TensorSpec, module_parameters)
from strategies.compile_settings import compile_specs, sometimes_frozen
from strategies.models import lengths
from strategies.programs import with_modes
from strategies.tensors import float_dtypes, seeds, tensor_specs


def _weight(shape: tuple[int, ...], dtype: str, grad: bool) -> st.SearchStrategy[TensorSpec]:
    """A parameter: normal values, contiguous or, as `w.T` of another is, transposed."""
    layouts = st.sampled_from(("contiguous", "transposed") if len(shape) >= 2 else ("contiguous",))
    return st.builds(TensorSpec, st.just(shape), st.just(dtype), st.just("normal"), layouts,
                     seed=seeds(), requires_grad=st.just(grad))


def _mask(draw: st.DrawFn, shape: tuple[int, ...], dtype: str) -> TensorSpec:
    """A torch.nn mask: bool (True: masked) or float (-inf: masked; or additive values)."""
    kind = draw(st.sampled_from(("bool", dtype)))
    values = "padding" if kind == "bool" else draw(st.sampled_from(("padding", "additive")))
    return TensorSpec(shape, kind, values, seed=draw(seeds()))


@st.composite
def module_cases(draw: st.DrawFn, backend: str = "eager", device: str = "cpu",
                 freezing: bool = True) -> Case:
    # No float64: there eager is the reference, so only the floors hold compiled, and a
    # module's scores have no conditioning (docs/oracle.md, "torch.nn modules").
    dtype = draw(float_dtypes(device).filter(lambda d: d != "float64"))
    kind = draw(st.sampled_from(MODULE_KINDS))
    heads = draw(st.integers(1, 4))
    embed = heads * draw(st.sampled_from((2, 4, 8, 3)))
    batch, length = draw(st.integers(1, 3)), draw(lengths())
    cross = kind == "mha" and draw(st.booleans())
    memory = kind == "decoder_layer"  # attends to an encoder's output, unmasked
    keys = draw(lengths()) if cross or memory else length
    masked = length if memory else keys  # the keys the masks span: a decoder's own tokens
    other_dims = cross and draw(st.booleans())
    kdim, vdim = (draw(st.integers(1, 16)), draw(st.integers(1, 16))) if other_dims else (None, None)
    module = ModuleInput(
        kind, embed, heads, params=(), batch_first=draw(st.booleans()),
        bias=not draw(st.integers(0, 3)) == 3,
        add_bias_kv=kind == "mha" and draw(st.integers(0, 3)) == 3, kdim=kdim, vdim=vdim,
        norm_first=kind != "mha" and draw(st.booleans()),
        feedforward=draw(st.integers(1, 16)) if kind != "mha" else 4,
        activation=draw(st.sampled_from(ACTIVATIONS)) if kind != "mha" else "relu",
        training=draw(st.booleans()))
    grad = draw(st.booleans())  # the parameters' gradients, and maybe the inputs'
    params, inputs = [], []
    for path, shape in module_parameters(module).items():
        name = "attn_" + path.replace(".", "_")
        inputs.append((name, draw(_weight(shape, dtype, grad))))
        params.append((path, name))
    module = replace(module, params=tuple(params))

    def sequence(n: int, width: int) -> tuple[int, ...]:
        return (batch, n, width) if module.batch_first else (n, batch, width)

    inputs_grad = grad and draw(st.booleans())

    def activation(shape: tuple[int, ...]) -> TensorSpec:
        return replace(draw(tensor_specs(shape, dtype)), requires_grad=inputs_grad)

    x = activation(sequence(length, embed))
    inputs = [("x", x), ("attn", module)] + inputs
    key = value = None
    if cross:
        key, value = "k", "v"
        inputs += [("k", activation(sequence(keys, kdim or embed))),
                   ("v", activation(sequence(keys, vdim or embed)))]
    elif memory:
        key = value = "memory"
        inputs.append(("memory", activation(sequence(keys, embed))))
    padding = attn_mask = None
    if draw(st.booleans()):
        padding = "key_padding_mask"
        inputs.append((padding, _mask(draw, (batch, masked), dtype)))
    if draw(st.booleans()):
        attn_mask = "attn_mask"
        shape = draw(st.sampled_from(((length, masked), (batch * heads, length, masked))))
        inputs.append((attn_mask, _mask(draw, shape, dtype)))
    need_weights = kind == "mha" and draw(st.booleans())
    call = ModuleCall("out", "attn", "x", key, value, padding, attn_mask,
                      # the causal hint needs the mask it describes: without one, rarely
                      is_causal=draw(st.booleans()) if attn_mask else draw(st.integers(0, 7)) == 7,
                      need_weights=need_weights,
                      average_attn_weights=not (need_weights and draw(st.booleans())))
    returns = ("out",) + ((call.weights_out,) if call.weights_out else ())
    # A model calls its layer again on new values, from any grad mode or autocast.
    calls = (draw(with_modes(CallContext())),) + tuple(
        draw(with_modes(CallContext(reseed=s))) for s in draw(st.lists(st.integers(1, 3),
                                                                       max_size=1)))
    return draw(sometimes_frozen(Case(inputs=tuple(inputs), program=Program((call,), returns),
                                      compile=draw(compile_specs(backend)), device=device,
                                      calls=calls, backward=grad), freezing))
