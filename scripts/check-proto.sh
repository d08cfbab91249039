#!/usr/bin/env bash
# CI check: the committed generated code under proto/ is exactly what
# `scripts/proto.sh` produces from the committed .proto files (and the protos
# pass buf format and buf lint). Regenerates into the work tree, then fails,
# printing the drift, if anything under proto/ changed or appeared.
#
# Run it on a clean checkout (it refuses to run over uncommitted proto/
# changes, which would otherwise be reported as drift or hidden by it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

dirty() {
	git status --porcelain --untracked-files=all -- proto/
}

if [[ -n "$(dirty)" ]]; then
	echo "check-proto: proto/ has uncommitted changes; commit or stash them first:" >&2
	dirty >&2
	exit 1
fi

# Breaking changes are judged when protos are edited (scripts/proto.sh);
# here HEAD is the code under test, so there is nothing to compare with.
BUF_BREAKING_AGAINST=none scripts/proto.sh

if [[ -z "$(dirty)" ]]; then
	echo "check-proto: generated code is up to date" >&2
	exit 0
fi

echo "check-proto: generated code under proto/ is out of date." >&2
echo "Run scripts/proto.sh and commit the result. Drift:" >&2
git --no-pager diff --stat -- proto/ >&2
git --no-pager diff -- proto/
git ls-files --others --exclude-standard -z -- proto/ |
	while IFS= read -r -d '' f; do
		echo "untracked generated file: $f" >&2
		git --no-pager diff --no-index -- /dev/null "$f" || true
	done
exit 1
