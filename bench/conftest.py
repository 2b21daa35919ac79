"""Benchmarks share one Ray session, like the tests."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, namespace="contextgrid-bench", log_to_driver=False,
                 configure_logging=False)
    yield ray
    ray.shutdown()
