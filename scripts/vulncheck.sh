#!/usr/bin/env bash
# vulncheck.sh runs govulncheck on Concord (or on the packages given) against an offline
# copy of the Go vulnerability database. vuln.go.dev is not reachable from these machines,
# but the database's source, golang.org/x/vulndb, is served by the Go module proxy: this
# script downloads it (the newest version, or VULNDB_VERSION), indexes its OSV reports with
# the module's own indexdb command into .concord/vulncheck/db, and points govulncheck there.
# The exit status is govulncheck's: 3 when reachable code is affected.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$PWD/${VULNCHECK_DIR:-.concord/vulncheck}"
mkdir -p "$work/bin" "$work/mod"
info=$(cd "$work/mod" && GOFLAGS=-mod=mod go mod download -json "golang.org/x/vulndb@${VULNDB_VERSION:-latest}")
dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
ver=$(sed -n 's/^[[:space:]]*"Version": "\(.*\)",$/\1/p' <<<"$info")
[ -d "$dir/data/osv" ] || { echo "vulncheck: no OSV reports in golang.org/x/vulndb@$ver" >&2; exit 1; }
GOBIN="$work/bin" go install "golang.org/x/vulndb/cmd/indexdb@$ver"
GOBIN="$work/bin" go install golang.org/x/vuln/cmd/govulncheck@v1.9.0
rm -rf "$work/db"
"$work/bin/indexdb" -vulns "$dir/data/osv" -out "$work/db"
echo "vulncheck: database golang.org/x/vulndb@$ver ($(ls "$dir/data/osv" | wc -l) reports)" >&2
[ $# -gt 0 ] || set -- ./...
exec "$work/bin/govulncheck" -db "file://$work/db" "$@"
