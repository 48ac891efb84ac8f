#!/usr/bin/env bash
# Installs the pinned, offline checkers that tests/deploy/ runs against the deployment files:
#   helm            Go module proxy (helm.sh/helm/v3), built with `go install`
#   compose-check   deploy/tools/compose-check: the Compose loader docker compose uses (compose-go)
#   kubernetes-validate, hadolint, PyYAML   PyPI, into a venv of their own (deploy/tools/requirements.txt)
# into .cache/deploy-tools/ (override with DEPLOY_TOOLS_DIR). Idempotent: each tool is rebuilt
# only when its pinned version or its sources change. Needs go and uv; fails loudly otherwise.
set -euo pipefail

HELM_VERSION=v3.22.0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${DEPLOY_TOOLS_DIR:-$root/.cache/deploy-tools}
mkdir -p "$dir/bin"
# never committed, without touching the repository's .gitignore
[ -f "$dir/.gitignore" ] || echo '*' >"$dir/.gitignore"

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "deploy/tools.sh: \`$1\` is needed: $2" >&2; exit 1; }
}
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }
fresh() { [ -f "$dir/.stamp-$1" ] && [ "$(cat "$dir/.stamp-$1")" = "$2" ]; }
done_with() { echo "$2" >"$dir/.stamp-$1"; }

# helm -------------------------------------------------------------------------------------------
if ! fresh helm "$HELM_VERSION" || [ ! -x "$dir/bin/helm" ]; then
  need go "to build helm $HELM_VERSION from the Go module proxy"
  echo "deploy-tools: building helm $HELM_VERSION (a few minutes, once)" >&2
  (cd "$dir" && GOBIN="$dir/bin" GOFLAGS=-mod=mod go install \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
  done_with helm "$HELM_VERSION"
fi

# compose-check ----------------------------------------------------------------------------------
src="$root/deploy/tools/compose-check"
want=$(stamp_of "$src/go.mod" "$src/go.sum" "$src/main.go")
if ! fresh compose-check "$want" || [ ! -x "$dir/bin/compose-check" ]; then
  need go "to build deploy/tools/compose-check"
  echo "deploy-tools: building compose-check" >&2
  (cd "$src" && GOFLAGS="-mod=readonly -buildvcs=false" go build -o "$dir/bin/compose-check" .)
  done_with compose-check "$want"
fi

# kubernetes-validate, hadolint, PyYAML ----------------------------------------------------------
req="$root/deploy/tools/requirements.txt"
want=$(stamp_of "$req")
if ! fresh python "$want" || [ ! -x "$dir/venv/bin/python" ]; then
  need uv "to install deploy/tools/requirements.txt (python3 -m pip install uv)"
  echo "deploy-tools: installing deploy/tools/requirements.txt" >&2
  rm -rf "$dir/venv"
  uv venv --quiet "$dir/venv"
  uv pip sync --quiet --python "$dir/venv/bin/python" --require-hashes "$req"
  done_with python "$want"
fi

"$dir/bin/helm" version --short >/dev/null
"$dir/venv/bin/hadolint" --version >/dev/null
"$dir/venv/bin/python" -c "import kubernetes_validate, yaml"
