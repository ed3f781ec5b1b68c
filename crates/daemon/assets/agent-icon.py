#!/usr/bin/env python3
"""Draws agent-icon.png (128x128 RGBA, standard library only): a teal ring with a coin-slot gap
and a centre dot on a dark rounded square. Run from this folder to redraw it."""
import math
import struct
import zlib

SIZE = 128
BACKGROUND = (9, 20, 27)
TEAL = (47, 228, 171)


def clamp(v):
    return max(0.0, min(1.0, v))


def pixel(x, y):
    c = (SIZE - 1) / 2
    d = math.hypot(x - c, y - c)
    angle = math.degrees(math.atan2(c - y, x - c))
    ring = 0.0 if 35 <= angle <= 55 else clamp(d - 29.5) * clamp(44.5 - d)
    t = max(ring, clamp(12.5 - d))
    rx, ry = min(x, SIZE - 1 - x), min(y, SIZE - 1 - y)
    if rx < 16 and ry < 16 and math.hypot(16 - rx, 16 - ry) > 16:
        return (0, 0, 0, 0)
    return tuple(int(BACKGROUND[i] * (1 - t) + TEAL[i] * t) for i in range(3)) + (255,)


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


rows = b"".join(
    b"\x00" + bytes(v for x in range(SIZE) for v in pixel(x, y)) for y in range(SIZE)
)
png = (
    b"\x89PNG\r\n\x1a\n"
    + chunk(b"IHDR", struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(rows, 9))
    + chunk(b"IEND", b"")
)
with open("agent-icon.png", "wb") as f:
    f.write(png)
