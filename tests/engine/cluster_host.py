"""A ``ray.cluster_utils.Cluster`` (head + N worker nodes) in a process of its own, driven over stdin.

The fault tests run it as a subprocess: tearing a Cluster down inside the pytest process also breaks
the session's own local Ray there. Protocol, one line each way: it prints the cluster address once
the nodes are up; then ``remove NODE_ID`` (SIGKILL a worker node's processes), ``add`` and ``quit``
each answer ``ok`` (or ``error: ...``).

    python tests/engine/cluster_host.py 3
"""

import sys

from ray.cluster_utils import Cluster


def main(workers: int) -> None:
    # The head gets no CPUs, as on a real cluster, so every actor lands on a worker node that can be removed.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(workers):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    print(cluster.address, flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        try:
            if command == "remove":
                (node,) = [n for n in cluster.worker_nodes if n.node_id == args[0]]
                cluster.remove_node(node, allow_graceful=False)
            elif command == "add":
                cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
            elif command == "quit":
                break
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception as error:  # answer, so the test fails with the reason instead of hanging
            print(f"error: {type(error).__name__}: {error}", flush=True)
            continue
        print("ok", flush=True)
    cluster.shutdown()
    print("ok", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
