#!/usr/bin/env bash
# Runs every command of the seed document (TorchServe's Inference API page, ../shared/spec/seed-inference-api.md)
# VERBATIM against a running torchd with the demo's models (scripts/demo, scripts/demo-store.ts), and checks
# each answer.
#   scripts/seed-curl.sh [BASE_URL]          default $TORCHD_URL or http://127.0.0.1:8080
#   SHOW=1 scripts/seed-curl.sh              also print each command and its answer
#   scripts/seed-curl.sh --update-readme     also rewrite README.md's examples (between the seed-curl markers)
# The commands run in a scratch folder laid out like the seed's working directory (docs/images/...,
# examples/image_classifier/mnist/test_data/0.png, kubernetes/kserve/kf_request_json/v1/mnist.json), filled with
# the seed's own files from ../shared/data/seed ($TORCHD_DATA/seed), or committed stand-ins where that is absent
# (the sample photo, our digits). A `curl` shell function runs the real curl with two substitutions only: the
# seed's http://localhost:8080 / http://127.0.0.1:8080 become BASE_URL, and the seed's download URL
# (raw.githubusercontent.com/.../kitten_small.jpg) becomes a file:// URL of the same file, as nothing outside
# this machine is reachable. The seed's Python `requests` example runs as written (same URL substitution).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
UPDATE_README=0
if [ "${1:-}" = --update-readme ]; then UPDATE_README=1; shift; fi
BASE="${1:-${TORCHD_URL:-http://127.0.0.1:8080}}"
BASE="${BASE%/}"
DATA="${TORCHD_DATA:-$ROOT/../shared/data}"
F=test/fixtures/models
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/.sources"
mkdir -p "$src" "$work/docs/images" "$work/examples/image_classifier/mnist/test_data" "$work/kubernetes/kserve/kf_request_json/v1"

if [ -f "$DATA/seed/kitten_small.jpg" ] && [ -f "$DATA/seed/mnist.json" ]; then
  FILES=seed
  cp "$DATA/seed/kitten_small.jpg" "$DATA/seed/dogs-before.jpg" "$src/"
  cp "$DATA/seed/mnist_test_data/0.png" "$work/examples/image_classifier/mnist/test_data/0.png"
  cp "$DATA/seed/mnist.json" "$work/kubernetes/kserve/kf_request_json/v1/mnist.json"
else
  FILES=stand-ins
  echo "note: $DATA/seed is absent: the seed's files are replaced by committed stand-ins (sample photo, our digits)"
  cp "$F/sample.jpg" "$src/kitten_small.jpg"
  cp "$F/sample_exif6.jpg" "$src/dogs-before.jpg"
  cp "$F/images/0.png" "$work/examples/image_classifier/mnist/test_data/0.png"
  printf '{"instances": [{"data": "%s"}]}\n' "$(base64 -w0 "$F/images/2.png")" > "$work/kubernetes/kserve/kf_request_json/v1/mnist.json"
fi
cp "$src/kitten_small.jpg" "$src/dogs-before.jpg" "$work/docs/images/"

# The real curl, with the seed's hosts pointed at BASE and its one download served from the local copy.
curl() {
  local args=() a download=0
  for a in "$@"; do
    a=${a//http:\/\/localhost:8080/$BASE}
    a=${a//http:\/\/127.0.0.1:8080/$BASE}
    a=${a//https:\/\/raw.githubusercontent.com\/pytorch\/serve\/master\/docs\/images\//file://$src/}
    [ "$a" = -O ] && download=1
    args+=("$a")
  done
  if [ $download = 1 ]; then
    command curl -sS -w '%{http_code}' "${args[@]}" > "$work/.status" && printf '(saved %s)' "$(ls -1t | head -1)" > "$work/.body"
  else
    command curl -sS -o "$work/.body" -w '%{http_code}' "${args[@]}" > "$work/.status"
  fi
}

# Does the server answer the seed's image names with real ImageNet weights? The demo names a model mobilenet_v2
# only when the converted MobileNetV2 serves (scripts/demo-store.ts).
REAL=0
if [ "$FILES" = seed ] && command curl -sS "$BASE/v1/models" 2>/dev/null | grep -q '"mobilenet_v2"'; then REAL=1; fi

export SEED_WORK=$work
failures=0
passed=0
markdown="$work/.markdown"
: > "$markdown"
# seed NAME WANT_STATUS JS COMMAND [RUN [LANG]]: runs COMMAND (the seed's text; RUN instead when given) in the
# seed-like folder, then checks the HTTP status and evaluates JS with `b` = the JSON body (or the raw text when it
# is not JSON), which must be truthy.
seed() {
  local name=$1 want=$2 js=$3 cmd=$4 run=${5:-$4} lang=${6:-bash} status
  rm -f "$work/.body" "$work/.status"
  (cd "$work" && eval "$run") 2> "$work/.stderr" || true
  status=$(cat "$work/.status" 2>/dev/null || echo "curl-failed: $(head -c 200 "$work/.stderr")")
  local shown
  shown=$(node "$ROOT/scripts/seed-curl-format.mjs" "$work/.body")
  if [ "${SHOW:-0}" = 1 ]; then printf '\n$ %s\n%s\n' "$cmd" "$shown"; fi
  local answer=json
  node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$work/.body" 2>/dev/null || answer=text
  printf '```%s\n%s\n```\n```%s\n%s\n```\n\n' "$lang" "$cmd" "$answer" "$shown" >> "$markdown"
  if [ "$status" != "$want" ]; then
    printf 'FAIL %s: HTTP %s, expected %s: %s\n' "$name" "$status" "$want" "$(head -c 300 "$work/.body" 2>/dev/null)"
    failures=$((failures + 1))
    return
  fi
  if node -e "
    const fs = require('fs'); const text = fs.readFileSync(process.argv[1], 'utf8');
    let b; try { b = JSON.parse(text); } catch { b = text; }
    if (!($js)) process.exit(1);" "$work/.body"; then
    printf 'ok   %s\n' "$name"
    passed=$((passed + 1))
  else
    printf 'FAIL %s: unexpected answer: %s\n' "$name" "$(head -c 300 "$work/.body")"
    failures=$((failures + 1))
  fi
}

# seed_python NAME WANT_STATUS JS FILE: runs the seed's Python snippet FILE (URL pointed at BASE), then checks
# `res` as seed() checks a curl answer; shows the snippet itself as the command.
seed_python() {
  local name=$1 want=$2 js=$3 file=$4
  sed "s#http://localhost:8080#$BASE#" "$work/$file" > "$work/.run.py"
  printf '\nopen(".status", "w").write(str(res.status_code))\nopen(".body", "w").write(res.text)\n' >> "$work/.run.py"
  seed "$name" "$want" "$js" "$(cat "$work/$file")" "cd '$work' && /usr/bin/python3 .run.py" python
}

# Top-5 {label: probability}, descending; with the real model and the seed's photo, a cat comes first.
isTop5='(x) => typeof x === "object" && x !== null && !Array.isArray(x) && Object.keys(x).length === 5 && Object.values(x).every((p, i, a) => p >= 0 && p <= 1 && (i === 0 || a[i - 1] >= p))'
if [ $REAL = 1 ]; then
  cat='(x) => /cat|tabby/.test(Object.keys(x)[0])'
  dog='(x) => !/cat|tabby/.test(Object.keys(x)[0])'
else
  cat='() => true'
  dog='() => true'
fi
kitten="($isTop5)(b) && ($cat)(b)"
is28='(e) => Array.isArray(e) && e.length === 1 && e[0].length === 28 && e[0].every((r) => r.length === 28 && r.every(Number.isFinite))'

echo "seed commands against $BASE ($FILES files; image names: $([ $REAL = 1 ] && echo 'MobileNetV2, real weights' || echo 'classes not checked'))"
seed 'API description' 200 'b.openapi === "3.0.1" && "/explanations/{model_name}" in b.paths && "/v1/models/{model_name}:explain" in b.paths' \
  'curl -X OPTIONS http://localhost:8080'
seed 'health check' 200 'b.status === "Healthy"' \
  'curl http://localhost:8080/ping'
seed 'download kitten_small.jpg (curl -O)' 000 'require("fs").statSync(process.env.SEED_WORK + "/kitten_small.jpg").size > 1000' \
  'curl -O https://raw.githubusercontent.com/pytorch/serve/master/docs/images/kitten_small.jpg'
seed 'prediction, -T' 200 "$kitten" \
  'curl http://localhost:8080/predictions/resnet-18 -T kitten_small.jpg'
seed 'prediction, -F data=@' 200 "$kitten" \
  'curl http://localhost:8080/predictions/resnet-18 -F "data=@kitten_small.jpg"'
seed 'prediction, two -F parts (one answer per part, in order)' 200 "Array.isArray(b) && b.length === 2 && b.every($isTop5) && ($dog)(b[0]) && ($cat)(b[1])" \
  "curl http://localhost:8080/predictions/squeezenet1_1 -F 'data=@docs/images/dogs-before.jpg' -F 'data=@docs/images/kitten_small.jpg'"
# The seed's dict literal repeats the key 'data', so Python keeps the last file only: one answer (the kitten).
cat > "$work/requests_example.py" <<'PY'
import requests

res = requests.post("http://localhost:8080/predictions/squeezenet1_1", files={'data': open('docs/images/dogs-before.jpg', 'rb'), 'data': open('docs/images/kitten_small.jpg', 'rb')})
PY
seed_python 'prediction, Python requests (the dict keeps one "data")' 200 "$kitten" requests_example.py
seed 'download kitten_small.jpg again (curl -O)' 000 'require("fs").statSync(process.env.SEED_WORK + "/kitten_small.jpg").size > 1000' \
  'curl -O https://raw.githubusercontent.com/pytorch/serve/master/docs/images/kitten_small.jpg'
seed 'prediction from version 2.0, -T' 200 "$kitten" \
  'curl http://localhost:8080/predictions/resnet-18/2.0 -T kitten_small.jpg'
seed 'prediction from version 2.0, -F' 200 "$kitten" \
  'curl http://localhost:8080/predictions/resnet-18/2.0 -F "data=@kitten_small.jpg"'
seed 'explanations of 0.png → [1][28][28]' 200 "($is28)(b)" \
  'curl http://127.0.0.1:8080/explanations/mnist -T examples/image_classifier/mnist/test_data/0.png'
seed 'KServe v1 predict → {"predictions": [2]}' 200 'JSON.stringify(b) === JSON.stringify({ predictions: [2] })' \
  'curl -H "Content-Type: application/json" --data @kubernetes/kserve/kf_request_json/v1/mnist.json http://127.0.0.1:8080/v1/models/mnist:predict'
seed 'KServe v1 explain → {"explanations": [[1][28][28]]}' 200 "Array.isArray(b.explanations) && b.explanations.length === 1 && ($is28)(b.explanations[0])" \
  'curl -H "Content-Type: application/json" --data @kubernetes/kserve/kf_request_json/v1/mnist.json http://127.0.0.1:8080/v1/models/mnist:explain'

if [ $UPDATE_README = 1 ]; then
  node "$ROOT/scripts/seed-curl-format.mjs" --splice "$ROOT/README.md" "$markdown"
  echo "README.md: examples between the seed-curl markers rewritten from this run"
fi
if [ "$failures" -gt 0 ]; then
  echo "$failures of $((passed + failures)) seed commands failed against $BASE" >&2
  exit 1
fi
echo "all $passed seed commands answered as documented by $BASE"
