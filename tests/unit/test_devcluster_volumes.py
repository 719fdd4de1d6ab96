"""The local node's volume logic: which volumes to prepare, mounts, files, token timing.

Pure functions are tested with literal pod dicts; ``PodVolumes`` with a temporary
directory and fake token/lookup callables (the API side is covered by the integration
tests in tests/integration/test_cluster.py).
"""

from __future__ import annotations

import stat
from datetime import datetime, timedelta, timezone

import pytest

from devcluster import podspec, volumes
from devcluster.podvolumes import PodVolumes, TokenError

# What the ServiceAccount admission plugin injects into every pod that does not opt out.
KUBE_API_ACCESS = {
    "name": "kube-api-access-x1",
    "projected": {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    },
}
SA_MOUNT = {"name": "kube-api-access-x1", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": True}


def make_pod(volume_list, mounts, sa="runner"):
    return {
        "metadata": {"name": "p1", "namespace": "ns1", "uid": "uid-1"},
        "spec": {"serviceAccountName": sa, "volumes": volume_list,
                 "containers": [{"name": "main", "volumeMounts": mounts}]},
    }


OBJECTS = {
    ("ConfigMap", "ns1", "kube-root-ca.crt"): {"ca.crt": b"-----CA-----\n"},
    ("ConfigMap", "ns1", "settings"): {"a.conf": b"a=1\n", "b.conf": b"b=2\n"},
    ("Secret", "ns1", "creds"): {"password": b"s3cret", "blob": b"\x00\xff"},
}


def lookup(kind, namespace, name):
    return OBJECTS.get((kind, namespace, name))


# -- which volumes, which mounts -------------------------------------------------------

def test_only_mounted_volumes_are_prepared_in_spec_order():
    pod = make_pod(
        [{"name": "unused", "hostPath": {"path": "/etc"}}, {"name": "scratch", "emptyDir": {}}, KUBE_API_ACCESS],
        [SA_MOUNT, {"name": "scratch", "mountPath": "/scratch"}],
    )
    assert [v["name"] for v in volumes.volumes_to_prepare(pod)] == ["scratch", "kube-api-access-x1"]


def test_a_pod_without_volumes_prepares_nothing():
    pod = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": {"containers": [{"name": "c"}]}}
    assert volumes.volumes_to_prepare(pod) == []


def test_mounting_an_unsupported_volume_type_names_the_volume_and_type():
    pod = make_pod([{"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}}],
                   [{"name": "data", "mountPath": "/data"}])
    with pytest.raises(podspec.UnsupportedPod, match="volume 'data': type persistentVolumeClaim is not supported"):
        volumes.volumes_to_prepare(pod)


def test_mounting_a_volume_the_pod_does_not_declare_is_refused():
    pod = make_pod([], [{"name": "ghost", "mountPath": "/g"}])
    with pytest.raises(podspec.UnsupportedPod, match="no volume named 'ghost'"):
        volumes.volumes_to_prepare(pod)


@pytest.mark.parametrize("mount, message", [
    ({"subPathExpr": "$(POD_NAME)"}, "subPathExpr is not supported"),
    ({"mountPropagation": "Bidirectional"}, "Bidirectional is not supported"),
    ({"subPath": "../escape"}, "must be relative and stay inside the volume"),
    ({"subPath": "/abs"}, "must be relative and stay inside the volume"),
])
def test_unsupported_mount_options_are_refused(mount, message):
    pod = make_pod([{"name": "scratch", "emptyDir": {}}], [{"name": "scratch", "mountPath": "/s", **mount}])
    with pytest.raises(podspec.UnsupportedPod, match=message):
        volumes.mounts_for(pod, pod["spec"]["containers"][0])


def test_mounts_are_ordered_parents_first_and_only_empty_dirs_are_writable():
    pod = make_pod(
        [{"name": "inner", "secret": {"secretName": "creds"}}, {"name": "outer", "emptyDir": {}},
         {"name": "ro-scratch", "emptyDir": {}}],
        [{"name": "inner", "mountPath": "/work/etc/creds/"}, {"name": "outer", "mountPath": "/work"},
         {"name": "ro-scratch", "mountPath": "/ro", "readOnly": True}],
    )
    mounts = volumes.mounts_for(pod, pod["spec"]["containers"][0])
    assert [(m.volume, m.target, m.read_only) for m in mounts] == [
        ("outer", "/work", False), ("ro-scratch", "/ro", True), ("inner", "/work/etc/creds", True),
    ]


# -- files -------------------------------------------------------------------------------

def test_the_kube_api_access_projection_gives_ca_namespace_and_a_token_request():
    pod = make_pod([KUBE_API_ACCESS], [SA_MOUNT])
    files, tokens = volumes.render_files(KUBE_API_ACCESS, pod, lookup)
    assert [(f.path, f.data, f.mode) for f in files] == [
        ("ca.crt", b"-----CA-----\n", 0o644), ("namespace", b"ns1", 0o644),
    ]
    assert tokens == [volumes.TokenSource("token", 3607, None, 0o644)]


def test_the_token_request_is_bound_to_the_pod_with_the_projection_lifetime_and_audience():
    pod = make_pod([KUBE_API_ACCESS], [SA_MOUNT])
    body = volumes.token_request(pod, volumes.TokenSource("token", 7200, "vault"))
    assert body["spec"] == {
        "audiences": ["vault"], "expirationSeconds": 7200,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p1", "uid": "uid-1"},
    }
    assert volumes.token_request(pod, volumes.TokenSource("token"))["spec"]["audiences"] == []


def test_a_projection_without_expiration_defaults_to_kubelets_3607_seconds():
    vol = {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "tok"}}]}}
    _, tokens = volumes.render_files(vol, make_pod([vol], []), lookup)
    assert tokens[0].expiration_seconds == volumes.DEFAULT_TOKEN_SECONDS == 3607


def test_service_account_defaults_to_default():
    assert volumes.service_account_name({"spec": {}}) == "default"
    assert volumes.service_account_name(make_pod([], [], sa="worker")) == "worker"


def test_secret_volume_writes_every_key_as_bytes_with_default_mode():
    vol = {"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400}}
    files, tokens = volumes.render_files(vol, make_pod([vol], []), lookup)
    assert tokens == []
    assert {(f.path, f.data, f.mode) for f in files} == {("blob", b"\x00\xff", 0o400), ("password", b"s3cret", 0o400)}


def test_config_map_items_choose_keys_paths_and_modes():
    vol = {"name": "c", "configMap": {"name": "settings",
                                      "items": [{"key": "b.conf", "path": "conf/b", "mode": 0o600}]}}
    files, _ = volumes.render_files(vol, make_pod([vol], []), lookup)
    assert [(f.path, f.data, f.mode) for f in files] == [("conf/b", b"b=2\n", 0o600)]


def test_a_missing_object_or_key_waits_unless_optional():
    missing = {"name": "m", "secret": {"secretName": "nope"}}
    with pytest.raises(podspec.ConfigError, match='volume \'m\': Secret "nope" not found'):
        volumes.render_files(missing, make_pod([missing], []), lookup)
    optional = {"name": "m", "secret": {"secretName": "nope", "optional": True}}
    assert volumes.render_files(optional, make_pod([optional], []), lookup) == ([], [])
    bad_key = {"name": "k", "configMap": {"name": "settings", "items": [{"key": "zzz", "path": "z"}]}}
    with pytest.raises(podspec.ConfigError, match="couldn't find key zzz in ConfigMap ns1/settings"):
        volumes.render_files(bad_key, make_pod([bad_key], []), lookup)


def test_resource_field_refs_are_refused_with_the_item_named():
    vol = {"name": "d", "downwardAPI": {"items": [
        {"path": "limit", "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu"}}]}}
    with pytest.raises(podspec.UnsupportedPod, match="item 'limit': only fieldRef"):
        volumes.render_files(vol, make_pod([vol], []), lookup)


def test_empty_dir_has_no_files():
    vol = {"name": "e", "emptyDir": {"sizeLimit": "64Mi"}}
    assert volumes.render_files(vol, make_pod([vol], []), lookup) == ([], [])


# -- token refresh timing ------------------------------------------------------------

@pytest.mark.parametrize("lifetime, delay", [
    (3607, 3607 * 0.8),        # an hour: at 80%
    (600, 480),                # the shortest TokenRequest allows
    (365 * 24 * 3600, 86400),  # extended by the apiserver to a year: still daily
    (0, 0), (-5, 0),           # already expired: at once
])
def test_refresh_delay_is_80_percent_of_the_lifetime_capped_at_a_day(lifetime, delay):
    assert volumes.refresh_delay(lifetime) == pytest.approx(delay)


def test_mount_args_are_triples_then_a_separator():
    assert volumes.mount_args([("/h/a", "/a", "ro"), ("/h/b", "/b", "rw"), ("/tmp/x", "/tmp/x", "host")]) == [
        "/h/a", "/a", "ro", "/h/b", "/b", "rw", "/tmp/x", "/tmp/x", "host", "--"]


# -- PodVolumes: writing and refreshing, with fake API callables ------------------------

class FakeTokens:
    def __init__(self, lifetime=3600):
        self.calls = []
        self.lifetime = lifetime
        self.fail = False

    def __call__(self, service_account, namespace, body):
        if self.fail:
            raise RuntimeError("apiserver unavailable")
        self.calls.append((service_account, namespace, body))
        expires = datetime.now(timezone.utc) + timedelta(seconds=self.lifetime)
        return f"token-{len(self.calls)}", expires


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_prepare_writes_token_ca_and_namespace_and_schedules_the_refresh(tmp_path):
    pod = make_pod([KUBE_API_ACCESS, {"name": "scratch", "emptyDir": {}}],
                   [SA_MOUNT, {"name": "scratch", "mountPath": "/scratch", "subPath": "sub"}])
    tokens, clock = FakeTokens(lifetime=3600), Clock()
    pv = PodVolumes(tmp_path, pod, tokens, lookup, clock=clock)
    pv.prepare()
    sa_dir = tmp_path / "kube-api-access-x1"
    assert (sa_dir / "token").read_text() == "token-1"
    assert (sa_dir / "ca.crt").read_bytes() == b"-----CA-----\n"
    assert (sa_dir / "namespace").read_text() == "ns1"
    assert stat.S_IMODE((sa_dir / "token").stat().st_mode) == 0o644
    assert tokens.calls[0][:2] == ("runner", "ns1")
    assert pv.next_refresh() == pytest.approx(1000 + 3600 * 0.8, abs=2)
    assert pv.host_mounts(pod["spec"]["containers"][0]) == [
        (str(tmp_path / "scratch" / "sub"), "/scratch", False),
        (str(sa_dir), "/var/run/secrets/kubernetes.io/serviceaccount", True),
    ]
    assert (tmp_path / "scratch" / "sub").is_dir()  # a missing subPath is created


def test_refresh_replaces_the_token_only_when_due_and_retries_after_a_failure(tmp_path):
    pod = make_pod([KUBE_API_ACCESS], [SA_MOUNT])
    tokens, clock = FakeTokens(lifetime=1000), Clock()
    pv = PodVolumes(tmp_path, pod, tokens, lookup, clock=clock)
    pv.prepare()
    token = tmp_path / "kube-api-access-x1" / "token"
    clock.t += 700  # before 80%
    pv.refresh_due()
    assert token.read_text() == "token-1"
    clock.t += 101  # past 80% of 1000 s
    tokens.fail = True
    pv.refresh_due()
    assert token.read_text() == "token-1"  # the old token stays
    assert pv.next_refresh() == pytest.approx(clock.t + 10)
    tokens.fail = False
    clock.t += 10
    pv.refresh_due()
    assert token.read_text() == "token-2"
    assert pv.next_refresh() == pytest.approx(clock.t + 800, abs=2)


def test_a_refused_token_leaves_nothing_half_written(tmp_path):
    pod = make_pod([KUBE_API_ACCESS], [SA_MOUNT])
    tokens = FakeTokens()
    tokens.fail = True
    pv = PodVolumes(tmp_path, pod, tokens, lookup)
    with pytest.raises(TokenError, match="ServiceAccount ns1/runner"):
        pv.prepare()
    assert not (tmp_path / "kube-api-access-x1").exists()
    assert pv.next_refresh() is None


def test_kubernetes_service_env_points_at_the_apiserver_and_the_container_can_override_it():
    service = podspec.kubernetes_service_env("127.0.0.1", 16443)
    assert service["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert service["KUBERNETES_SERVICE_PORT"] == service["KUBERNETES_SERVICE_PORT_HTTPS"] == "16443"
    pod = make_pod([], [])
    container = {"env": [{"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
                         {"name": "KUBERNETES_SERVICE_HOST", "value": "override"}]}
    env = podspec.resolve_env(pod, container, service_env=service)
    assert env["URL"] == "https://127.0.0.1:16443"
    assert env["KUBERNETES_SERVICE_HOST"] == "override"


# -- host paths hidden by volumes (pods run on the host's file system) ---------------------

def test_a_volume_over_an_ancestor_hides_the_host_path():
    assert volumes.shadowed_host_paths(["/tmp"], ["/tmp/fresh/.venv", "/usr", "/work/main"]) == ["/tmp/fresh/.venv"]


def test_a_path_that_is_a_mount_target_is_the_volumes_on_purpose():
    assert volumes.shadowed_host_paths(["/tmp/fresh"], ["/tmp/fresh"]) == []


def test_paths_outside_every_volume_and_relative_ones_need_nothing():
    assert volumes.shadowed_host_paths(["/tmp", "/etc/app"], ["/tmpfoo/x", "/etc", "relative/x", "/"]) == []


def test_a_hidden_path_brought_back_by_its_ancestor_is_not_bound_twice():
    paths = ["/tmp/fresh/.venv", "/tmp/fresh", "/tmp/fresh/examples", "/tmp/state"]
    assert volumes.shadowed_host_paths(["/tmp"], paths) == ["/tmp/fresh", "/tmp/state"]


def test_a_volume_inside_a_restored_path_hides_its_own_descendants_again():
    # /tmp hides /tmp/r; /tmp/r is bound back; the volume at /tmp/r/data hides /tmp/r/data/venv again.
    assert volumes.shadowed_host_paths(["/tmp", "/tmp/r/data"], ["/tmp/r", "/tmp/r/data/venv"]) == [
        "/tmp/r", "/tmp/r/data/venv"]


def test_the_deepest_covering_volume_decides():
    # /opt/a is a volume inside the volume /opt: /opt/a/b is hidden by /opt/a, and /opt/x
    # being restored does not bring it back.
    assert volumes.shadowed_host_paths(["/opt", "/opt/a"], ["/opt/x", "/opt/a/b"]) == ["/opt/x", "/opt/a/b"]


def test_paths_are_compared_normalised():
    assert volumes.shadowed_host_paths(["/tmp/"], ["/tmp//fresh/./lib/"]) == ["/tmp/fresh/lib"]


def test_mount_plan_binds_a_hidden_path_after_its_volume_and_before_volumes_inside_it():
    mounts = [("/state/v/tmp", "/tmp", False), ("/state/v/cache", "/tmp/repo/cache", False),
              ("/state/v/conf", "/etc/conf", True)]
    plan = volumes.mount_plan(mounts, ["/tmp/repo", "/usr"])
    assert plan == [
        ("/state/v/tmp", "/tmp", "rw"),
        ("/state/v/conf", "/etc/conf", "ro"),
        ("/tmp/repo", "/tmp/repo", "host"),
        ("/state/v/cache", "/tmp/repo/cache", "rw"),
    ]


def test_mount_plan_without_volumes_binds_nothing():
    assert volumes.mount_plan([], ["/tmp/repo", "/usr"]) == []


def test_mount_args_refuse_an_unknown_mode():
    with pytest.raises(ValueError, match="mode must be ro, rw or host, got 'rx'"):
        volumes.mount_args([("/h/a", "/a", "rx")])
