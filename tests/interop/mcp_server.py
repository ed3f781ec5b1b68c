"""An MCP server built with the official Python SDK (PyPI `mcp`), for the test that sells a whole
upstream MCP server (`obol sell mcp --mcp-server`): `add(a, b)` and `shout(text)` over streamable
HTTP at http://127.0.0.1:PORT/mcp.

Usage: mcp_server.py PORT
"""

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("interop-upstream")


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """Upper-cases a text."""
    return text.upper()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
