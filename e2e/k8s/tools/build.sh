#!/usr/bin/env bash
# Builds the local control plane's binaries from the pinned Go modules in
# kube/ (kube-apiserver, kube-controller-manager, kubectl, etcd, helm) into
# $HOME/.cache/weir/k8s/<version>/bin and prints that directory on stdout.
# Rebuilds only when the pins (go.mod, go.sum, the etcd wrapper or this
# script) change; progress goes to stderr. Nothing is downloaded but Go
# modules: prebuilt release binaries cannot be reached from here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/kube"

say() { printf '    k8s build: %s\n' "$*" >&2; }
command -v go >/dev/null || { echo "k8s build: the go command is missing (Go 1.26 is needed to build the control plane)" >&2; exit 1; }

kube_version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' go.mod | head -1)
helm_version=$(awk '$1 == "helm.sh/helm/v4" { print $2 }' go.mod | head -1)
[ -n "$kube_version" ] && [ -n "$helm_version" ] || { echo "k8s build: cannot read the pinned versions from $PWD/go.mod" >&2; exit 1; }

out="${WEIR_K8S_CACHE:-$HOME/.cache/weir/k8s}/$kube_version"
stamp_want=$(cat go.mod go.sum etcd/main.go "$here/build.sh" | sha256sum | cut -d' ' -f1)
bins=(kube-apiserver kube-controller-manager kubectl etcd helm)
if [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp_want" ]; then
  all=1
  for b in "${bins[@]}"; do [ -x "$out/bin/$b" ] || all=""; done
  if [ -n "$all" ]; then echo "$out/bin"; exit 0; fi
fi

mkdir -p "$out/bin"
rm -f "$out/stamp"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=mod"
minor=${kube_version#v1.}; minor=${minor%%.*}
# What `kubectl version` and /version report: helm compares it with a
# chart's kubeVersion, so the server must know its own release.
kv_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kv_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  kv_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

start=$(date +%s)
say "downloading modules (first time: a few minutes)"
go mod download
for b in kube-apiserver kube-controller-manager kubectl; do
  say "building $b $kube_version"
  go build -trimpath -ldflags "-s -w$kv_ldflags" -o "$out/bin/$b" "k8s.io/kubernetes/cmd/$b"
done
say "building etcd"
go build -trimpath -ldflags "-s -w" -o "$out/bin/etcd" ./etcd
say "building helm $helm_version"
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version" -o "$out/bin/helm" helm.sh/helm/v4/cmd/helm
echo "$stamp_want" > "$out/stamp"
say "built in $(( $(date +%s) - start )) s into $out/bin"
echo "$out/bin"
