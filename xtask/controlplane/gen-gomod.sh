#!/usr/bin/env bash
# Regenerates go.mod's replace block from the pinned k8s.io/kubernetes go.mod:
# every staging module that it requires at v0.0.0 is pinned to v0.<minor>.<patch>.
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION=${K8S_VERSION:-v1.35.4}
minor_patch=${K8S_VERSION#v1.}
mod=$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
{
  echo "module vk/controlplane"
  echo
  echo "go 1.25.0"
  echo
  echo "require k8s.io/kubernetes ${K8S_VERSION}"
  echo
  echo "replace ("
  grep -E '^\s+k8s.io/[a-z0-9-]+ v0\.0\.0$' "$mod" | awk -v v="v0.${minor_patch}" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > go.mod
