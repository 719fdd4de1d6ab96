"""Local development cluster for Lime Task: test infrastructure, not product.

It starts a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) built from the Go modules, a node agent that runs pod containers as host
processes (``node.py``), and RabbitMQ, all on loopback. ``scripts/cluster`` is the command
line; ``tests/conftest.py`` uses the same code. See docs/devcluster.md.
"""
