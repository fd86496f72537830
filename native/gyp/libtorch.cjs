#!/usr/bin/env node
// LibTorch discovery for binding.gyp (node-gyp), in the same order as cmake/LibTorch.cmake:
// LIBTORCH, then an importable Python torch that ships headers, then the system (libtorch-dev).
// Usage from binding.gyp: `node native/gyp/libtorch.cjs include|libs|ldflags|defines`.
'use strict';
const { execFileSync } = require('node:child_process');
const { existsSync, readFileSync } = require('node:fs');
const path = require('node:path');

function fromPrefix(prefix, how) {
  const include = path.join(prefix, 'include');
  const lib = path.join(prefix, 'lib');
  if (!existsSync(path.join(include, 'torch', 'script.h')) || !existsSync(path.join(lib, 'libtorch.so'))) return null;
  return { how, includes: [include, path.join(include, 'torch/csrc/api/include')], libDir: lib };
}

function fromPython(python) {
  try {
    const code = 'import os, torch; print(os.path.dirname(torch.__file__)); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))';
    const [dir, abi] = execFileSync(python, ['-c', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim()
      .split('\n');
    const found = dir ? fromPrefix(dir, `python torch (${python})`) : null;
    return found ? { ...found, abi } : null;
  } catch {
    return null;
  }
}

function fromSystem() {
  const include = '/usr/include';
  if (!existsSync(path.join(include, 'torch', 'script.h'))) return null;
  const libDir = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib'].find((d) =>
    existsSync(path.join(d, 'libtorch.so')),
  );
  return libDir ? { how: 'system', includes: [include, path.join(include, 'torch/csrc/api/include')], libDir } : null;
}

function find() {
  const tried = [];
  if (process.env.LIBTORCH) {
    const found = fromPrefix(process.env.LIBTORCH, 'LIBTORCH');
    if (found) return found;
    tried.push(`LIBTORCH=${process.env.LIBTORCH} (no include/torch/script.h)`);
  }
  for (const python of [process.env.TORCHD_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean)) {
    const found = fromPython(python);
    if (found) return found;
    tried.push(`${python}: no importable torch with headers`);
  }
  const system = fromSystem();
  if (system) return system;
  tried.push('system: no /usr/include/torch/script.h with libtorch.so');
  process.stderr.write(
    `torchd: LibTorch not found. Tried:\n  - ${tried.join('\n  - ')}\n` +
      'Fix it with one of:\n  sudo apt-get install libtorch-dev\n  LIBTORCH=/path/to/libtorch\n',
  );
  process.exit(1);
}

/** The libstdc++ ABI this LibTorch was built with, as its TorchConfig.cmake declares (never forced otherwise). */
function cxx11Abi(libDir) {
  const configs = [
    path.join(libDir, '../share/cmake/Torch/TorchConfig.cmake'),
    path.join(libDir, 'cmake/Torch/TorchConfig.cmake'),
  ];
  for (const config of configs) {
    if (!existsSync(config)) continue;
    const match = /_GLIBCXX_USE_CXX11_ABI=(\d)/.exec(readFileSync(config, 'utf8'));
    if (match) return match[1];
  }
  return undefined;
}

const torch = find();
const cuda = existsSync(path.join(torch.libDir, 'libtorch_cuda.so'));
const abi = torch.abi ?? cxx11Abi(torch.libDir);
const what = process.argv[2];
if (what === 'include') {
  console.log(torch.includes.join(' '));
} else if (what === 'libs') {
  const libs = ['-ltorch', '-ltorch_cpu', '-lc10'];
  if (cuda) libs.push('-ltorch_cuda', '-lc10_cuda');
  console.log([`-L${torch.libDir}`, ...libs].join(' '));
} else if (what === 'ldflags') {
  // --no-as-needed keeps libtorch_cuda linked so its kernels and CUDA hooks register.
  console.log([`-Wl,-rpath,${torch.libDir}`, ...(cuda ? ['-Wl,--no-as-needed'] : [])].join(' '));
} else if (what === 'defines') {
  console.log([cuda ? 'TORCHD_WITH_CUDA=1' : 'TORCHD_CPU_ONLY=1', ...(abi ? [`_GLIBCXX_USE_CXX11_ABI=${abi}`] : [])].join(' '));
} else {
  console.log(JSON.stringify({ ...torch, cuda, cxx11Abi: abi }));
}
