"""Every spec in specs/ compiles and passes the numerical gradient check (float64, central
differences, fixed seeds), at T = 1, a typical T, and a long T; on every other backend
(tests/backends.py) it passes the same check, padded batch included, or is refused at a
position for a reason that backend gives (the refused sets are asserted)."""
import numpy as np
import pytest

import rnnspec
import backends
from conftest import spec_paths

SPECS = spec_paths()
IDS = [p.stem for p in SPECS]


@pytest.mark.parametrize("path", SPECS, ids=IDS)
@pytest.mark.parametrize("T,batch,seed", [(1, 2, 0), (6, 3, 1)])
def test_gradcheck_every_entry(path, T, batch, seed):
    report = rnnspec.gradcheck(path, T=T, batch=batch, seed=seed)
    assert report.ok, report.table()
    assert all(r.checked > 0 for r in report.rows)


@pytest.mark.parametrize("backend", backends.params())
@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_gradcheck_on_every_backend(path, backend):
    mod = backends.compile_or_refused(path, backend)
    if mod is None:
        return  # (refused at a position, for the reason REFUSED gives: checked)
    report = rnnspec.gradcheck(mod, T=6, batch=3, seed=1)
    assert report.ok, report.table()
    if len(mod.AXES) == 1:  # a padded batch: the masked branches of the loops
        report = rnnspec.gradcheck(mod, T=6, batch=3, seed=2, lengths=np.array([6, 2, 4]))
        assert report.ok, report.table()


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_gradcheck_long_sequence(path):
    # long T: every parameter and initial state entry-by-entry, inputs along random directions
    mod = rnnspec.compile_file(path)
    report = rnnspec.gradcheck(mod, T=60, batch=2, seed=2, directional=True, directions=4)
    assert report.ok, report.table()


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_spec_has_comment_header(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), f"{path.name} must start with a comment saying what it is"


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_float32_end_to_end(path):
    mod = rnnspec.compile_file(path)
    p64 = mod.init_params(seed=3)
    p32 = mod.init_params(seed=3, dtype=np.float32)
    from rnnspec.gradcheck import random_problem
    _, inputs, targets, state0, up = random_problem(mod, T=4, batch=2, seed=3)
    out64, c64 = mod.forward(p64, inputs, targets, state0)
    out32, c32 = mod.forward(p32, {k: v.astype(np.float32) for k, v in inputs.items()},
                             targets, {k: v.astype(np.float32) for k, v in state0.items()})
    for name in mod.OUTPUTS:
        assert out32[name].dtype == np.float32, name
        np.testing.assert_allclose(out32[name], out64[name], rtol=1e-4, atol=1e-5)
    g32 = mod.backward(p32, c32, {k: v for k, v in up.items() if k != "final"})
    g64 = mod.backward(p64, c64, {k: v for k, v in up.items() if k != "final"})
    for group in ("params", "inputs", "state0"):
        for name, g in g32[group].items():
            assert g.dtype == np.float32, (group, name)
            np.testing.assert_allclose(g, g64[group][name], rtol=2e-3, atol=2e-4)
