import pytest


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test run: starting it costs about 10 s on 2 cores (ray.md §0.8)."""
    ray = pytest.importorskip("ray")
    from ray.data import DataContext

    ray.init(num_cpus=4, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    context = DataContext.get_current()
    # The default waits forever on a cluster that cannot place actors. Generous, because starting an actor (torch
    # import, model build) took over 120 s on a 2-core machine that was also running other work.
    context.wait_for_min_actors_s = 600
    context.enable_progress_bars = False
    yield ray
    ray.shutdown()
