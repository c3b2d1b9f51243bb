"""Examples and benchmarks of ramda_optax, run as ``python -m benchmarks.<name>``."""

import os

# One LAPACK thread unless set: the SVDs of the nuclear norm run in
# OpenBLAS, whose busy-waiting threads made them 25× slower (0.5 s against
# 12 s for a 784×512 SVD) on 2 cores shared with another process. Set
# before any module of the package loads NumPy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
