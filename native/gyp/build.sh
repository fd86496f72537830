#!/usr/bin/env bash
# Builds binding.gyp with node-gyp in build/gyp (node-gyp insists on ./build, which the primary
# cmake-js build owns). Result: build/gyp/build/Release/torchd.node. Pass extra node-gyp flags after.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
stage="$root/build/gyp"
mkdir -p "$stage"
cp "$root/binding.gyp" "$stage/binding.gyp"
ln -sfn "$root/native" "$stage/native"
cd "$stage"
# Use the running Node's own headers when it ships them (Debian's nodejs does: /usr/include/node),
# so nothing is downloaded; otherwise node-gyp falls back to its usual header download/cache.
nodedir_flag=()
if [ -n "${npm_config_nodedir:-}" ]; then
  nodedir_flag=(--nodedir="$npm_config_nodedir")
else
  prefix="$(dirname "$(dirname "$(command -v node)")")"
  [ -f "$prefix/include/node/node_api.h" ] && nodedir_flag=(--nodedir="$prefix")
fi
"$root/node_modules/.bin/node-gyp" rebuild --jobs "$(nproc)" "${nodedir_flag[@]}" "$@"
echo "$stage/build/Release/torchd.node"
