"""The CUDA target: ``numba.cuda`` kernels over device arrays, or over arrays found at addresses in a table."""

from ..printing import ElementPrinter
from . import Target

CUDA = Target(
    name="cuda",
    template="cuda.py.j2",
    printer=ElementPrinter,
    constants=(
        ("THREADS_PER_BLOCK", 256, "Threads per block of every kernel (a power of 2: reductions add in a tree)."),
        ("CHUNK", 1 << 14, "Many-tensor kernels hand each block chunks of this many elements of one tensor; a "
         "reduction's block sums its chunk in the arrays' dtype, the host adds the chunk sums in float64."),
    ),
    runtime=("tables", "storage", "cuda"),
    device_types=("cuda",),
    reserved=frozenset({"ctypes", "sys", "cuda", "THREADS_PER_BLOCK", "CHUNK", "MAX_BLOCKS", "c", "j", "n", "i",
                        "start", "stop", "thread", "half", "scratch", "kind", "blocks", "tables", "device_addresses",
                        "device_chunks"}),
)
