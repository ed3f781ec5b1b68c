// Signs in to an obol-stack `auth` route with the official Sign-In-With-X client
// (@x402/extensions `createSIWxPayload` + `encodeSIWxHeader`, a viem account):
//   node siwx-client.cjs URL PRIVATE_KEY
// GETs URL (expects the 401 challenge in PAYMENT-REQUIRED), signs the `sign-in-with-x`
// extension for the first supported chain, GETs again with SIGN-IN-WITH-X, then replays the
// same header. Prints one JSON line: {challenge, signed: {status, body}, replay: {status, body}}.
//   node siwx-client.cjs wrap URL PRIVATE_KEY COUNT
// GETs URL COUNT times through `wrapFetchWithSIWx` (the SDK signs in when a 402 offers it, for
// a paid route's free calls); prints {statuses: [...], wallets: [...]} (the bodies).
// Run with NODE_PATH pointing at the node_modules installed from tests/interop/package.json.
"use strict";

const { privateKeyToAccount } = require("viem/accounts");
const {
  createSIWxPayload,
  encodeSIWxHeader,
  wrapFetchWithSIWx,
} = require("@x402/extensions/sign-in-with-x");
const { decodePaymentRequiredHeader } = require("@x402/core/http");

async function wrapped(url, key, count) {
  const siwxFetch = wrapFetchWithSIWx(fetch, privateKeyToAccount(key));
  const statuses = [];
  const wallets = [];
  for (let i = 0; i < count; i++) {
    const response = await siwxFetch(url);
    statuses.push(response.status);
    wallets.push(await response.text());
  }
  console.log(JSON.stringify({ statuses, wallets }));
}

async function main() {
  if (process.argv[2] === "wrap") {
    const [url, key, count] = process.argv.slice(3);
    return wrapped(url, key, Number(count));
  }
  const [url, key] = process.argv.slice(2);
  const account = privateKeyToAccount(key);
  const first = await fetch(url);
  const header = first.headers.get("PAYMENT-REQUIRED");
  if (!header) throw new Error(`no PAYMENT-REQUIRED on the ${first.status}`);
  const required = decodePaymentRequiredHeader(header);
  const extension = required.extensions["sign-in-with-x"];
  const chain = extension.supportedChains[0];
  const info = { ...extension.info, chainId: chain.chainId, type: chain.type };
  const payload = await createSIWxPayload(info, account, url);
  const headers = { "SIGN-IN-WITH-X": encodeSIWxHeader(payload) };
  const signed = await fetch(url, { headers });
  const signedBody = await signed.text();
  const replay = await fetch(url, { headers });
  const replayBody = await replay.text();
  console.log(
    JSON.stringify({
      challenge: first.status,
      wwwAuthenticate: first.headers.get("www-authenticate"),
      address: account.address,
      signed: { status: signed.status, body: signedBody },
      replay: { status: replay.status, body: replayBody },
    }),
  );
}

main().catch((error) => {
  console.error(`siwx-client: ${error.stack || error}`);
  process.exit(1);
});
