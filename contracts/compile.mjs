#!/usr/bin/env node
// Compiles every contract under src/ with solc's JS API (solcjs) and writes one artifact per
// deployable contract declared in a top-level src/*.sol file:
//   artifacts/<File>.json = {contractName, sourceName, compiler, abi, bytecode, deployedBytecode}
// The CLI's --standard-json mode is not used: solcjs prints non-JSON lines to stdout there.
// Usage: node compile.mjs            (from contracts/, after `npm ci`)
import { createRequire } from "node:module";
import { readFileSync, readdirSync, writeFileSync, mkdirSync, rmSync, statSync, existsSync } from "node:fs";
import { dirname, join, relative, resolve, basename, sep } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const ROOT = dirname(fileURLToPath(import.meta.url));
const SRC = join(ROOT, "src");
const OUT = join(ROOT, "artifacts");
const NODE_MODULES = join(ROOT, "node_modules");

const EXPECTED_SOLC = "0.8.37";
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  outputSelection: {
    "*": {
      "": ["ast"],
      "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"],
    },
  },
};

function fail(msg) {
  console.error(`compile.mjs: ${msg}`);
  process.exit(1);
}

const version = solc.version(); // e.g. "0.8.37+commit.f401782d.Emscripten.clang"
if (!version.startsWith(EXPECTED_SOLC + "+")) fail(`expected solc ${EXPECTED_SOLC}, got ${version} (run npm ci)`);

// All .sol files under src/, keyed by their path relative to contracts/ with "/" separators.
function walk(dir) {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) return walk(p);
      return name.endsWith(".sol") ? [p] : [];
    });
}
const files = walk(SRC);
if (files.length === 0) fail("no .sol files under src/");
const unitName = (p) => relative(ROOT, p).split(sep).join("/");
const sources = Object.fromEntries(files.map((p) => [unitName(p), { content: readFileSync(p, "utf8") }]));

// Import callback: "@openzeppelin/..." (and any other package) from node_modules; anything
// else relative to contracts/. Relative imports inside src/ are already in `sources`.
function findImports(path) {
  const candidates = path.startsWith("@") || !path.startsWith("src/")
    ? [join(NODE_MODULES, path), join(ROOT, path)]
    : [join(ROOT, path)];
  for (const c of candidates) {
    const abs = resolve(c);
    if (existsSync(abs) && statSync(abs).isFile()) return { contents: readFileSync(abs, "utf8") };
  }
  return { error: `import not found: ${path} (looked in ${candidates.map((c) => relative(ROOT, c)).join(", ")})` };
}

const input = { language: "Solidity", sources, settings: SETTINGS };
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

// Errors always fail the build. Warnings in our sources are printed in full; warnings inside
// dependencies (e.g. OpenZeppelin's transient-storage notice) are only counted.
let errors = 0;
let depWarnings = 0;
for (const e of output.errors ?? []) {
  const file = e.sourceLocation?.file ?? "";
  if (e.severity === "error") errors++;
  else if (!file.startsWith("src/")) {
    depWarnings++;
    continue;
  }
  console.error(e.formattedMessage ?? e.message);
}
if (errors > 0) fail(`${errors} compiler error(s)`);
if (depWarnings > 0) console.error(`(${depWarnings} warning(s) in dependencies not shown)`);

// Deployable = contractKind "contract" and not abstract, declared in a top-level src/*.sol file.
rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
const written = [];
for (const [source, unit] of Object.entries(output.sources ?? {})) {
  if (!/^src\/[^/]+\.sol$/.test(source)) continue;
  const deployable = (unit.ast?.nodes ?? [])
    .filter((n) => n.nodeType === "ContractDefinition" && n.contractKind === "contract" && !n.abstract)
    .map((n) => n.name);
  if (deployable.length !== 1) {
    fail(`${source} must declare exactly one deployable contract, found ${JSON.stringify(deployable)}`);
  }
  const contractName = deployable[0];
  const c = output.contracts?.[source]?.[contractName];
  const bytecode = c?.evm?.bytecode?.object;
  const deployedBytecode = c?.evm?.deployedBytecode?.object;
  if (!bytecode || !deployedBytecode) fail(`no bytecode for ${source}:${contractName}`);
  if (/__\$[0-9a-f]{34}\$__/.test(bytecode)) fail(`${contractName} needs library linking; use internal libraries only`);
  // The artifact is named after the file (x402ExactPermit2Proxy lives in X402ExactPermit2Proxy.sol).
  const artifactName = basename(source, ".sol");
  const artifact = {
    contractName,
    sourceName: source,
    compiler: {
      name: "solc",
      version,
      optimizer: SETTINGS.optimizer,
      evmVersion: SETTINGS.evmVersion,
    },
    abi: c.abi,
    bytecode: "0x" + bytecode,
    deployedBytecode: "0x" + deployedBytecode,
  };
  writeFileSync(join(OUT, `${artifactName}.json`), JSON.stringify(artifact, null, 2) + "\n");
  written.push(`${artifactName}.json (${contractName}, runtime ${deployedBytecode.length / 2} bytes)`);
}
if (written.length === 0) fail("no artifacts written");
console.log(`solc ${version}`);
for (const w of written.sort()) console.log(`  artifacts/${w}`);
