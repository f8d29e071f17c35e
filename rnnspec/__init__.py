"""rnnspec: compile declarative recurrent-network specs (.rnn) to NumPy forward + BPTT code.

Public API::

    compile_source(text, dims=None, name="spec")  -> the generated module, imported
    compile_file(path, dims=None)                  -> the same for a file
    generate(text, dims=None, filename="spec.rnn") -> the generated source text
    gradcheck(spec_or_module, ...)                 -> a GradcheckReport (what the CLI prints)
    random_truncation(T, p, seed, B=None)          -> xi for backward(..., xi=xi)
    clip_grads(grads, value= | norm=[, random=])   -> (clipped grads, norm before clipping)
    rtrl(module, params, inputs, targets, ...)     -> (loss, grads) forward in time (RTRL)
    tbptt(module, params, inputs, targets, k1, k2) -> (loss, grads) of TBPTT(k1, k2)
    to_torch_state_dict(module, params)            -> torch.nn.LSTM/GRU's state_dict (NumPy)
    from_torch_state_dict(module, state_dict)      -> the module's params from one (torch_*.rnn)
    make_optimizer(name, **options)                -> SGD | Adam | AdamW ('sgd', 'momentum',
                                                      'nesterov', 'adam', 'adamw')
    opt.step(params, grads)                        -> the new params (torch.optim's updates)
    opt.state_dict() / load_optimizer(state)       -> a flat dict for .npz, and back
    SpecError                                      -> every user error in a spec

The stages, each a module with one entry function: parse.parse -> check.check ->
graph.build_graph -> schedule.schedule -> codegen.generate_code; gradcheck.gradcheck checks
the result.
"""
__version__ = "0.1.0"

from .api import analyze, compile_file, compile_source, generate, load_module  # noqa: E402
from .errors import SpecError  # noqa: E402
from .gradcheck import GradcheckReport, gradcheck  # noqa: E402
from .clip import clip_grads  # noqa: E402
from .rtrl import rtrl  # noqa: E402
from .tbptt import tbptt  # noqa: E402
from .optim import SGD, Adam, AdamW, Optimizer, load_optimizer, make_optimizer  # noqa: E402
from .truncation import random_truncation  # noqa: E402
from .torch_weights import from_torch_state_dict, to_torch_state_dict  # noqa: E402

__all__ = ["compile_source", "compile_file", "generate", "gradcheck", "GradcheckReport",
           "SpecError", "analyze", "load_module", "random_truncation", "clip_grads", "rtrl", "tbptt",
           "to_torch_state_dict", "from_torch_state_dict",
           "make_optimizer", "load_optimizer", "Optimizer", "SGD", "Adam", "AdamW", "__version__"]
