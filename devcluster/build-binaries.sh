#!/usr/bin/env bash
# Builds the Kubernetes control-plane binaries, etcd and helm from their Go modules at
# pinned versions, into a cache outside the repository, keyed by version. What is
# already built is skipped, so a second run costs a few milliseconds.
#
# Why wrapper modules: `go install k8s.io/kubernetes/cmd/...@v1.34.x` is refused because
# the kubernetes go.mod has replace directives (its staging modules are required at
# v0.0.0). A wrapper module that requires k8s.io/kubernetes and replaces every staging
# module by its published v0.34.x tag builds the very same code.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
# The node: containerd 2.x from its Go module rather than Debian's 1.6 (Kubernetes is
# ending support for containerd 1.x, and only 2.x keeps pod network namespaces inside its
# own state directory: netns_mounts_under_state_dir). crictl for looking at the node.
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.3.7}
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}
CACHE=${LIME_CACHE:-$HOME/.cache/lime-task}
BIN="$CACHE/bin"
WORK="$CACHE/build"
mkdir -p "$BIN" "$WORK"

# Two callers at once (two test sessions, a shell and a test run) must not build the same
# binary twice: the second waits for the first, then finds everything built.
if [ -z "${LIME_BUILD_LOCKED:-}" ]; then
  exec 9>"$CACHE/.build.lock"
  if ! flock -n 9; then
    printf '[build] another build is running; waiting for it\n' >&2
    flock 9
  fi
  export LIME_BUILD_LOCKED=1
fi

export GOFLAGS=-buildvcs=false CGO_ENABLED=0
# Two cores: keep the build from starving everything else on the machine.
export GOMAXPROCS=${GOMAXPROCS:-2}

log() { printf '[build] %s\n' "$*" >&2; }

# A binary counts as built when its versioned file exists; the unversioned name is a
# symlink so that callers can put $BIN on PATH.
have() { [ -x "$BIN/$1-$2" ]; }
link() { ln -sfn "$1-$2" "$BIN/$1"; }

build_kubernetes() {
  local want=() c
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    have "$c" "$K8S_VERSION" || want+=("$c")
  done
  if [ ${#want[@]} -eq 0 ]; then
    for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do link "$c" "$K8S_VERSION"; done
    return
  fi
  local dir="$WORK/kubernetes-$K8S_VERSION" staging="v0${K8S_VERSION#v1}"
  mkdir -p "$dir"
  cd "$dir"
  if [ ! -f go.mod ]; then
    log "preparing wrapper module for k8s.io/kubernetes $K8S_VERSION"
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module lime-task.dev/k8s-build"
      echo
      echo "go 1.24"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      # Every k8s.io module that kubernetes requires at v0.0.0 is a staging module:
      # point it at its published tag.
      grep -E '^\s+k8s\.io/[^ ]+ v0\.0\.0$' "$gomod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
    } >go.mod
    cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
    go mod tidy -e >/dev/null 2>&1 || true
    go get "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
  fi
  local major=1 minor
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local ld=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for c in "${want[@]}"; do
    log "building $c $K8S_VERSION"
    local t0=$SECONDS
    go build -trimpath -ldflags "-s -w $ld" -o "$BIN/$c-$K8S_VERSION.tmp" "k8s.io/kubernetes/cmd/$c"
    mv "$BIN/$c-$K8S_VERSION.tmp" "$BIN/$c-$K8S_VERSION"
    log "built $c in $((SECONDS - t0))s"
  done
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do link "$c" "$K8S_VERSION"; done
}

# A one-file wrapper module around a main package: used for etcd and helm.
build_wrapped() {
  local name=$1 version=$2 module=$3 pkg=$4 ldflags=$5
  if have "$name" "$version"; then link "$name" "$version"; return; fi
  local dir="$WORK/$name-$version"
  mkdir -p "$dir"
  cd "$dir"
  if [ ! -f go.mod ]; then
    log "preparing wrapper module for $module $version"
    printf 'module lime-task.dev/%s-build\n\ngo 1.24\n' "$name" >go.mod
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >tools.go
    go get "$module@$version" >/dev/null
    go mod tidy >/dev/null
  fi
  if [ "$name" = helm ]; then
    # As helm's own Makefile does: the Kubernetes version that `helm template` and
    # `helm lint` assume comes from the client-go it is built with (else it says v1.20).
    local kv
    kv=$(go list -m -f '{{.Version}}' k8s.io/client-go)
    kv=${kv#v0.}; kv=${kv%%.*}
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kv"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kv"
  fi
  log "building $name $version"
  local t0=$SECONDS
  go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$name-$version.tmp" "$pkg"
  mv "$BIN/$name-$version.tmp" "$BIN/$name-$version"
  link "$name" "$version"
  log "built $name in $((SECONDS - t0))s"
}

# kubelet comes from the same wrapper module; it imports packages the control plane does
# not (cadvisor, the CRI client), so their go.sum entries are added first.
build_kubelet() {
  if have kubelet "$K8S_VERSION"; then link kubelet "$K8S_VERSION"; return; fi
  local dir="$WORK/kubernetes-$K8S_VERSION"
  cd "$dir"
  if [ ! -f kubelet_tools.go ]; then
    printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kubelet"\n' >kubelet_tools.go
    go mod tidy -e >/dev/null 2>&1 || true
  fi
  local minor ld=""
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "building kubelet $K8S_VERSION"
  local t0=$SECONDS
  go build -trimpath -ldflags "-s -w $ld" -o "$BIN/kubelet-$K8S_VERSION.tmp" k8s.io/kubernetes/cmd/kubelet
  mv "$BIN/kubelet-$K8S_VERSION.tmp" "$BIN/kubelet-$K8S_VERSION"
  link kubelet "$K8S_VERSION"
  log "built kubelet in $((SECONDS - t0))s"
}

# containerd, its runc shim and ctr: three main packages of one module.
build_containerd() {
  local c want=()
  for c in containerd containerd-shim-runc-v2 ctr; do
    have "$c" "$CONTAINERD_VERSION" || want+=("$c")
  done
  if [ ${#want[@]} -gt 0 ]; then
    local dir="$WORK/containerd-$CONTAINERD_VERSION" mod=github.com/containerd/containerd/v2
    mkdir -p "$dir"
    cd "$dir"
    if [ ! -f go.mod ]; then
      log "preparing wrapper module for $mod $CONTAINERD_VERSION"
      printf 'module lime-task.dev/containerd-build\n\ngo 1.24\n' >go.mod
      {
        printf '//go:build tools\n\npackage tools\n\nimport (\n'
        printf '\t_ "%s/cmd/%s"\n' "$mod" containerd "$mod" containerd-shim-runc-v2 "$mod" ctr
        printf ')\n'
      } >tools.go
      go get "$mod@$CONTAINERD_VERSION" >/dev/null
      go mod tidy >/dev/null
    fi
    for c in "${want[@]}"; do
      log "building $c $CONTAINERD_VERSION"
      local t0=$SECONDS
      # no_btrfs/no_zfs/no_devmapper: snapshotters this node never uses (overlayfs only).
      go build -trimpath -tags "no_btrfs no_zfs no_devmapper" \
        -ldflags "-s -w -X $mod/version.Version=$CONTAINERD_VERSION" \
        -o "$BIN/$c-$CONTAINERD_VERSION.tmp" "$mod/cmd/$c"
      mv "$BIN/$c-$CONTAINERD_VERSION.tmp" "$BIN/$c-$CONTAINERD_VERSION"
      log "built $c in $((SECONDS - t0))s"
    done
  fi
  for c in containerd containerd-shim-runc-v2 ctr; do link "$c" "$CONTAINERD_VERSION"; done
}

t_all=$SECONDS
build_wrapped etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3 ""
build_kubernetes
build_wrapped helm "$HELM_VERSION" helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
# The node's binaries.
build_kubelet
build_containerd
build_wrapped crictl "$CRICTL_VERSION" sigs.k8s.io/cri-tools sigs.k8s.io/cri-tools/cmd/crictl \
  "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
log "all binaries present in $BIN ($((SECONDS - t_all))s)"
