#!/usr/bin/env bash
# Builds the test OpenTelemetry Collector (tests/otelcol/builder-config.yaml) with the official
# collector builder at a pinned version, once, and prints the binary's path on stdout.
#
# The binary is cached outside the repository in $PIXIE_CACHE/otelcol-<version>/ (default
# ~/.cache/pixie-rs) together with the builder config it was built from: a later run with the same
# config only prints the path; a changed config rebuilds. Progress goes to stderr.
set -euo pipefail

OTELCOL_VERSION=v0.161.0 # the builder and every collector module in builder-config.yaml
BUILDER=go.opentelemetry.io/collector/cmd/builder@$OTELCOL_VERSION

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONFIG=$HERE/builder-config.yaml
CACHE=${PIXIE_CACHE:-$HOME/.cache/pixie-rs}
DIR=$CACHE/otelcol-$OTELCOL_VERSION
BIN=$DIR/otelcol-pixie

log() { echo "otelcol: $*" >&2; }

if [[ -x $BIN ]] && cmp -s "$CONFIG" "$DIR/builder-config.yaml"; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "go is required to build the test collector"; exit 1; }
mkdir -p "$DIR"
# Concurrent test processes may all find the binary missing: one builds, the others wait here.
exec 9>"$DIR/.lock"
flock 9
if [[ -x $BIN ]] && cmp -s "$CONFIG" "$DIR/builder-config.yaml"; then
  echo "$BIN"
  exit 0
fi

log "building the OpenTelemetry Collector $OTELCOL_VERSION with $BUILDER (once; cached in $DIR)"
start=$SECONDS
work=$(mktemp -d "$DIR/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The builder writes the generated sources to output_path (./src), relative to its working directory.
(cd "$work" && go run "$BUILDER" --config "$CONFIG") >"$work/build.log" 2>&1 || {
  cat "$work/build.log" >&2
  log "building the collector failed"
  exit 1
}
# Install the config last so that an interrupted build is retried next time.
mv "$work/src/otelcol-pixie" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
cp "$CONFIG" "$DIR/builder-config.yaml.tmp"
mv "$DIR/builder-config.yaml.tmp" "$DIR/builder-config.yaml"
log "built in $((SECONDS - start))s"
echo "$BIN"
