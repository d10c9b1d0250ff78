"""The CPU target: Numba ``prange`` kernels over NumPy arrays, or over arrays found at addresses in a table."""

from ..printing import CpuElementPrinter
from . import Target

CPU = Target(
    name="cpu",
    template="cpu.py.j2",
    printer=CpuElementPrinter,
    constants=(
        ("PARALLEL_THRESHOLD", 1 << 15, "Calls on fewer elements than this run the serial kernels: below it, starting "
         "threads costs more than it saves (measured break-even 2^14-2^15 elements)."),
        ("CHUNK", 1 << 12, "Kernels work in chunks of this many elements of one tensor: a thread's unit of work, and "
         "the block over which reductions sum in the arrays' dtype before the float64 sum of the block sums."),
    ),
    runtime=("tables", "storage", "cpu"),
    device_types=("cpu",),
    reserved=frozenset({"PARALLEL_THRESHOLD", "CHUNK", "parallel", "c", "j", "n", "i", "start", "stop"}),
    # Tiles of rows and columns: each writes a partial sum per column it covers, which the host adds up; tall tiles keep
    # those few (1/32 of the elements for 4096 columns).
    tile=1 << 17,
)
