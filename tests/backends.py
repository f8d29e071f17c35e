"""The backends every spec of specs/ is tested on (tests/test_specs.py, test_backend_*.py): what
each one refuses, and why (the sets are asserted, so that they cannot grow unnoticed), and
whether its packages are installed here (its tests skip with the reason when they are not)."""
import importlib.util

import pytest

import rnnspec
from rnnspec.errors import SpecError

REFUSED = {
    "numba": {
        **{s: "attention" for s in ("attention_concat", "attention_cosine", "attention_dot",
                                    "attention_general", "attention_local", "attention_scaled")},
        "h0_from_input": "softmax", "jordan": "softmax", "one_to_many": "softmax",
        "generate": "feedback", "teacher_forcing": "feedback",
    },
    "array-api": {
        **{s: "_attention" for s in ("attention_concat", "attention_cosine", "attention_dot",
                                     "attention_general", "attention_local", "attention_scaled",
                                     "self_attention")},
        "char_lm": "_embed_grad", "generate": "_onehot", "teacher_forcing": "_onehot",
        "hierarchical": "steps inside steps",
    },
}
NEEDS = {"numba": ("numba", "scipy"), "array-api": ("array_api_compat",)}
EXTRA = {"numba": "numba", "array-api": "array-api"}


def missing(backend):
    """Why ``backend`` cannot run here (a package it needs is not installed), or None."""
    gone = [m for m in NEEDS.get(backend, ()) if importlib.util.find_spec(m) is None]
    return (f"{', '.join(gone)} not installed (pip install \"rnnspec[{EXTRA[backend]}]\")"
            if gone else None)


def params():
    """pytest params of the non-NumPy backends, each skipped where it cannot run."""
    return [pytest.param(b, marks=pytest.mark.skipif(missing(b) is not None,
                                                     reason=str(missing(b))))
            for b in REFUSED]


def compile_or_refused(path, backend):
    """The module of spec ``path`` for ``backend``; None when the backend refuses it, after
    checking that it is one of REFUSED[backend] and that the refusal is positioned at the
    spec's file with a caret and names the reason."""
    text = path.read_text(encoding="utf-8")
    if path.stem in REFUSED[backend]:
        with pytest.raises(SpecError) as e:
            rnnspec.generate(text, filename=str(path), base=path.parent, backend=backend)
        message = str(e.value)
        assert message.startswith(f"{path}:") and "^" in message, message
        assert REFUSED[backend][path.stem] in message, message
        return None
    source = rnnspec.generate(text, filename=str(path), base=path.parent, backend=backend)
    return rnnspec.load_module(source, path.stem)  # (numba: the file, and its compiled loops,
    # that tests/test_backend_numba.py loads too)
