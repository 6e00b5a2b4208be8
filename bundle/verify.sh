#!/usr/bin/env bash
# Validates the OLM bundle with the operator-framework's own validators and fails on any error or
# warning: `operator-verify manifests` (CSV, CRD and bundle checks, plus its object checks), then
# bundle/validate, the same library's OperatorHub v2, standard categories and capabilities,
# good-practices and deprecated-API validators. operator-verify's --operatorhub_validate runs the
# deprecated "operatorhub" validator, whose only output beyond those three is a warning that it is
# deprecated; bundle/validate runs its successors instead. Both tools are built once per pinned
# version under ~/.cache/pixie-rs/bin from the Go module proxy.
set -euo pipefail

# Pinned: the newest github.com/operator-framework/api the module proxy serves that builds on Go 1.26.
API_VERSION=v0.45.0

bundle_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${PIXIE_CACHE:-$HOME/.cache/pixie-rs}/bin/operator-framework-api-$API_VERSION
mkdir -p "$bin_dir"

if [[ ! -x $bin_dir/operator-verify ]]; then
  echo "installing operator-verify $API_VERSION into $bin_dir" >&2
  GOBIN=$bin_dir go install "github.com/operator-framework/api/cmd/operator-verify@$API_VERSION"
fi
# bundle/validate's go.mod pins the same version; rebuilt when its source is newer than the binary.
if [[ ! -x $bin_dir/bundle-validate || $bundle_dir/validate/main.go -nt $bin_dir/bundle-validate \
      || $bundle_dir/validate/go.mod -nt $bin_dir/bundle-validate ]]; then
  echo "building bundle/validate into $bin_dir" >&2
  (cd "$bundle_dir/validate" && go build -buildvcs=false -o "$bin_dir/bundle-validate" .)
fi

# operator-verify logs errors and warnings (logrus lines) but exits 0 either way: any output fails.
report=$("$bin_dir/operator-verify" manifests --object_validate "$bundle_dir/manifests" 2>&1)
if [[ -n $report ]]; then
  echo "operator-verify $API_VERSION reported problems in bundle/manifests:"
  echo "$report"
  exit 1
fi
echo "operator-verify $API_VERSION manifests --object_validate bundle/manifests: 0 errors, 0 warnings"

"$bin_dir/bundle-validate" "$bundle_dir"
