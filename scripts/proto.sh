#!/usr/bin/env bash
# Lint, breaking-check and generate the protos under proto/.
#
#   scripts/proto.sh
#
# 1. buf format --diff --exit-code   (the .proto files are buf-formatted)
# 2. buf lint                        (STANDARD + COMMENTS, see buf.yaml)
# 3. buf breaking                    (FILE rules) against $BUF_BREAKING_AGAINST,
#    by default the last commit (".git#ref=HEAD"), i.e. it checks your
#    uncommitted proto changes. Skipped when HEAD has no proto/ yet. Set
#    BUF_BREAKING_AGAINST=none to skip it (a deliberate break before a
#    release), or e.g. BUF_BREAKING_AGAINST='.git#branch=main' to compare with
#    a branch.
# 4. buf generate                    (buf.gen.yaml: protoc-gen-go and
#    protoc-gen-go-grpc from tools/go.mod, output next to the .proto files).
#    Every *.pb.go under proto/ is deleted first, so a removed .proto leaves
#    no stale code behind.
#
# All tools are pinned in tools/go.mod and built by `go tool` on first use
# (a few minutes on a cold cache).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

buf() { go tool -modfile=tools/go.mod buf "$@"; }

echo "proto: buf format" >&2
buf format --diff --exit-code

echo "proto: buf lint" >&2
buf lint

against="${BUF_BREAKING_AGAINST-.git#ref=HEAD}"
if [[ "$against" == none ]]; then
	echo "proto: buf breaking skipped (BUF_BREAKING_AGAINST=none)" >&2
elif [[ "$against" == ".git#ref=HEAD" ]] &&
	! git rev-parse -q --verify 'HEAD:proto' >/dev/null 2>&1; then
	echo "proto: buf breaking skipped (HEAD has no proto/ yet)" >&2
else
	echo "proto: buf breaking against $against" >&2
	buf breaking --against "$against"
fi

echo "proto: buf generate" >&2
find proto -name '*.pb.go' -type f -delete
buf generate
