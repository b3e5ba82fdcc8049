"""`single_threaded_blas`: BLAS on one thread for tests whose matrices are small, where
extra threads only add synchronization, which costs seconds per LAPACK call when the
cores are shared with other jobs."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture
def single_threaded_blas():
    with threadpool_limits(limits=1):
        yield
