// Checks the Bazaar extension of a 402 with the official validator (@x402/extensions bazaar):
//   node bazaar-check.cjs URL [METHOD]
//   node bazaar-check.cjs -        (a PaymentRequired as JSON on stdin: an MCP tool's result)
// Prints one JSON line: {status, valid, errors, specValid, specErrors, info, metadata}, where
// `metadata` is what the SDK's sanitizeResourceServiceMetadata keeps of `resource`.
// Run with NODE_PATH pointing at the node_modules installed from tests/interop/package.json.
"use strict";

const {
  validateDiscoveryExtension,
  validateDiscoveryExtensionSpec,
  extractDiscoveryInfoFromExtension,
  sanitizeResourceServiceMetadata,
} = require("@x402/extensions/bazaar");
const { decodePaymentRequiredHeader } = require("@x402/core/http");

async function main() {
  const [url, method] = process.argv.slice(2);
  let status = null;
  let required;
  if (url === "-") {
    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    required = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } else {
    const response = await fetch(url, { method: method || "GET" });
    status = response.status;
    const header = response.headers.get("PAYMENT-REQUIRED");
    if (!header) throw new Error(`no PAYMENT-REQUIRED on the ${response.status}`);
    required = decodePaymentRequiredHeader(header);
  }
  const extension = (required.extensions || {}).bazaar;
  if (!extension) throw new Error("no bazaar extension");
  const checked = validateDiscoveryExtension(extension);
  const spec = validateDiscoveryExtensionSpec(extension);
  console.log(
    JSON.stringify({
      status,
      valid: checked.valid,
      errors: checked.errors || [],
      specValid: spec.valid,
      specErrors: spec.errors || [],
      info: extractDiscoveryInfoFromExtension(extension),
      metadata: sanitizeResourceServiceMetadata(required.resource),
    }),
  );
}

main().catch((error) => {
  console.error(`bazaar-check: ${error.stack || error}`);
  process.exit(1);
});
