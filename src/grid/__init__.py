"""contextgrid: one live, complete context per customer, partitioned over Ray shard actors.

``grid.Grid`` is the client (start or join a grid, load a base, read and write contexts, scatter-gather).
"""


def __getattr__(name):  # lazy: importing grid must not import Ray
    if name in ("Grid", "GridConfig"):
        from grid import cluster

        return getattr(cluster, name)
    raise AttributeError(name)
