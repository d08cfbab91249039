#!/usr/bin/env bash
# make-test-ca.sh: a throwaway CA and the certificates of an Arbor cluster,
# for tests and first deployments. NOT for production: the CA key sits next
# to the certificates, nothing is revoked, and certificates last --days.
#
#   deploy/tls/make-test-ca.sh [-o DIR] [--days N]
#       [--relay ID[=DNS,...]]... [--node ID]... [--etcd-san DNS|IP,...]
#
# Without --relay/--node it issues the seed topology's (deploy/topology.yaml):
# relays relay-a1 relay-a2 relay-b relay-c and its nine nodes.
#
# Written to DIR (default ./arbor-tls), PEM, keys ECDSA P-256, mode 0600:
#   ca.pem, ca-key.pem                 the CA (every --tls-ca, --etcd-cacert)
#   <ID>.pem, <ID>-key.pem             a relay's gRPC certificate, server and
#                                      client (--tls-cert/--tls-key): CN=<ID>,
#                                      URI SAN arbor://relay/<ID> (a child relay
#                                      must be named by its certificate), DNS
#                                      SANs <ID>, localhost and the names given
#                                      after '=', IP SAN 127.0.0.1. The names are
#                                      what children dial (the host of the
#                                      parent's grpc_addr, or --tls-server-name)
#   operator.pem, operator-key.pem     gRPC client certificate for grpcurl and
#                                      tools (CN=operator: names no relay, so it
#                                      can read Status and health, never
#                                      subscribe as a relay)
#   etcd-server.pem, etcd-server-key.pem  etcd's server (and peer) certificate:
#                                      DNS localhost, etcd, IP 127.0.0.1 and
#                                      --etcd-san
#   etcd-<NAME>.pem, etcd-<NAME>-key.pem  etcd client certificates (--etcd-cert,
#                                      --etcd-key), CN=<NAME> (etcd's user
#                                      name under --client-cert-auth with auth
#                                      on): one per relay (relay-<ID>), per node
#                                      agent (node-<ID>) and the operator
set -euo pipefail

out=./arbor-tls
days=365
relays=()
nodes=()
etcd_san=""
while [ $# -gt 0 ]; do
  case "$1" in
    --relay=*|--node=*|-o=*|--days=*|--etcd-san=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
    -o) out="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    --relay) relays+=("$2"); shift 2 ;;
    --node) nodes+=("$2"); shift 2 ;;
    --etcd-san) etcd_san="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "make-test-ca.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
if [ ${#relays[@]} -eq 0 ] && [ ${#nodes[@]} -eq 0 ]; then
  relays=(relay-a1 relay-a2 relay-b relay-c)
  nodes=(A-Master A-M-Backup A-S-1 A-S-2 B-M-Backup B-S-1 B-S-2 C-S-1 C-S-2)
fi
command -v openssl >/dev/null || { echo "make-test-ca.sh: openssl not found (apt-get install openssl)" >&2; exit 1; }

mkdir -p "$out"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# san_list turns "a,b,10.0.0.1" into "DNS:a,DNS:b,IP:10.0.0.1".
san_list() {
  local IFS=, s res=""
  for s in $1; do
    [ -z "$s" ] && continue
    if [[ "$s" =~ ^[0-9.]+$ || "$s" == *:* ]]; then res+=",IP:$s"; else res+=",DNS:$s"; fi
  done
  echo "${res#,}"
}

if [ ! -f "$out/ca.pem" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/ca-key.pem"
  openssl req -x509 -new -key "$out/ca-key.pem" -sha256 -days "$days" \
    -subj "/O=Arbor test/CN=Arbor test CA" -out "$out/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi

# issue NAME CN EKU SAN: NAME.pem and NAME-key.pem signed by the CA.
issue() {
  local name="$1" cn="$2" eku="$3" san="$4"
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/$name-key.pem"
  openssl req -new -key "$out/$name-key.pem" -subj "/O=Arbor test/CN=$cn" -out "$tmp/$name.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$tmp/$name.ext"
  openssl x509 -req -in "$tmp/$name.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" \
    -CAcreateserial -CAserial "$tmp/ca.srl" -days "$days" -sha256 \
    -extfile "$tmp/$name.ext" -out "$out/$name.pem" 2>/dev/null
}

for spec in "${relays[@]}"; do
  id="${spec%%=*}"
  extra=""
  [ "$spec" != "$id" ] && extra="${spec#*=}"
  san="URI:arbor://relay/$id,$(san_list "$id,localhost,127.0.0.1,$extra")"
  issue "$id" "$id" serverAuth,clientAuth "$san"
  issue "etcd-relay-$id" "relay-$id" clientAuth ""
done
for id in "${nodes[@]}"; do
  issue "etcd-node-$id" "node-$id" clientAuth ""
done
issue operator operator clientAuth ""
issue etcd-operator operator clientAuth ""
issue etcd-server etcd serverAuth,clientAuth "$(san_list "localhost,etcd,127.0.0.1,$etcd_san")"

echo "certificates in $out:"
(cd "$out" && ls -1 *.pem | sed 's/^/  /')
