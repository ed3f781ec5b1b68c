"""An agent host (the official MCP Python SDK, PyPI `mcp`, over stdio) driving `obol mcp`: the
buyer's MCP server that holds the key and the spend caps.

Usage: mcp_agent.py OBOL URL MCP_ENDPOINT TOOL
  OBOL          the obol binary (run as `OBOL mcp --max-per-call 0.0025 --max-per-day 0.004`;
                its settings and key come from this process's environment)
  URL           a paid HTTP URL (0.001 USDC)
  MCP_ENDPOINT  a paid MCP server, and TOOL one of its tools (0.002 USDC)

Two sessions (the second after the first exited): prints one JSON document with each step's
structured result.
"""

import asyncio
import json
import os
import sys
import traceback

from mcp import Client, StdioServerParameters


async def step(client: Client, name: str, arguments: dict) -> dict:
    result = await client.call_tool(name, arguments)
    return {"isError": result.is_error, "value": result.structured_content}


async def run(obol: str, url: str, endpoint: str, tool: str) -> dict:
    server = StdioServerParameters(
        command=obol,
        args=["mcp", "--max-per-call", "0.0025", "--max-per-day", "0.004"],
        env=dict(os.environ),
    )
    report: dict = {}
    async with Client(server) as client:
        listed = await client.list_tools()
        report["tools"] = {t.name: t.description for t in listed.tools}
        report["probe"] = await step(client, "probe", {"url": url})
        report["pay"] = await step(client, "pay", {"url": url})
        report["tooMuch"] = await step(client, "pay", {"url": url, "maxAmount": "0.0005"})
        report["callTool"] = await step(
            client, "call_tool", {"endpoint": endpoint, "tool": tool, "arguments": {"city": "Lisbon"}}
        )
        report["payAgain"] = await step(client, "pay", {"url": url})
        report["overDay"] = await step(client, "pay", {"url": url})
        report["budget"] = await step(client, "budget", {})
    async with Client(server) as client:
        report["afterRestart"] = await step(client, "pay", {"url": url})
        report["budgetAfterRestart"] = await step(client, "budget", {})
    return report


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        report = asyncio.run(run(*sys.argv[1:]))
    except Exception as error:  # anything the SDK raises
        traceback.print_exception(error, file=sys.stderr)
        return 1
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
