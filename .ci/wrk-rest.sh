#!/bin/sh
# Cross-checks the load generator: measures POST /v1/executions of the echo module on a real
# `wasmwiz dev` (its own data dir and free ports, SQLite) with wrk and with `wasmwiz load`, one
# after the other at the same concurrency, on a key of the unlimited tier, and prints both.
#
#   sh .ci/wrk-rest.sh [concurrency (16)] [seconds (10)]
#
# Needs wrk (Debian: apt-get install wrk). Everything it starts is stopped when it exits.
set -eu
conc=${1:-16}
secs=${2:-10}
command -v wrk >/dev/null || { echo "wrk-rest: no wrk on PATH (Debian: apt-get install wrk)" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/wasmwiz-wrk-XXXXXX)
dev=
cleanup() {
	[ -n "$dev" ] && kill "$dev" 2>/dev/null && wait "$dev" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
(cd "$root" && go build -o "$dir/bin/" ./cmd/wasmwiz ./cmd/wasmwiz-worker)
ww="$dir/bin/wasmwiz"
http="127.0.0.1:$(free_port)"
url="http://$http"
WASMWIZ_NATS_ADDR="127.0.0.1:$(free_port)" WASMWIZ_HTTP_ADDR="$http" \
	"$ww" dev --data-dir "$dir/data" --save-context=false >"$dir/dev.log" 2>&1 &
dev=$!
i=0
until curl -sf "$url/health/ready" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 600 ] || { echo "wrk-rest: dev did not become ready; its log:" >&2; cat "$dir/dev.log" >&2; exit 1; }
	sleep 0.1
done

admin=$(cat "$dir/data/admin-api-key")
"$ww" keys tenant-create wrk --tier unlimited --url "$url" --key "$admin" >/dev/null
key=$("$ww" keys admin-create --tenant wrk --tier unlimited --json --url "$url" --key "$admin" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
mod=$("$ww" modules upload "$root/internal/fixtures/wasm/echo.wasm" --name echo --json --url "$url" --key "$key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
body="{\"module_id\":\"$mod\",\"stdin_base64\":\"aGk=\"}"
cat >"$dir/execute.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
EOF
# one warm-up execution (compiles the module into the workers' cache)
curl -sf -o /dev/null -X POST "$url/v1/executions" -H "Authorization: Bearer $key" -H "Content-Type: application/json" -d "$body"

threads=$((conc < 2 ? conc : 2))
echo "== wrk -t$threads -c$conc -d${secs}s (load average $(cut -d' ' -f1-3 /proc/loadavg))"
wrk -t"$threads" -c"$conc" -d"${secs}s" --timeout 60s --latency -s "$dir/execute.lua" "$url/v1/executions"
echo
echo "== wasmwiz load --concurrency $conc --duration ${secs}s (load average $(cut -d' ' -f1-3 /proc/loadavg))"
"$ww" load --url "$url" --key "$key" --module "$mod" --stdin hi --concurrency "$conc" --duration "${secs}s"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
