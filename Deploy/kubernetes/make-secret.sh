#!/usr/bin/env bash
# Prints the baton-certs Secret (the cluster CA certificate and each node's certificate and key) for the
# manifests here, from a directory written by `baton certs`:
#   bash Deploy/kubernetes/make-secret.sh DIR | kubectl apply -f -
# When DIR holds no ca.pem yet, the script first runs
#   baton certs --out DIR --nodes placement,router,prefill,decode
# (the binary is $BATON, else `baton` on PATH). Keep DIR, above all DIR/ca-key.pem, somewhere safe and
# off the cluster: the Secret never carries the CA key. The same Secret with kubectl alone:
#   kubectl -n baton create secret generic baton-certs --from-file=DIR/ca.pem \
#     --from-file=DIR/placement.pem --from-file=DIR/placement-key.pem ... (each node's pair)
set -euo pipefail
fail() { echo "make-secret: $*" >&2; exit 1; }
[ "$#" -eq 1 ] || fail "usage: make-secret.sh CERTS_DIR   (prints the Secret on standard output)"
dir="$1"
nodes=(placement router prefill decode)
if [ ! -e "$dir/ca.pem" ]; then
    joined="$(IFS=,; echo "${nodes[*]}")"
    baton="${BATON:-baton}"
    command -v "$baton" >/dev/null || fail "no CA in $dir and no baton to make one (put it on PATH or set BATON)"
    echo "make-secret: no CA in $dir; running baton certs --out $dir --nodes $joined" >&2
    "$baton" certs --out "$dir" --nodes "$joined" >&2
fi
files=(ca.pem)
for node in "${nodes[@]}"; do files+=("$node.pem" "$node-key.pem"); done
for file in "${files[@]}"; do
    [ -f "$dir/$file" ] || fail "$dir/$file is missing (make the directory with: baton certs --out $dir --nodes placement,router,prefill,decode)"
    head -n 1 "$dir/$file" | grep -q '^-----BEGIN ' || fail "$dir/$file is not a PEM file"
done
cat <<'HEAD'
# Made by Deploy/kubernetes/make-secret.sh from a `baton certs` directory; holds private keys: never commit it.
apiVersion: v1
kind: Secret
metadata:
  name: baton-certs
  namespace: baton
  labels:
    app.kubernetes.io/part-of: baton
type: Opaque
stringData:
HEAD
for file in "${files[@]}"; do
    printf '  %s: |\n' "$file"
    sed -e 's/^/    /' "$dir/$file"
done
