// Checks the Bazaar extension of a 402 with the official validator (@x402/extensions bazaar):
//   node bazaar-check.cjs URL [METHOD]
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
  const response = await fetch(url, { method: method || "GET" });
  const header = response.headers.get("PAYMENT-REQUIRED");
  if (!header) throw new Error(`no PAYMENT-REQUIRED on the ${response.status}`);
  const required = decodePaymentRequiredHeader(header);
  const extension = (required.extensions || {}).bazaar;
  if (!extension) throw new Error("no bazaar extension");
  const checked = validateDiscoveryExtension(extension);
  const spec = validateDiscoveryExtensionSpec(extension);
  console.log(
    JSON.stringify({
      status: response.status,
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
