"""The numba backend's runtime: the forms of op helpers that a lifted time loop calls (see
rnnspec/codegen/lift.py), compiled with numba.  Copied into modules of the numba backend only
(numba is the optional extra rnnspec[numba]; this file is imported only where it is installed).

Why exp, tanh and the sigmoid are written out here: numba compiles np.exp and np.tanh to one
call of the C library per element (10-25 ns each), which no loop vectorizes, and at small
batches they were most of a step (an LSTM's forward loop at B = 1: 164 us, 37 us without them).
Written as arithmetic (a range reduction, a polynomial, a rational function), LLVM turns the
element loop into AVX instructions, four float64 at a time.  Each is within 2 ulp of NumPy's
(exp: 1 ulp where the result is a normal number) and keeps NumPy's overflow, inf and NaN
(tests/test_backend_numba.py checks them over a grid of arguments).  float32 arguments are
computed in float64 and rounded once.  error_model='numpy': a division by zero gives inf, as
in NumPy, not an exception (and leaves the loop free of branches, so that it vectorizes)."""
import numba
import numba.extending
import numpy as np


# ---- helper: numba
@numba.extending.intrinsic
def _nb_bits(typingctx, x):
    """The 64 bits of float64 x as an int64 (no conversion)."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(numba.types.int64))
    return numba.types.int64(numba.types.float64), codegen


@numba.extending.intrinsic
def _nb_from_bits(typingctx, n):
    """The float64 whose 64 bits are int64 n."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(numba.types.float64))
    return numba.types.float64(numba.types.int64), codegen


@numba.njit(error_model="numpy", cache=True)
def _nb_exp1(x):
    """exp(x), branch-free: x = n ln 2 + r, |r| <= ln 2 / 2 (n rounded by adding 1.5 * 2**52;
    ln 2 in two parts, fdlibm's), e**r by its Taylor series to r**13 / 13! (the next term is
    below 6e-18 of it), times 2**n built from n's bits in two halves (no overflow of the
    exponent for a subnormal result).  inf above 709.78 and NaN for NaN, as np.exp."""
    y = min(max(x, -746.0), 709.79)
    t = y * 1.4426950408889634 + 6755399441055744.0
    n = t - 6755399441055744.0
    r = (y - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    k = (_nb_bits(t) & 0xFFFFFFFFFFFFF) - 2251799813685248  # n, from t's low bits
    half = k >> 1
    e = p * _nb_from_bits((half + 1023) << 52) * _nb_from_bits((k - half + 1023) << 52)
    inf = np.inf
    e = inf if x > 709.782712893384 else e
    return x if x != x else e


@numba.njit(error_model="numpy", cache=True)
def _nb_tanh1(x):
    """tanh(x), branch-free (both forms computed, one chosen): |x| < 0.625 Cephes' rational
    function x + x z P(z) / Q(z), z = x**2; else (e - 1) / (e + 1), e = exp(2 |x|) (|x| capped
    at 22, where tanh is 1 to the last digit), with x's sign."""
    a = abs(x)
    z = a * a
    e = _nb_exp1(2.0 * min(a, 22.0))
    small = a < 0.625
    p = x * z * ((-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z
                 - 1.61468768441708447952e3)
    q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z \
        + 4.84406305325125486048e3
    em1 = e - 1.0
    neg = -em1
    ep1 = e + 1.0
    big = em1 if x >= 0 else neg
    num = p if small else big
    den = q if small else ep1
    zero = 0.0
    off = x if small else zero
    r = off + num / den
    return x if x != x else r


@numba.njit(error_model="numpy", cache=True)
def _nb_sigmoid1(x):
    """1 / (1 + exp(-x)), -x capped at 709 (as the NumPy runtime's _sigmoid)."""
    return 1.0 / (1.0 + _nb_exp1(min(-x, 709.0)))


def _nb_elementwise(f, doc):
    """An element loop applying scalar function f over a step's values, f(a) into out: row by
    row over the last axis, through a contiguous float64 buffer (a loop over a strided row,
    a slice of the gates' sum, does not vectorize: 13 ns an element against 4.5)."""
    def kernel(a, out):
        buf = np.empty(a.shape[-1])
        for i in np.ndindex(a.shape[:-1]):
            ai, oi = a[i], out[i]
            for j in range(buf.shape[0]):
                buf[j] = ai[j]
            for j in range(buf.shape[0]):
                buf[j] = f(buf[j])
            for j in range(buf.shape[0]):
                oi[j] = buf[j]
        return out
    kernel.__doc__ = doc
    return numba.njit(error_model="numpy", cache=True)(kernel)


_nb_exp = _nb_elementwise(_nb_exp1, "np.exp(a, out=out) of a step's values.")
_nb_tanh = _nb_elementwise(_nb_tanh1, "np.tanh(a, out=out) of a step's values.")
_nb_sigmoid = _nb_elementwise(_nb_sigmoid1, "_sigmoid(a, out=out) of a step's values.")


# the loss helpers of forward and backward, outside the time loops: one compiled pass each in
# place of NumPy's ten or so calls (most of a step's cost at small batches is calls)
@numba.njit(error_model="numpy", cache=True)
def _nb_softmax(a):
    """_softmax(a): softmax over the last axis, shifted by the maximum (NaN stays NaN)."""
    out = np.empty(a.shape, a.dtype)
    buf = np.empty(a.shape[-1])
    for i in np.ndindex(a.shape[:-1]):
        ai, oi = a[i], out[i]
        m = ai[0]
        for j in range(buf.shape[0]):
            v = ai[j]
            m = v if v > m or v != v else m
        for j in range(buf.shape[0]):
            buf[j] = ai[j] - m
        for j in range(buf.shape[0]):
            buf[j] = _nb_exp1(buf[j])
        s = 0.0
        for j in range(buf.shape[0]):
            s += buf[j]
        for j in range(buf.shape[0]):
            oi[j] = buf[j] / s
    return out


@numba.njit(error_model="numpy", cache=True)
def _nb_cross_entropy(z, y, w, p):
    """_cross_entropy(z, y, w, p): the sum over rows of -log softmax(z)[y] (times w): -log p[y]
    where p[y] holds its digits, else by log-sum-exp over z (the same test as NumPy's)."""
    tiny = 2e-31 if z.itemsize == 4 else 4e-301
    total = 0.0
    for i in np.ndindex(y.shape):
        c = y[i]
        zi = z[i]
        py = 0.0 if p is None else p[i][c]
        if py > tiny:
            nll = -np.log(py)
        else:
            m = zi[0]
            for j in range(zi.shape[0]):
                m = max(m, zi[j])
            s = 0.0
            for j in range(zi.shape[0]):
                s += _nb_exp1(zi[j] - m)
            nll = m + np.log(s) - zi[c]
        total += nll if w is None else w[i] * nll
    return total


@numba.njit(error_model="numpy", cache=True)
def _nb_cross_entropy_grad(p, y, w, scale):
    """_cross_entropy_grad(p, y, w, scale): (p - onehot(y)) times scale (and w), one pass."""
    g = np.empty(p.shape, p.dtype)
    for i in np.ndindex(y.shape):
        f = scale if w is None else scale * w[i]
        pi, gi = p[i], g[i]
        for j in range(pi.shape[0]):
            gi[j] = pi[j] * f
        gi[y[i]] -= f
    return g


@numba.njit(error_model="numpy", cache=True)
def _nb_matmul(a, w):
    """a @ w for a step's rows a (B, K) and a matrix w (K, N), C-ordered (a loop hoists W.T's
    copy): below 5 rows, or a small product, an element loop over w's rows (each read once,
    k outer, for every row of a); BLAS calls cost 2-4 us there, the loop 0.7-2 (measured at
    (B, K, N) = (2, 32, 96) and (4, 32, 128)).  Larger: numba's BLAS product."""
    rows = 1
    for d in a.shape[:-1]:
        rows *= d
    if rows > 4 and rows * w.shape[0] * w.shape[1] > 65536:
        return np.ascontiguousarray(a) @ w  # (a strided a: numba warns, BLAS copies)
    out = np.zeros(a.shape[:-1] + (w.shape[1],), a.dtype)  # (a and w: the run's dtype)
    for k in range(w.shape[0]):
        wk = w[k]
        for i in np.ndindex(a.shape[:-1]):
            s = a[i][k]
            oi = out[i]
            for j in range(wk.shape[0]):
                oi[j] += s * wk[j]
    return out
