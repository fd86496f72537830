#!/usr/bin/env bash
# The curl commands of the seed document (TorchServe's Inference API page), adapted to the local sample
# files (no network), run against a running torchd and checked for status and shape.
#   scripts/seed-curl.sh [BASE_URL]        (default $TORCHD_URL or http://127.0.0.1:8080)
# Expects the demo's models: mnist 1.0 (default) and 2.0, resnet-18 (see scripts/demo).
# Set SHOW=1 to print each response body (the README's API examples were made that way).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${1:-${TORCHD_URL:-http://127.0.0.1:8080}}"
BASE="${BASE%/}"
IMAGES=test/fixtures/models
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The seed's kitten_small.jpg / dogs-before.jpg are downloads; here: the committed sample photo, twice.
cp "$IMAGES/sample.jpg" "$work/kitten_small.jpg"
cp "$IMAGES/sample.png" "$work/dogs-before.png"
cp "$IMAGES/images/0.png" "$work/0.png"
# kubernetes/kserve/kf_request_json/v1/mnist.json holds one base64 digit "2": made from ours.
printf '{"instances": [{"data": "%s"}]}\n' "$(base64 -w0 "$IMAGES/images/2.png")" > "$work/mnist.json"

failures=0
# check NAME STATUS JS: runs the curl command given after `--`, then asserts the HTTP status and
# evaluates JS with `b` = the parsed JSON body (must be truthy).
check() {
  local name=$1 want=$2 js=$3
  shift 4
  local status
  status=$(cd "$work" && curl -sS -o "$work/body" -w '%{http_code}' "$@") || status="curl-failed"
  if [ "${SHOW:-0}" = 1 ]; then printf '\n$ curl %s\n' "$*"; head -c 1500 "$work/body"; echo; fi
  if [ "$status" != "$want" ]; then
    printf 'FAIL %s: HTTP %s, expected %s: %s\n' "$name" "$status" "$want" "$(head -c 300 "$work/body")"
    failures=$((failures + 1))
    return
  fi
  if node -e "const b = JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8')); if (!($js)) process.exit(1)" "$work/body"; then
    printf 'ok   %s\n' "$name"
  else
    printf 'FAIL %s: unexpected body: %s\n' "$name" "$(head -c 300 "$work/body")"
    failures=$((failures + 1))
  fi
}

# resnet-18 answers top-5 {label: probability}, descending.
isTop5='(x) => typeof x === "object" && !Array.isArray(x) && Object.keys(x).length === 5 && Object.values(x).every((p, i, a) => p >= 0 && p <= 1 && (i === 0 || a[i - 1] >= p))'
top5="($isTop5)(b)"
is28='(e) => Array.isArray(e) && e.length === 1 && e[0].length === 28 && e[0].every((r) => r.length === 28 && r.every(Number.isFinite))'

check 'API description (curl -X OPTIONS)' 200 'b.openapi === "3.0.1" && "/explanations/{model_name}" in b.paths && "/v1/models/{model_name}:explain" in b.paths' \
  -- -X OPTIONS "$BASE"
check 'health check' 200 'b.status === "Healthy"' \
  -- "$BASE/ping"
check 'prediction, -T (PUT without Content-Type)' 200 "$top5" \
  -- "$BASE/predictions/resnet-18" -T kitten_small.jpg
check 'prediction, -F data=@' 200 "$top5" \
  -- "$BASE/predictions/resnet-18" -F "data=@kitten_small.jpg"
check 'prediction, two -F parts (one result per part)' 200 "Array.isArray(b) && b.length === 2 && b.every($isTop5)" \
  -- "$BASE/predictions/resnet-18" -F 'data=@dogs-before.png' -F 'data=@kitten_small.jpg'
check 'prediction from version 1.0, -T' 200 "$top5" \
  -- "$BASE/predictions/resnet-18/1.0" -T kitten_small.jpg
check 'prediction from version 1.0, -F' 200 "$top5" \
  -- "$BASE/predictions/resnet-18/1.0" -F "data=@kitten_small.jpg"
check 'digit 0, default version 1.0' 200 'b === 0' \
  -- "$BASE/predictions/mnist" -T 0.png
check 'digit 0, version 2.0 answers (d+1)%10' 200 'b === 1' \
  -- "$BASE/predictions/mnist/2.0" -T 0.png
check 'explanations (-T 0.png) → [1][28][28]' 200 "($is28)(b)" \
  -- "$BASE/explanations/mnist" -T 0.png
check 'KServe v1 predict' 200 'JSON.stringify(b) === JSON.stringify({ predictions: [2] })' \
  -- -H "Content-Type: application/json" --data @mnist.json "$BASE/v1/models/mnist:predict"
check 'KServe v1 explain' 200 "Array.isArray(b.explanations) && b.explanations.length === 1 && ($is28)(b.explanations[0])" \
  -- -H "Content-Type: application/json" --data @mnist.json "$BASE/v1/models/mnist:explain"

if [ "$failures" -gt 0 ]; then
  echo "$failures seed command(s) failed against $BASE" >&2
  exit 1
fi
echo "all seed commands answered as documented by $BASE"
