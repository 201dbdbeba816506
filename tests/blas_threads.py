"""One BLAS thread per test process, for modules whose threads would only contend."""


def one_blas_thread_limits():
    """A fixture body: one BLAS thread in this process while a module runs. SmolLM2's products
    keep one core busy, and two threads per test process (pytest-xdist workers, a busy machine)
    oversubscribe the cores and run many times slower; small products only contend."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield
