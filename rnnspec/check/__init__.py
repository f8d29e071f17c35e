"""Stage 2, check: :class:`rnnspec.ast.Spec` -> :class:`Model` (a validated, typed network).

In: the AST from :func:`rnnspec.parse.parse` and optional dimension overrides.  Out: a ``Model``
holding the symbol table (dims, inputs, targets, parameters -- including those created by
``affine``/``gate`` connections --, constants, states, values, losses), the type of every
expression node, and the warnings.  Every user error (undefined or duplicate names, shape
mismatches, references to future steps or to values with no initial value, cycles inside one
time step, losses without targets, ...) is collected with its position; if there is any, a single
:class:`SpecError` listing all of them is raised.

:func:`check` runs the parts in order, each a module of this package filling one
:class:`~.symbols.Symbols`:

- :mod:`.declarations`: the statements -> dims, axes and one record per declared name;
- :mod:`.values`: each value's equation typed (in an order that never recurses deeply), its size;
- :mod:`.expressions`, :mod:`.references`: an expression in its :class:`~.context.Context`
  (whose equation, which axis, the expected size, the teacher side) -> its type;
- :mod:`.functions`: the builtin table :data:`BUILTINS` (name -> typing function);
- :mod:`.elaborate`: ``affine``/``gate`` and ``attend``, which create parameters;
- :mod:`.losses`: the loss statements;
- :mod:`.network`: states, cycles through steps and sequences, unused names.

:mod:`.model` holds what comes out (:class:`Model`, :class:`Ty`, the records).  Expression
typing is recursive across modules (an argument of a builtin is an expression): those modules
import each other as modules and look functions up when called.
"""
from __future__ import annotations

from typing import Dict, Optional

from .. import ast
from . import declarations, losses, network, values
from .context import Context
from .declarations import check_module_names
from .functions import BUILTINS, FUNCTIONS, LOSS_FUNCS
from .model import (PARAM, STATIC, STEP, Attention, Connection, InputInfo, LossInfo, Model,
                    ParamInfo, StateInfo, TargetInfo, Ty, ValueInfo)
from .references import MAX_STEP_BYTES
from .symbols import MAX_SUGGESTIONS, Symbols, suggest


__all__ = ["check", "check_module_names", "Model", "Ty", "InputInfo", "TargetInfo", "ParamInfo",
           "StateInfo", "ValueInfo", "Connection", "Attention", "LossInfo", "STEP", "STATIC",
           "PARAM", "BUILTINS", "FUNCTIONS", "LOSS_FUNCS", "MAX_SUGGESTIONS", "MAX_STEP_BYTES",
           "Context", "Symbols", "suggest"]


def check(spec: ast.Spec, dims: Optional[Dict[str, int]] = None, cli: bool = False) -> Model:
    """Validate ``spec`` (with dimension overrides ``dims``) and return the typed :class:`Model`.
    Errors about ``dims`` name them as the API takes them (``dims={'n': 8}``), or as the
    command line does (``--dim n=8``) with ``cli``."""
    sym = Symbols(spec, dims or {}, cli)
    declarations.declare_all(sym)
    values.type_values(sym)
    for st in spec.statements:
        if isinstance(st, ast.Loss):
            losses.check_loss(sym, st)
    network.check_network(sym)
    sym.rep.raise_if_errors()
    return sym.model()

