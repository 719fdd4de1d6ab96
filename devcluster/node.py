"""The local node agent: test infrastructure standing in for a kubelet. Not product code.

It registers the Node ``lime-local-node`` (Ready, with generous allocatable resources),
renews its Lease in ``kube-node-lease`` and refreshes its Ready condition so the node
lifecycle controller never taints it, and runs the pods the scheduler binds to it.

How a pod runs here, and the limits that follow:

- Each container's ``command`` + ``args`` runs as a **host process**. The image is NOT
  pulled or used at all; a container without ``command`` is refused (no entrypoint to
  read). Commands are looked up on a PATH that puts the running interpreter's venv
  (``sys.prefix/bin``) first, so ``python -m lime_task.runner`` is the project's Python.
- Processes run as the node agent's user (root): the interpreter lives under /root,
  which is mode 700, so ``runAsUser``/``runAsNonRoot`` and the rest of the
  securityContext are NOT honoured. Resources are not enforced.
- Volumes (see volumes.py): emptyDir, secret, configMap, downwardAPI and projected
  volumes are written to a per-pod directory and bind-mounted at their mountPath in the
  container's private mount namespace (read-only except emptyDir). A projected
  ``serviceAccountToken`` (the ``kube-api-access-*`` volume the ServiceAccount admission
  plugin injects) gets a token bound to the pod from the TokenRequest API, requested as
  the node (so the Node authorizer applies), and refreshed at 80% of its lifetime. Other
  volume types are refused when a container mounts them.
- Every container gets ``KUBERNETES_SERVICE_HOST=127.0.0.1`` and
  ``KUBERNETES_SERVICE_PORT(_HTTPS)=<apiserver port>``: with the token volume, in-cluster
  client configuration works as in a real pod (the Service's cluster IP routes nowhere).
- ``env`` (``value`` with ``$(VAR)`` expansion, ``fieldRef``, ConfigMap/Secret key refs,
  ``envFrom``) and ``workingDir`` (default: a per-pod temporary directory) are honoured.
- Each container runs in a private mount namespace (``unshare --mount``) where its
  volumes, then a per-container host file on its ``terminationMessagePath``, are
  bind-mounted (mount targets are created on the host if missing), so the process
  writes its termination message where it expects to. The message is reported like kubelet does (4096 bytes; log tail with
  ``FallbackToLogsOnError``).
- **Restarts, as kubelet does them** (restarts.py): under ``restartPolicy: Always`` (and
  ``OnFailure`` after a non-zero exit) a container that exits is started again *in the
  same pod*: at once the first time, then after a back-off of 10 s doubling to 5 min
  (forgotten once an instance ran 10 min). The pod stays Running (so a ReplicaSet sees
  no reason to replace it), ``restartCount`` goes up, ``lastState.terminated`` keeps the
  previous exit, and during the back-off the container is waiting with reason
  CrashLoopBackOff and kubelet's message (``back-off 20s restarting failed
  container=... pod=...``); Ready is False while it does not run. A pod ends only under
  ``Never``, ``OnFailure`` with exit 0, deletion or ``activeDeadlineSeconds`` (both also
  cut a back-off short). A start failure (exec error, exit code 128) is restarted the
  same way. The container log file keeps every instance's output (no ``--previous``).
- Containers run one after the other (so under ``Always`` only the first container of a
  multi-container pod ever runs); ``initContainers`` are refused (pod Failed with a
  clear message).
- **Host paths under volumes.** The "image" is the host's file system, so a volume
  mounted over an ancestor of a host path the process needs would hide it (the chart's
  emptyDir on /tmp hides a repository cloned under /tmp, and its venv's executable
  cannot be exec'd). Before mounting, the node opens the interpreter's ``sys.prefix`` and
  ``sys.base_prefix``, the repository root, the existing PYTHONPATH directories, the
  executable's directory, a ``workingDir`` that exists on the host and the state dir;
  after the volumes, each one a volume hides is bound back at its place (its mount point
  created inside the volume's directory), before any volume mounted inside it
  (volumes.mount_plan). A path that is itself a mountPath stays the volume's.
- stdout/stderr go to a log file per container under the state directory. The agent
  serves kubelet's ``/containerLogs`` endpoint on 127.0.0.1:10250 (see kubelet_server.py)
  so ``kubectl logs`` works; nothing else of the kubelet API is served (no exec, no attach).
- Deleting a pod: SIGTERM to the process group, SIGKILL after the grace period, then the
  pod is deleted with ``gracePeriodSeconds=0``, as kubelet does. ``activeDeadlineSeconds``
  is enforced (killed, phase Failed, reason DeadlineExceeded).
- **When the agent restarts** (``scripts/cluster down`` then ``up``) the pod processes are
  gone, as after a node reboot (``down`` kills them). For each pod bound to the node that
  is not terminal and that it did not start, the agent does what kubelet does after a
  reboot (restarts.after_agent_restart): a pod that never started just runs; a pod that
  started under ``restartPolicy: Always`` or ``OnFailure`` is **restarted in the same
  pod** (podstatus.resumed_runs): a container that was running gets
  ``lastState.terminated`` exit 137, reason ``NodeAgentRestarted``, and is started again
  at once (``restartCount`` + 1; the pod stays Running, so its Deployment's ReplicaSet
  keeps it and a ``Recreate`` rollout is not left waiting on a dead pod); one waiting in a
  back-off or already exited keeps its real last exit, and one done for good (OnFailure,
  exit 0) is not run again. A ``Never`` pod that had started (Running, or has a
  startTime) is marked Failed, reason ``NodeAgentRestarted``: its process is gone and
  running it again could run a task twice. Pods being deleted are deleted at once.

One thread per pod; the scheduler binds at most ``pods`` allocatable (250) unfinished
pods to the node, which bounds the number of threads.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import platform
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from . import kubelet_server, podspec, podstatus, restarts, volumes
from .config import HOST, REPO_ROOT, ClusterConfig
from .podstatus import ContainerRun, PodOutcome
from .podvolumes import PodVolumes, TokenError

log = logging.getLogger("lime-local-node")

K8S_VERSION = "v1.34.4"
CAPACITY = {"cpu": "64", "memory": "128Gi", "pods": "250", "ephemeral-storage": "1Ti"}
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10
DEFAULT_GRACE = 30
# How often a pod waiting for its volumes (a missing Secret, a refused token) retries.
VOLUME_RETRY_SECONDS = 2


def now() -> datetime:
    return datetime.now(timezone.utc)


class PodGone(Exception):
    pass


def call(fn, *args, what: str, deadline: float = 120.0, accept: tuple[int, ...] = (), **kwargs):
    """Call the API, retrying conflicts, throttling, server errors and connection
    problems with backoff until ``deadline`` seconds passed. 404 raises PodGone; a status
    in ``accept`` returns None (e.g. 409 AlreadyExists for a create)."""
    end = time.monotonic() + deadline
    delay = 0.2
    while True:
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status in accept:
                return None
            if exc.status == 404:
                raise PodGone(what) from None
            if exc.status not in (409, 429) and exc.status < 500:
                raise
            err = f"HTTP {exc.status}"
        except Exception as exc:  # noqa: BLE001 - connection errors of every kind
            err = repr(exc)
        if time.monotonic() > end:
            raise RuntimeError(f"{what}: gave up after {deadline:.0f}s ({err})")
        log.warning("%s failed (%s), retrying in %.1fs", what, err, delay)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def read_tail(path: Path, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read()
    except FileNotFoundError:
        return b""


def ensure_target(path: str) -> None:
    """The bind-mount target must exist; create it on the host (empty file) if missing."""
    target = Path(path)
    if target.is_dir():
        raise podspec.UnsupportedPod(f"terminationMessagePath {path} is a directory on the node")
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()


class PodWorker(threading.Thread):
    """Runs one pod from start to its final status, then forgets it."""

    def __init__(self, agent: "NodeAgent", pod: dict, resumed: bool = False):
        """``resumed``: the pod ran under a previous node agent and is restarted in place,
        carrying on from its reported status (restart counts, lastState, startTime)."""
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent, self.pod = agent, pod
        self.ns, self.pod_name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.dir = agent.cfg.pods_dir / self.ns / self.pod_name / self.uid
        spec = pod["spec"]
        self.runs = [ContainerRun(c["name"], c.get("image", "")) for c in spec.get("containers") or []]
        self.outcome = PodOutcome(restart_policy=spec.get("restartPolicy") or restarts.ALWAYS)
        if resumed:
            status = pod.get("status") or {}
            self.runs = podstatus.resumed_runs(spec.get("containers") or [], status.get("containerStatuses") or [],
                                               self.outcome.restart_policy, now())
            # kubelet keeps the pod's startTime and the conditions' transition times.
            self.outcome.start_time = podstatus.parse_time(status.get("startTime"))
            self.outcome.previous_conditions = {c["type"]: c for c in status.get("conditions") or []
                                                if c.get("lastTransitionTime")}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.delete_after = False
        self.proc: subprocess.Popen | None = None
        self.kill_timer: threading.Timer | None = None
        self.volumes = PodVolumes(self.dir / "volumes", pod, agent.request_token, agent.lookup_raw)

    # -- called from other threads -------------------------------------------------
    def request_stop(self, grace: int | None, delete_after: bool, reason: str | None = None,
                     message: str | None = None) -> None:
        with self.lock:
            if delete_after:
                self.delete_after = True
            if reason and not self.outcome.reason:
                self.outcome.reason, self.outcome.message = reason, message
                self.outcome.failed = True
            first = not self.stop.is_set()
            self.stop.set()
            proc = self.proc
        if proc is not None and first:
            self._terminate(proc, DEFAULT_GRACE if grace is None else grace)

    def _terminate(self, proc: subprocess.Popen, grace: int) -> None:
        log.info("%s/%s: SIGTERM to pid %s, SIGKILL in %ss", self.ns, self.pod_name, proc.pid, grace)
        _killpg(proc.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        if grace > 0:
            self.kill_timer = threading.Timer(grace, _killpg, (proc.pid, signal.SIGKILL))
            self.kill_timer.daemon = True
            self.kill_timer.start()

    def log_path(self, container: str) -> Path:
        return self.dir / f"{container}.log"

    # -- the pod's life --------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except PodGone:
            log.info("%s/%s: pod is gone", self.ns, self.pod_name)
        except Exception:  # noqa: BLE001 - one pod's failure must not kill the agent
            log.exception("%s/%s: unexpected error", self.ns, self.pod_name)
            try:
                self.outcome.failed = True
                self.outcome.reason = self.outcome.reason or "NodeAgentError"
                self.outcome.message = self.outcome.message or "the local node agent failed to run this pod; see its log"
                self._finish()
            except Exception:  # noqa: BLE001
                log.exception("%s/%s: could not report the failure", self.ns, self.pod_name)
        finally:
            if self.kill_timer:
                self.kill_timer.cancel()
            self.agent.forget(self)

    def _run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.outcome.start_time = self.outcome.start_time or now()
        try:
            podspec.check_supported(self.pod)
            volumes.volumes_to_prepare(self.pod)  # refuses unsupported volumes and mounts
        except podspec.UnsupportedPod as exc:
            self.outcome.failed, self.outcome.reason, self.outcome.message = True, "Unsupported", str(exc)
            self._finish()
            return
        self._report()
        deadline = self._deadline()
        if not self._prepare_volumes():
            self._finish()
            return
        for i, container in enumerate(self.pod["spec"]["containers"]):
            if self.stop.is_set():
                break
            if self.runs[i].state == podstatus.TERMINATED:
                continue  # resumed: it ended for good under the previous agent
            self._run_container(i, container, deadline)
        self._finish()

    def _deadline(self) -> float | None:
        ads = self.pod["spec"].get("activeDeadlineSeconds")
        return None if ads is None else time.monotonic() + int(ads)

    def _prepare_volumes(self) -> bool:
        """Write the pod's volumes; while a Secret/ConfigMap is missing or the token is
        refused, the pod stays Pending with the reason in its first container's waiting
        message (kubelet's FailedMount) and we retry. False if the pod was stopped first."""
        while True:
            try:
                self.volumes.prepare()
                return True
            except (podspec.ConfigError, TokenError) as exc:
                log.warning("%s/%s: volumes not ready: %s", self.ns, self.pod_name, exc)
                self._set(0, reason="ContainerCreating", message=f"MountVolume.SetUp failed: {exc}")
                self._report()
                if self.stop.wait(VOLUME_RETRY_SECONDS):
                    return False

    def _prepare(self, container: dict) -> tuple[podspec.ProcessSpec, list[str]]:
        """Env, argv and cwd, and the host paths to keep visible; ConfigError is retried
        (pod stays Pending) until stopped."""
        while True:
            try:
                env = podspec.resolve_env(self.pod, container, host_ip=HOST, pod_ip=HOST, lookup=self.agent.lookup,
                                          service_env=self.agent.service_env)
                break
            except podspec.ConfigError as exc:
                self._set(self._index(container), reason="CreateContainerConfigError", message=str(exc))
                self._report()
                if self.stop.wait(5):
                    raise
        env.setdefault("HOSTNAME", self.pod_name)
        env.setdefault("HOME", pwd.getpwuid(os.getuid()).pw_dir)
        env["PATH"] = podspec.process_path(env, str(Path(sys.prefix) / "bin"), os.environ.get("PATH", ""))
        cwd = container.get("workingDir") or str(self.dir / "work")
        # Only a workingDir that exists on the host is host content to keep visible; one
        # the node creates here belongs to whatever volume ends up over it.
        cwd_on_host = bool(container.get("workingDir")) and Path(cwd).is_dir()
        Path(cwd).mkdir(parents=True, exist_ok=True)
        argv = podspec.container_argv(container, env)
        argv[0] = podspec.resolve_executable(argv[0], env["PATH"], cwd)
        return podspec.ProcessSpec(argv, env, cwd), self._host_paths(env, argv[0], cwd if cwd_on_host else None)

    def _host_paths(self, env: dict[str, str], executable: str, workdir: str | None) -> list[str]:
        """The host directories the process needs because its "image" is the host: the
        interpreter (venv and base), the repository, its PYTHONPATH, its executable's
        directory, its workingDir, and the node's state dir. A volume mounted over an
        ancestor of one (an emptyDir on /tmp with the repository under /tmp) would hide
        it; volumes.mount_plan binds those back."""
        candidates = [sys.prefix, sys.base_prefix, str(REPO_ROOT), str(self.agent.cfg.state_dir),
                      os.path.dirname(executable), *(env.get("PYTHONPATH") or "").split(os.pathsep)]
        if workdir:
            candidates.append(workdir)
        return [p for p in candidates if p and os.path.isabs(p) and os.path.isdir(p)]

    def _index(self, container: dict) -> int:
        return [r.name for r in self.runs].index(container["name"])

    def _set(self, i: int, **changes) -> None:
        with self.lock:
            self.runs[i] = replace(self.runs[i], **changes)

    def _run_container(self, i: int, container: dict, deadline: float | None) -> None:
        """Run the container and, while its pod's restartPolicy says so, start it again in
        this same pod after kubelet's back-off (restarts.py). The pod stays Running
        meanwhile, so its controller sees no reason to replace it; only deletion or the
        deadline (both set ``stop``) end the loop early, also during the back-off."""
        backoff: float | None = None
        while True:
            code = self._run_instance(i, container, deadline)
            if code is None:
                return
            if self.stop.is_set() or not restarts.should_restart(self.outcome.restart_policy, code):
                if i < len(self.runs) - 1:
                    self._report()
                return
            with self.lock:
                run = self.runs[i]
            ran = (run.finished_at - run.started_at).total_seconds() if run.started_at else 0.0
            restart = restarts.next_restart(backoff, ran)
            backoff = restart.backoff
            if restart.delay:
                message = restarts.backoff_message(restart.delay, run.name, self.pod_name, self.ns, self.uid)
                with self.lock:
                    self.runs[i] = run.backing_off(message)
                log.info("%s/%s: %s", self.ns, self.pod_name, message)
                self._report()
                if not self._pause(restart.delay, deadline):
                    return
            else:
                log.info("%s/%s: restarting container %s (exit code %s)", self.ns, self.pod_name, run.name, code)

    def _pause(self, seconds: float, deadline: float | None) -> bool:
        """Wait out a restart back-off. False if the pod was stopped meanwhile: deleted, or
        its activeDeadlineSeconds passed (which fails the pod now, not after the wait)."""
        end = time.monotonic() + seconds
        while True:
            wake = end if deadline is None else min(end, deadline)
            if self.stop.wait(max(0.0, wake - time.monotonic())):
                return False
            if deadline is not None and time.monotonic() >= deadline:
                self.request_stop(0, False, "DeadlineExceeded",
                                  "Pod was active on the node longer than the specified deadline")
                return False
            if time.monotonic() >= end:
                return True

    def _run_instance(self, i: int, container: dict, deadline: float | None) -> int | None:
        """Start the container once and wait for it. Its exit code (128 if it could not be
        started, as a runtime's StartError), or None if it never will (stopped first,
        unsupported); the run in ``self.runs[i]`` is left terminated."""
        name = container["name"]
        try:
            spec, host_paths = self._prepare(container)
            target = container.get("terminationMessagePath") or "/dev/termination-log"
            ensure_target(target)
        except podspec.UnsupportedPod as exc:
            self.outcome.failed, self.outcome.reason, self.outcome.message = True, "Unsupported", str(exc)
            self.stop.set()
            return None
        except podspec.ConfigError:
            return None  # stopped while waiting for its config
        except (FileNotFoundError, OSError) as exc:
            # What a runtime reports when it cannot exec the command.
            with self.lock:
                self.runs[i] = replace(self.runs[i].terminated(128, now(), str(exc)), reason="StartError",
                                       started_at=None, pid=None)
            return 128
        self.volumes.refresh_due()  # a restart after a long back-off finds a fresh token
        msg_file = self.dir / f"{name}.termination-log"
        msg_file.write_bytes(b"")
        log_file = self.log_path(name)
        # Volumes and the host paths they would hide, parents before children (see
        # volumes.mount_plan); the termination message file last so that no volume over
        # its directory hides it.
        mounts = [*volumes.mount_plan(self.volumes.host_mounts(container), host_paths),
                  (str(msg_file), target, volumes.RW)]
        argv = ["unshare", "--mount", "--propagation", "private", "/bin/bash", "-c", volumes.MOUNT_SCRIPT,
                "lime-local-node", spec.cwd, *volumes.mount_args(mounts), *spec.argv]
        with self.lock:
            if self.stop.is_set():
                return None
            with open(log_file, "ab") as out, open(os.devnull, "rb") as devnull:
                proc = subprocess.Popen(argv, env=spec.env, cwd=spec.cwd, stdin=devnull, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
            self.proc = proc
            self.runs[i] = self.runs[i].running(proc.pid, now())
        log.info("%s/%s: container %s started, pid %s", self.ns, self.pod_name, name, proc.pid)
        self._report()
        while True:
            # Wake for the deadline or for the next token refresh, whichever comes first.
            wake = [t for t in (deadline, self.volumes.next_refresh()) if t is not None]
            timeout = None if not wake else max(0.0, min(wake) - time.monotonic())
            try:
                rc = proc.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    deadline = None
                    self.request_stop(self.pod["spec"].get("terminationGracePeriodSeconds"), False, "DeadlineExceeded",
                                      "Pod was active on the node longer than the specified deadline")
                self.volumes.refresh_due()
        if self.kill_timer:
            self.kill_timer.cancel()
        # Make sure nothing of the container outlives it (children left in its group).
        _killpg(proc.pid, signal.SIGKILL)
        code = podstatus.exit_code_of(rc)
        message = podstatus.termination_message(
            read_tail(msg_file, podstatus.MESSAGE_LIMIT), read_tail(log_file, 64 * 1024),
            container.get("terminationMessagePolicy"), code)
        with self.lock:
            self.proc = None
            self.runs[i] = self.runs[i].terminated(code, now(), message)
        log.info("%s/%s: container %s exited with %s", self.ns, self.pod_name, name, code)
        return code

    def _status(self) -> dict:
        with self.lock:
            status = podstatus.build_status(list(self.runs), self.outcome, now())
            self.outcome.previous_conditions = {c["type"]: c for c in status["conditions"]}
        return status

    def _report(self, deadline: float = 60.0) -> None:
        body = {"status": self._status()}
        call(self.agent.core.patch_namespaced_pod_status, self.pod_name, self.ns, body,
             what=f"status of {self.ns}/{self.pod_name}", deadline=deadline)

    def _finish(self) -> None:
        with self.lock:
            # Stopped by the node (deletion, deadline): nothing will restart, the phase is terminal.
            self.outcome.stopped = self.stop.is_set()
            self.runs = podstatus.finalize_unstarted(self.runs, now())
        try:
            # The final status must land: retry for a long time.
            self._report(deadline=600)
        except PodGone:
            return
        if self.delete_after:
            self.agent.delete_pod(self.ns, self.pod_name, self.uid)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class NodeAgent:
    def __init__(self, cfg: ClusterConfig, api: client.ApiClient):
        self.cfg = cfg
        self.api = api
        self.core = client.CoreV1Api(api)
        self.coord = client.CoordinationV1Api(api)
        self.workers: dict[str, PodWorker] = {}
        # uid -> (namespace, name) of pods this agent ran to the end: their late watch
        # events must not look like "Running without a process".
        self.finished: dict[str, tuple[str, str]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.service_env = podspec.kubernetes_service_env(HOST, cfg.apiserver_port)

    # -- node object, lease, heartbeat --------------------------------------------------
    def node_status(self) -> dict:
        t = podstatus.rfc3339(now())

        def cond(ctype: str, status: str, reason: str, message: str) -> dict:
            return {"type": ctype, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": t, "lastTransitionTime": self.started}

        return {
            "capacity": CAPACITY,
            "allocatable": CAPACITY,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "local node"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "local node"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "local node"),
                cond("Ready", "True", "KubeletReady", "lime local node agent is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": HOST}, {"type": "Hostname", "address": self.cfg.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.cfg.kubelet_port}},
            "nodeInfo": {
                "machineID": "lime-local-node", "systemUUID": "lime-local-node", "bootID": self.boot_id,
                "kernelVersion": platform.release(), "osImage": "host processes (lime devcluster)",
                "containerRuntimeVersion": "local://0", "kubeletVersion": K8S_VERSION,
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        }

    def register(self) -> None:
        self.started = podstatus.rfc3339(now())
        self.boot_id = str(time.time_ns())
        name = self.cfg.node_name
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        }
        call(self.core.create_node, node, what="create node", accept=(409,))
        call(self.core.patch_node_status, name, {"status": self.node_status()}, what="node status")
        self.renew_lease()
        log.info("node %s registered", name)

    def renew_lease(self) -> None:
        name = self.cfg.node_name
        renew = now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {"spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": renew}}
        try:
            call(self.coord.patch_namespaced_lease, name, LEASE_NAMESPACE, body, what="lease", deadline=20)
        except PodGone:
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": name, "namespace": LEASE_NAMESPACE}, **body}
            call(self.coord.create_namespaced_lease, LEASE_NAMESPACE, lease, what="create lease", deadline=20)

    def heartbeat_loop(self) -> None:
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            try:
                self.renew_lease()
                call(self.core.patch_node_status, self.cfg.node_name, {"status": self.node_status()},
                     what="node heartbeat", deadline=20)
            except PodGone:
                log.warning("node object vanished: registering again")
                try:
                    self.register()
                except Exception:  # noqa: BLE001
                    log.exception("re-registering the node failed")
            except Exception:  # noqa: BLE001 - keep beating; the next round retries
                log.exception("heartbeat failed")

    # -- pods ---------------------------------------------------------------------------
    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        try:
            if kind == "ConfigMap":
                obj = call(self.core.read_namespaced_config_map, name, namespace, what=f"configmap {name}")
                return dict(obj.data or {})
            obj = call(self.core.read_namespaced_secret, name, namespace, what=f"secret {name}")
            return {k: base64.b64decode(v).decode() for k, v in (obj.data or {}).items()}
        except PodGone:
            return None

    def lookup_raw(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        """A ConfigMap's or Secret's keys as bytes, for volume files (binary data included)."""
        try:
            if kind == "ConfigMap":
                obj = call(self.core.read_namespaced_config_map, name, namespace, what=f"configmap {name}")
                data = {k: v.encode() for k, v in (obj.data or {}).items()}
                data.update({k: base64.b64decode(v) for k, v in (obj.binary_data or {}).items()})
                return data
            obj = call(self.core.read_namespaced_secret, name, namespace, what=f"secret {name}")
            return {k: base64.b64decode(v) for k, v in (obj.data or {}).items()}
        except PodGone:
            return None

    def request_token(self, service_account: str, namespace: str, body: dict) -> tuple[str, datetime]:
        """TokenRequest as the node: the Node authorizer and NodeRestriction allow it only
        for a pod bound to this node and that pod's own ServiceAccount."""
        try:
            result = call(self.core.create_namespaced_service_account_token, service_account, namespace, body,
                          what=f"token for {namespace}/{service_account}", deadline=30)
        except ApiException as exc:
            raise TokenError(f"TokenRequest for ServiceAccount {namespace}/{service_account} refused: "
                             f"HTTP {exc.status} {exc.reason}") from None
        except PodGone:
            raise TokenError(f"ServiceAccount {namespace}/{service_account} not found") from None
        return result.status.token, result.status.expiration_timestamp

    def delete_pod(self, ns: str, name: str, uid: str) -> None:
        body = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid))
        try:
            # 409: the uid precondition failed, the name now belongs to a newer pod.
            call(self.core.delete_namespaced_pod, name, ns, body=body, grace_period_seconds=0,
                 what=f"delete {ns}/{name}", accept=(409,))
        except PodGone:
            pass

    def forget(self, worker: PodWorker) -> None:
        with self.lock:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]
            self.finished[worker.uid] = (worker.ns, worker.pod_name)

    def log_path(self, ns: str, pod: str, container: str) -> Path | None:
        """The newest log file of that container (pod names are reused; uids are not)."""
        with self.lock:
            for w in self.workers.values():
                if w.ns == ns and w.pod_name == pod:
                    return w.log_path(container)
        pod_dir = self.cfg.pods_dir / ns / pod
        candidates = sorted(pod_dir.glob(f"*/{container}.log"), key=lambda p: p.stat().st_mtime)
        return candidates[-1] if candidates else None

    def is_running(self, ns: str, pod: str, container: str) -> bool:
        """Whether that container may still write to its log (for `kubectl logs -f`)."""
        with self.lock:
            workers = [w for w in self.workers.values() if w.ns == ns and w.pod_name == pod]
        for w in workers:
            with w.lock:
                for r in w.runs:
                    # In a restart back-off the container is not running: `logs -f` ends.
                    if r.name == container and (r.state == podstatus.RUNNING or (
                            r.state == podstatus.WAITING and r.last_termination is None)):
                        return True
        return False

    def handle(self, event_type: str, pod: dict) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        uid = meta["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            finished = uid in self.finished
        if event_type == "DELETED":
            if worker:
                worker.request_stop(0, delete_after=False)
            with self.lock:
                self.finished.pop(uid, None)
            if not worker:
                shutil.rmtree(self.cfg.pods_dir / meta["namespace"] / meta["name"] / uid, ignore_errors=True)
            return
        if meta.get("deletionTimestamp"):
            if worker:
                worker.request_stop(meta.get("deletionGracePeriodSeconds"), delete_after=True)
            else:
                # Nothing runs here for it: confirm the deletion, as kubelet does.
                threading.Thread(target=self._delete_quietly, args=(meta["namespace"], meta["name"], uid),
                                 daemon=True).start()
            return
        if worker or finished or status.get("phase") in ("Succeeded", "Failed"):
            return
        # Not ours and not ended: new, or left by a previous agent whose processes are gone.
        started = status.get("phase") == "Running" or bool(status.get("startTime"))
        action = restarts.after_agent_restart(pod["spec"].get("restartPolicy") or restarts.ALWAYS, started)
        if action == restarts.FAIL:
            threading.Thread(target=self._fail_orphan, args=(pod,), daemon=True).start()
            with self.lock:
                self.finished[uid] = (meta["namespace"], meta["name"])
            return
        if action == restarts.RESTART:
            log.info("%s/%s: ran before the node agent restarted; restarting its containers in the pod",
                     meta["namespace"], meta["name"])
        worker = PodWorker(self, pod, resumed=action == restarts.RESTART)
        with self.lock:
            self.workers[uid] = worker
        worker.start()

    def _delete_quietly(self, ns: str, name: str, uid: str) -> None:
        try:
            self.delete_pod(ns, name, uid)
        except Exception:  # noqa: BLE001
            log.exception("deleting %s/%s failed", ns, name)

    def _fail_orphan(self, pod: dict) -> None:
        """A run-once (``Never``) pod that started before this agent did: its process is
        gone and it must not run twice, so it fails."""
        meta = pod["metadata"]
        runs = [ContainerRun(c["name"], c.get("image", "")) for c in pod["spec"].get("containers") or []]
        t = now()
        outcome = PodOutcome(start_time=t, failed=True, reason=podstatus.AGENT_RESTARTED,
                             message="the local node agent restarted and this pod's process did not survive it; "
                                     "restartPolicy Never, so it is not run again")
        status = podstatus.build_status(podstatus.finalize_unstarted(runs, t), outcome, t)
        status.pop("startTime", None)
        try:
            call(self.core.patch_namespaced_pod_status, meta["name"], meta["namespace"], {"status": status},
                 what=f"fail orphan {meta['namespace']}/{meta['name']}")
            log.info("%s/%s: marked Failed (ran before the node agent restarted)", meta["namespace"], meta["name"])
        except Exception:  # noqa: BLE001
            log.exception("could not fail orphan pod %s/%s", meta["namespace"], meta["name"])

    def handle_listed(self) -> str:
        """Handle every pod bound to this node, as listed now: at start, the pods a
        previous agent left behind (restarted in place, failed or deleted, see
        ``handle``). Returns the list's resourceVersion to watch from."""
        resp = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.cfg.node_name}",
                                                     _preload_content=False, _request_timeout=30)
        listed = json.loads(resp.data)
        for pod in listed["items"]:
            self.handle("ADDED", pod)
        return listed["metadata"]["resourceVersion"]

    def pod_loop(self) -> None:
        """List, then watch from the list's resourceVersion; on any error re-list (resync)."""
        selector = f"spec.nodeName={self.cfg.node_name}"
        w = watch.Watch()
        while not self.stopping.is_set():
            try:
                rv = self.handle_listed()
                for event in w.stream(self.core.list_pod_for_all_namespaces, field_selector=selector,
                                      resource_version=rv, timeout_seconds=240, allow_watch_bookmarks=True,
                                      _request_timeout=(10, 300)):
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch error: {event['raw_object']}")
                    if event["type"] == "BOOKMARK":
                        continue
                    self.handle(event["type"], event["raw_object"])
            except Exception as exc:  # noqa: BLE001 - resync on any failure
                if self.stopping.is_set():
                    return
                log.warning("pod watch ended (%r); re-listing", exc)
                time.sleep(1)

    def shutdown(self, *_args) -> None:
        """On SIGTERM: kill our pod processes so `scripts/cluster down` leaves none behind."""
        self.stopping.set()
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            with w.lock:
                proc = w.proc
            if proc is not None:
                _killpg(proc.pid, signal.SIGKILL)
        log.info("node agent stopping; killed %d pod process(es)", len(workers))
        os._exit(0)


def make_api_client(kubeconfig: Path) -> client.ApiClient:
    conf = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=conf)
    # Hundreds of pod threads share this client: a small pool would serialise them.
    conf.connection_pool_maxsize = 64
    return client.ApiClient(conf)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    threading.stack_size(512 * 1024)
    cfg = ClusterConfig.from_env()
    api = make_api_client(cfg.kubeconfig_for("node"))
    agent = NodeAgent(cfg, api)
    signal.signal(signal.SIGTERM, agent.shutdown)
    signal.signal(signal.SIGINT, agent.shutdown)
    agent.register()
    threading.Thread(target=agent.heartbeat_loop, name="heartbeat", daemon=True).start()
    kubelet_server.serve_in_thread(agent)
    agent.pod_loop()


if __name__ == "__main__":
    main()
