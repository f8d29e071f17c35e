"""The numba backend's runtime: the forms of op helpers that a lifted time loop calls (see
rnnspec/codegen/lift.py), compiled with numba.  Copied into modules of the numba backend only
(numba is the optional extra rnnspec[numba]; this file is imported only where it is installed)."""
import numba
import numpy as np


# ---- helper: numba
@numba.njit(cache=True)
def _nb_sigmoid(a, out):
    """_sigmoid of a step's values, written into out (the same capped exponent, element by
    element: no temporary array)."""
    for i in np.ndindex(a.shape):
        out[i] = 1.0 / (1.0 + np.exp(min(-a[i], 709.0)))
    return out
