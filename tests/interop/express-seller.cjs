// An @x402/express seller (the official npm SDK) whose facilitator is the URL in
// $FACILITATOR_URL, on Base Sepolia (eip155:84532), paid to $PAY_TO:
//   GET /paid         $PRICE (default "$0.001"): the SDK's default asset, USDC (EIP-3009)
//   POST /v1/chat/completions  $PRICE: an OpenAI-compatible answer naming the model asked for
//                     (an external seller for `obol buy inference`)
//   GET /paid-permit2 (when $PERMIT2_ASSET is set) $PERMIT2_AMOUNT atomic units of that EIP-2612
//                     token, named $PERMIT2_NAME / version $PERMIT2_VERSION, paid through Permit2
//                     with the eip2612GasSponsoring extension declared
//   POST /metered      (when $UPTO_PRICE is set) the upto scheme: the buyer signs a ceiling of
//                     $UPTO_PRICE in USDC through Permit2, and the handler charges the atomic
//                     amount in the query's `charge` (default: the whole ceiling) through the
//                     SDK's settlement overrides
// Prints "listening http://127.0.0.1:PORT" once it serves; stops on SIGTERM. Run with NODE_PATH
// pointing at the node_modules installed from tests/interop/package.json (scripts/install-tools
// does that).
"use strict";

const express = require("express");
const {
  paymentMiddleware,
  setSettlementOverrides,
  x402ResourceServer,
} = require("@x402/express");
const { ExactEvmScheme } = require("@x402/evm/exact/server");
const { UptoEvmScheme } = require("@x402/evm/upto/server");
const { HTTPFacilitatorClient } = require("@x402/core/server");
const { declareEip2612GasSponsoringExtension } = require("@x402/extensions");

const need = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`express-seller: $${name} is required`);
    process.exit(2);
  }
  return value;
};

const network = "eip155:84532";
const facilitator = new HTTPFacilitatorClient({ url: need("FACILITATOR_URL") });
const server = new x402ResourceServer(facilitator)
  .register(network, new ExactEvmScheme())
  .register(network, new UptoEvmScheme());

const payTo = need("PAY_TO");
const routes = {
  "GET /paid": {
    accepts: {
      scheme: "exact",
      price: process.env.PRICE || "$0.001",
      network,
      payTo,
      maxTimeoutSeconds: 120,
    },
    description: "interop test resource",
    mimeType: "application/json",
  },
  "POST /v1/chat/completions": {
    accepts: {
      scheme: "exact",
      price: process.env.PRICE || "$0.001",
      network,
      payTo,
      maxTimeoutSeconds: 120,
    },
    description: "interop test model",
    mimeType: "application/json",
  },
};
if (process.env.PERMIT2_ASSET) {
  routes["GET /paid-permit2"] = {
    accepts: {
      scheme: "exact",
      price: {
        amount: need("PERMIT2_AMOUNT"),
        asset: process.env.PERMIT2_ASSET,
        extra: {
          name: need("PERMIT2_NAME"),
          version: need("PERMIT2_VERSION"),
          assetTransferMethod: "permit2",
        },
      },
      network,
      payTo,
      maxTimeoutSeconds: 120,
    },
    description: "interop test resource paid through Permit2",
    mimeType: "application/json",
    extensions: { ...declareEip2612GasSponsoringExtension() },
  };
}
if (process.env.UPTO_PRICE) {
  routes["POST /metered"] = {
    accepts: {
      scheme: "upto",
      price: process.env.UPTO_PRICE,
      network,
      payTo,
      maxTimeoutSeconds: 120,
    },
    description: "interop test resource charged up to a ceiling",
    mimeType: "application/json",
  };
}

const app = express();
// A paid request the middleware refused: say why on stderr (the test prints it on failure).
app.use((req, res, next) => {
  const paid = req.get("payment-signature") || req.get("x-payment");
  res.on("finish", () => {
    if (paid && res.statusCode === 402) {
      const header = res.getHeader("payment-required");
      const why = header ? JSON.parse(Buffer.from(String(header), "base64").toString()).error : "";
      console.error(`express-seller: ${req.method} ${req.path} refused a payment: ${why}`);
    }
  });
  next();
});
app.use(paymentMiddleware(routes, server));
app.get("/paid", (_req, res) => res.json({ sdk: "@x402/express", paid: true }));
app.get("/paid-permit2", (_req, res) => res.json({ sdk: "@x402/express", paid: "permit2" }));
app.post("/metered", (req, res) => {
  if (typeof req.query.charge === "string") {
    setSettlementOverrides(res, { amount: req.query.charge });
  }
  res.json({ sdk: "@x402/express", paid: "upto" });
});
app.get("/free", (_req, res) => res.json({ free: true }));
app.post("/v1/chat/completions", express.json(), (req, res) =>
  res.json({
    object: "chat.completion",
    model: (req.body && req.body.model) || "unknown",
    choices: [{ index: 0, message: { role: "assistant", content: "paid answer from @x402/express" } }],
  }),
);

const listener = app.listen(0, "127.0.0.1", () => {
  console.log(`listening http://127.0.0.1:${listener.address().port}`);
});
process.on("SIGTERM", () => listener.close(() => process.exit(0)));
