"""Local development cluster for Lime Task: test infrastructure, not product.

It starts a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) and a node (kubelet + containerd, ``kubeletnode.py``) built from their Go
modules, the project's images (``images.py``), and RabbitMQ, all on this machine. ``scripts/cluster`` is the command
line; ``tests/conftest.py`` uses the same code. See docs/devcluster.md.
"""
