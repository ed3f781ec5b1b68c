"""Calls a paid MCP tool of ours with the official clients: the MCP Python SDK (PyPI `mcp`,
streamable HTTP) as the MCP client, and the x402 SDK's MCP session (`x402.mcp.x402MCPSession`)
paying with the exact EVM scheme.

Usage: mcp_pay.py URL TOOL ARGUMENTS FREE_TOOL FREE_ARGUMENTS
       (arguments as JSON objects; the buyer's private key in $BUYER_PRIVATE_KEY)

Steps: list the tools; call TOOL unpaid (the PaymentRequired result); call it through the x402
session (it signs and retries); sign one payment with the x402 client and send it twice (the
second must be refused); call FREE_TOOL through the session (no payment made).

Prints one JSON document on stdout: {"tools", "unpaid", "paid", "replay", "free", "elapsedMs"}.
Exits 1 with the error on stderr when a step fails.
"""

import asyncio
import json
import os
import sys
import time
import traceback
from types import SimpleNamespace

from eth_account import Account
from mcp import Client
from x402 import x402Client
from x402.mcp import x402MCPSession
from x402.mcp.utils import extract_payment_required_from_result
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner

class Session:
    """The MCP SDK's client as the x402 SDK's MCP session calls it: x402 2.25 reads the 1.x
    field names (`isError`, `structuredContent`) and passes timeouts as timedelta, where the
    2.x client has `is_error`, `structured_content` and seconds."""

    def __init__(self, client: Client):
        self.client = client

    async def call_tool(self, name, arguments=None, read_timeout_seconds=None, meta=None):
        timeout = read_timeout_seconds.total_seconds() if read_timeout_seconds else None
        result = await self.client.call_tool(name, arguments, read_timeout_seconds=timeout, meta=meta)
        return SimpleNamespace(
            isError=result.is_error,
            is_error=result.is_error,
            structuredContent=result.structured_content,
            structured_content=result.structured_content,
            content=[block.model_dump(by_alias=True, exclude_none=True) for block in result.content],
            meta=result.meta,
        )


def texts(content) -> list:
    return [block.get("text") if isinstance(block, dict) else getattr(block, "text", None) for block in content]


def settled(result) -> dict:
    response = result.payment_response
    if response is not None and hasattr(response, "model_dump"):
        response = response.model_dump(by_alias=True)
    return {
        "isError": result.is_error,
        "paymentMade": result.payment_made,
        "text": texts(result.content),
        "paymentResponse": response,
    }


async def run(url: str, tool: str, arguments: dict, free_tool: str, free_arguments: dict, key: str) -> dict:
    payer = x402Client()
    register_exact_evm_client(payer, EthAccountSigner(Account.from_key(key)))
    async with Client(url) as client:
        session = Session(client)
        listed = await client.list_tools()
        tools = [{"name": t.name, "description": t.description, "inputSchema": t.input_schema} for t in listed.tools]

        unpaid = await session.call_tool(tool, arguments)
        required = extract_payment_required_from_result(
            SimpleNamespace(is_error=unpaid.isError, structured_content=unpaid.structuredContent, content=unpaid.content)
        )
        if required is None:
            raise RuntimeError(f"no PaymentRequired in the unpaid result: {unpaid}")

        started = time.perf_counter()
        paid = await x402MCPSession(session, payer).call_tool(tool, arguments)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)

        payload = await payer.create_payment_payload(required)
        meta = {"x402/payment": payload.model_dump(by_alias=True, exclude_none=True)}
        first = await session.call_tool(tool, arguments, meta=meta)
        again = await session.call_tool(tool, arguments, meta=meta)

        free = await x402MCPSession(session, payer).call_tool(free_tool, free_arguments)
    return {
        "tools": tools,
        "unpaid": unpaid.structuredContent,
        "paid": settled(paid),
        "replay": {
            "first": {"isError": first.isError, "receipt": (first.meta or {}).get("x402/payment-response")},
            "again": {"isError": again.isError, "structuredContent": again.structuredContent},
        },
        "free": settled(free),
        "elapsedMs": elapsed_ms,
    }


def main() -> int:
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    key = os.environ.get("BUYER_PRIVATE_KEY")
    if not key:
        print("mcp_pay.py: $BUYER_PRIVATE_KEY is required", file=sys.stderr)
        return 2
    try:
        url, tool, arguments, free_tool, free_arguments = sys.argv[1:]
        result = asyncio.run(run(url, tool, json.loads(arguments), free_tool, json.loads(free_arguments), key))
    except Exception as error:  # anything the SDKs raise
        traceback.print_exception(error, file=sys.stderr)
        return 1
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
