#!/bin/sh
# Upload timing across tenants (issue 12; SECURITY.md "Upload timing"), measured by hand against
# a running `wasmwiz dev`:  sh .ci/measure/upload-timing.sh URL ADMIN_KEY [ROUNDS] [BASE.wasm]
# Makes two pro tenants; each round makes a new module (BASE, by default echo.wasm, with a
# 9 MB custom section of random bytes: code that compiles at once, bytes that take storing),
# which tenant A uploads (new bytes), then tenant B (bytes another tenant uploaded). Prints each
# upload's status and time, then the means.
set -eu
U=$1; ADMIN=$2; ROUNDS=${3:-10}; BASE=${4:-internal/fixtures/wasm/echo.wasm}
PAD=9000000
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
run=$(date +%s)
key() { # tenant id -> a key of a new pro tenant
  curl -sf -X POST "$U/v1/admin/tenants" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    -d "{\"id\":\"$1\",\"tier\":\"pro\"}" >/dev/null
  curl -sf -X POST "$U/v1/admin/keys" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    -d "{\"tenant_id\":\"$1\"}" | sed 's/^{"key":"\([^"]*\)".*/\1/'
}
KA=$(key "timing-a-$run"); KB=$(key "timing-b-$run")
leb() { # unsigned LEB128 of $1, as printf escapes
  n=$1; out=""
  while :; do b=$((n & 127)); n=$((n >> 7))
    if [ $n -gt 0 ]; then out="$out\\$(printf %o $((b | 128)))"; else out="$out\\$(printf %o $b)"; break; fi
  done; printf %s "$out"
}
for i in $(seq "$ROUNDS"); do
  f=$tmp/m$i.wasm
  { cat "$BASE"; printf '\000'; printf "$(leb $((PAD + 4)))"; printf '\003pad'; head -c $PAD /dev/urandom; } > "$f"
  for who in A B; do
    if [ $who = A ]; then k=$KA; else k=$KB; fi
    curl -s -o /dev/null -w "$who %{http_code} %{time_total}\n" -X POST "$U/v1/modules?wait=true&name=m" \
      -H "Authorization: Bearer $k" -H 'Content-Type: application/wasm' --data-binary @"$f"
  done
done | tee "$tmp/times"
awk '{s[$1]+=$3; n[$1]++} END {printf "mean: A (new bytes) %.3f s, B (A'"'"'s bytes) %.3f s\n", s["A"]/n["A"], s["B"]/n["B"]}' "$tmp/times"
