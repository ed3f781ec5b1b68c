// Pays a metered (x402 `upto`) chat endpoint with the official client: @x402/fetch
// `wrapFetchWithPayment` over an @x402/core `x402Client` on which only @x402/evm's
// `UptoEvmScheme` is registered, signing with a viem local account.
//   BUYER_PRIVATE_KEY=0x… node upto-client.cjs URL [RPC_URL]
// POSTs a chat-completions request to URL. The SDK reads the 402, picks the `upto` option (the
// only scheme it holds), signs the Permit2 ceiling for the proxy 0x4020…0002 with the witness
// naming `extra.facilitatorAddress`, and retries. With RPC_URL the scheme may read allowances and
// sign the EIP-2612 gas-sponsoring extension when the 402 offers it (without, it never does).
// CHAT_CONTENT is the user message (default "hi"). ALLOW_ASSET=0x… opts a token outside the
// SDK's default assets in (its spend controls).
// Prints one JSON line: {status, body, paymentResponse (the decoded PAYMENT-RESPONSE),
// paymentRequired (the header of a final 402, if any), required (the 402 the SDK answered),
// payment (the payload it sent), elapsedMs}.
// Run with NODE_PATH pointing at the node_modules installed from tests/interop/package.json.
"use strict";

const { privateKeyToAccount } = require("viem/accounts");
const { x402Client, wrapFetchWithPayment, decodePaymentResponseHeader } = require("@x402/fetch");
const { UptoEvmScheme } = require("@x402/evm/upto/client");

async function main() {
  const [url, rpcUrl] = process.argv.slice(2);
  const key = process.env.BUYER_PRIVATE_KEY;
  if (!url || !key) throw new Error("usage: BUYER_PRIVATE_KEY=0x… node upto-client.cjs URL [RPC_URL]");
  const account = privateKeyToAccount(key);
  const client = new x402Client();
  client.register("eip155:*", new UptoEvmScheme(account, rpcUrl ? { rpcUrl } : undefined));
  if (process.env.ALLOW_ASSET) {
    client.setSpendControls({ allowedAssets: [{ network: "eip155:*", asset: process.env.ALLOW_ASSET }] });
  }
  let required;
  let payment;
  client.onBeforePaymentCreation(async (context) => {
    required = context.paymentRequired;
  });
  client.onAfterPaymentCreation(async (context) => {
    payment = context.paymentPayload;
  });
  const paidFetch = wrapFetchWithPayment(fetch, client);

  const started = performance.now();
  const response = await paidFetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "m", messages: [{ role: "user", content: process.env.CHAT_CONTENT || "hi" }] }),
  });
  const body = await response.text();
  const elapsedMs = Math.round(performance.now() - started);
  const header = response.headers.get("PAYMENT-RESPONSE");
  console.log(
    JSON.stringify({
      status: response.status,
      body,
      paymentResponse: header ? decodePaymentResponseHeader(header) : null,
      paymentRequired: response.headers.get("PAYMENT-REQUIRED"),
      required,
      payment,
      elapsedMs,
    }),
  );
}

main().catch((error) => {
  console.error(`upto-client: ${error.stack || error}`);
  process.exit(1);
});
