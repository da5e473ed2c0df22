"""NumPy f32 matmul throughput on the sizes of matmul_bench.rs.

Run with (see README.md): the venv's python, OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE unset, OPENBLAS_NUM_THREADS=2.
"""
import statistics
import sys
import time

import numpy as np

try:
    from threadpoolctl import threadpool_info
except ImportError:  # pragma: no cover
    threadpool_info = None


def main() -> None:
    print(f"numpy {np.__version__}, python {sys.version.split()[0]}")
    if threadpool_info:
        for pool in threadpool_info():
            print(
                f"  {pool.get('internal_api')} {pool.get('version')}: "
                f"kernel {pool.get('architecture')}, {pool.get('num_threads')} threads"
            )
    print(f"{'n':>6} {'best GF/s':>12} {'median GF/s':>12} {'runs':>6}")
    for n in (256, 512, 1024, 2048, 4096):
        data = ((np.arange(n * n) * 7919 % 1000) / 1000.0 - 0.5).astype(np.float32)
        a = data.reshape(n, n)
        b = data.reshape(n, n).copy()
        a @ b  # warm-up
        flops = 2.0 * n**3
        times = []
        start = time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - start < 2.0 and len(times) < 50):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        times.sort()
        print(
            f"{n:>6} {flops / times[0] / 1e9:>12.1f} "
            f"{flops / statistics.median(times) / 1e9:>12.1f} {len(times):>6}"
        )


if __name__ == "__main__":
    main()
