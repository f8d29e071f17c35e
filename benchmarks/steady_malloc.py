"""Keep freed memory inside the process, for the benchmark scripts.

glibc returns big freed blocks to the system (mmap) and trims the heap; on virtual machines that
hand freed memory back to the host, the first touch of fresh pages then costs about 2-3 ms per MB
and made repeated timings vary by 30x.  ``reexec(script)`` re-executes the script once with
GLIBC_TUNABLES set so that freed memory is reused (no mmap for big blocks, no trimming): the
timings measure steady-state computation.  ``--system-malloc`` on the command line keeps the
default.  Call it before importing NumPy.
"""
import os
import sys

TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1000000000000000"


def reexec(script: str) -> None:
    """Re-execute ``script`` with TUNABLES (once; not with --system-malloc, not off Linux)."""
    if (sys.platform.startswith("linux") and "--system-malloc" not in sys.argv
            and "glibc.malloc" not in os.environ.get("GLIBC_TUNABLES", "")):
        env = dict(os.environ)
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), TUNABLES]))
        os.execve(sys.executable, [sys.executable, os.path.abspath(script)] + sys.argv[1:], env)
