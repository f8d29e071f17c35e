"""The symbol table a check fills in, and the did-you-mean of unknown names.

In: the spec and the dimension overrides.  Out: :class:`Symbols`, the tables every part of the
check reads and adds to (declared names and where, the records of :mod:`.model`, the type of every
expression node, the parameters that connections and attention create, the references between
values, the names used), its :class:`~rnnspec.errors.Reporter`, and at the end the
:class:`~.model.Model` (:meth:`Symbols.model`).  Where in an equation an expression is typed is
not kept here but passed down explicitly (:class:`.context.Context`).
"""
from __future__ import annotations

import difflib
import functools
from typing import Dict, List, Optional, Tuple

from .. import ast
from ..delays import Delay
from ..errors import Reporter
from .model import (Attention, Connection, InputInfo, LossInfo, Model, ParamInfo, StateInfo,
                    TargetInfo, Ty, ValueInfo)

MAX_SUGGESTIONS = 20  # undefined names given a did-you-mean (the rest only the plain hint)


def suggest(name: str, names) -> str:
    """"did you mean 'x'?" for the closest of ``names`` to ``name``, or ''."""
    return _closest(name, tuple(names))


@functools.lru_cache(maxsize=256)  # a name misspelt many times is looked up once
def _closest(name: str, names: Tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f"did you mean '{close[0]}'?" if close else ""


class Refused(Exception):
    """A part of the check reported why it refuses a node; the caller gives up on that node
    (raised by the helpers of one call or statement, caught where that node's check starts)."""


class Symbols:
    """Everything the check has found so far (mutable: each part of the check adds to it)."""

    def __init__(self, spec: ast.Spec, overrides: Dict[str, int], cli: bool = False):
        self.spec = spec
        self.overrides = dict(overrides)
        self.override_text = (lambda n, v: f"--dim {n}={v}") if cli else \
            (lambda n, v: f"dims={{{n!r}: {v!r}}}")  # how the user wrote a dimension override
        self.rep = Reporter(spec.source, spec.filename)
        self.undefined = 0  # undefined names reported so far (did-you-mean for the first few)
        self.dims: Dict[str, int] = {}
        self.decl_at: Dict[str, ast.Node] = {}
        self.kind_of: Dict[str, str] = {}
        self.inputs: Dict[str, InputInfo] = {}
        self.targets: Dict[str, TargetInfo] = {}
        self.params: Dict[str, ParamInfo] = {}
        self.consts: Dict[str, float] = {}
        self.states: Dict[str, StateInfo] = {}
        self.values: Dict[str, ValueInfo] = {}
        self.losses: List[LossInfo] = []
        self.types: Dict[ast.Node, Ty] = {}
        self.connections: Dict[ast.Call, Connection] = {}
        self.embeds: Dict[ast.Call, str] = {}  # embed(x[t], n) -> its embedding matrix's name
        self.open_prefixes: set = set()  # automatic prefixes taken by connections being checked
        self.attentions: Dict[ast.Call, Attention] = {}
        self.feedbacks: List[ast.Call] = []
        self.references: List[Tuple[str, str, Delay]] = []
        self.cycles = None  # the references' rnnspec.recurrences.Cycles (the network checks)
        self.used: set = set()
        self.axis: Optional[str] = None  # the main (first) time axis
        self.axes: List[str] = []
        self.nested: Dict[str, str] = {}  # [w in s]: inner axis -> outer axis
        self.nested_at: Dict[str, ast.Node] = {}
        self.inferring: set = set()  # values whose equation is being typed
        self.typed_values: set = set()  # values whose equation has been typed

    def declare(self, name: str, node: ast.Node, kind: str) -> bool:
        """Take ``name`` for a ``kind`` declared at ``node``; False (reported) if it is taken."""
        if name in self.decl_at:
            first = self.decl_at[name]
            self.rep.error(node, f"'{name}' is already defined (as a {self.kind_of[name]} at "
                           f"{first.where()})", "give each input, target, parameter, state "
                           "and value its own name")
            return False
        self.decl_at[name] = node
        self.kind_of[name] = kind
        return True

    def create_param(self, call: ast.Call, name: str, shape, init: str, init_arg,
                     maker: str) -> bool:
        """A parameter created by the call ``call`` (a connection or attention, ``maker`` as
        the message names it); False (reported) if its name is taken."""
        if name in self.decl_at:
            self.rep.error(call, f"{call.func}(...) creates parameter '{name}', but that name is "
                           f"already used ({self.decl_at[name].where()})",
                           f"give the {maker} its own prefix with name=...")
            return False
        self.decl_at[name] = call
        self.kind_of[name] = "parameter"
        self.params[name] = ParamInfo(name, shape, init, init_arg, call, auto=True)
        self.used.add(name)
        return True

    def refuse(self, node, message: str, hint: str = "") -> Refused:
        """Report the error ``message`` at ``node`` and return the :class:`Refused` that gives
        up on the node being checked: ``raise sym.refuse(node, message, hint)``."""
        self.rep.error(node, message, hint)
        return Refused(message)

    def note(self, node: ast.Node, ty: Ty) -> Ty:
        """Record ``ty`` as the type of ``node`` and return it."""
        self.types[node] = ty
        return ty

    def model(self) -> Model:
        return Model(self.spec, self.dims, self.axis, self.inputs, self.targets, self.params,
                     self.consts, self.states, self.values, self.losses, self.axes, self.types,
                     self.connections, self.attentions, self.feedbacks, self.references,
                     self.rep.warnings, dict(self.nested), self.cycles, dict(self.embeds))
