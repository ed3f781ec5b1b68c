"""Pays one x402 URL with the official Python SDK (PyPI `x402`, httpx client, exact EVM scheme).

Usage: x402_pay.py URL   (the buyer's private key in $BUYER_PRIVATE_KEY)

Unmodified by default: the SDK pays only the assets it knows (USDC). With $ALLOW_ASSET (a token
address on Base Sepolia) it also opts that token in through the SDK's spend controls, and with
$RPC_URL the signer reads the chain (EthAccountSignerWithRPC), which the SDK needs to sign the
EIP-2612 permit of a gas-sponsored Permit2 payment.

Prints one JSON document on stdout: {"status", "body", "paymentResponse", "elapsedMs"}, where
paymentResponse is the decoded PAYMENT-RESPONSE settlement header (null when absent) and
elapsedMs the time from the unpaid request to the paid answer (402, sign, retry, settle).
Exits 1 with the SDK's error on stderr when the payment cannot be made.
"""

import asyncio
import json
import os
import sys
import time

from eth_account import Account
from x402 import x402Client
from x402.http import decode_payment_response_header
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner, EthAccountSignerWithRPC


async def pay(url: str, key: str) -> dict:
    account = Account.from_key(key)
    rpc_url = os.environ.get("RPC_URL")
    signer = EthAccountSignerWithRPC(account, rpc_url=rpc_url) if rpc_url else EthAccountSigner(account)
    client = x402Client()
    register_exact_evm_client(client, signer)
    allow = os.environ.get("ALLOW_ASSET")
    if allow:
        client.set_spend_controls({"allowed_assets": [{"network": "eip155:84532", "asset": allow}]})
    async with x402HttpxClient(client, timeout=30) as http:
        started = time.perf_counter()
        response = await http.get(url)
        await response.aread()
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    header = response.headers.get("PAYMENT-RESPONSE") or response.headers.get("X-PAYMENT-RESPONSE")
    settlement = decode_payment_response_header(header).model_dump(by_alias=True) if header else None
    return {
        "status": response.status_code,
        "body": response.text,
        "paymentResponse": settlement,
        "elapsedMs": elapsed_ms,
    }


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    key = os.environ.get("BUYER_PRIVATE_KEY")
    if not key:
        print("x402_pay.py: $BUYER_PRIVATE_KEY is required", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(pay(sys.argv[1], key))
    except Exception as error:  # the SDK's PaymentError and anything under it
        print(f"x402_pay.py: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
