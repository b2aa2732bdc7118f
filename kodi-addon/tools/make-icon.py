#!/usr/bin/env python3
"""Draws the add-on's icon (256x256 RGB PNG, no transparency, as kodi-addon-checker wants)
with the standard library only: a ticket with a PIN pad on its stub and a clock face.

    python3 kodi-addon/tools/make-icon.py [OUT]   default: the add-on's resources/icon.png

The icon is committed; run this only to change it.
"""
import math
import struct
import sys
import zlib
from pathlib import Path

SIZE = 256
SS = 3  # supersampling per axis, for smooth edges

BG_TOP = (20, 33, 61)
BG_BOTTOM = (35, 64, 112)
TICKET = (252, 163, 17)
INK = (20, 33, 61)
FACE = (255, 236, 196)

LEFT, RIGHT, TOP, BOTTOM, RADIUS = 24.0, 232.0, 60.0, 196.0, 18.0
NOTCH_R = 14.0
PERF_X = 160.0
KEYS = [(52.0 + 26.0 * c, 86.0 + 28.0 * r) for r in range(4) for c in range(3) if (r, c) not in ((3, 0), (3, 2))]
CLOCK = (196.0, 128.0, 26.0)


def in_round_rect(x, y):
    if not (LEFT <= x <= RIGHT and TOP <= y <= BOTTOM):
        return False
    cx = min(max(x, LEFT + RADIUS), RIGHT - RADIUS)
    cy = min(max(y, TOP + RADIUS), BOTTOM - RADIUS)
    return (x - cx) ** 2 + (y - cy) ** 2 <= RADIUS ** 2


def colour(x, y):
    t = y / SIZE
    bg = tuple(round(a + (b - a) * t) for a, b in zip(BG_TOP, BG_BOTTOM))
    if not in_round_rect(x, y):
        return bg
    # half-round notches where the perforation meets the edges
    if (x - PERF_X) ** 2 + (y - TOP) ** 2 <= NOTCH_R ** 2 or (x - PERF_X) ** 2 + (y - BOTTOM) ** 2 <= NOTCH_R ** 2:
        return bg
    # perforation: short dashes down the tear line
    if abs(x - PERF_X) <= 2.0 and TOP + NOTCH_R + 4 <= y <= BOTTOM - NOTCH_R - 4 and int((y - TOP) // 8) % 2 == 0:
        return INK
    # PIN pad keys on the stub
    for kx, ky in KEYS:
        if (x - kx) ** 2 + (y - ky) ** 2 <= 9.0 ** 2:
            return INK
    # clock: ring, face, hands
    cx, cy, r = CLOCK
    d = math.hypot(x - cx, y - cy)
    if d <= r:
        if d >= r - 5:
            return INK
        # hour hand up-right to "2", minute hand straight up
        if seg_dist(x, y, cx, cy, cx, cy - r + 9) <= 2.5:
            return INK
        if seg_dist(x, y, cx, cy, cx + (r - 12) * 0.87, cy - (r - 12) * 0.5) <= 3.0:
            return INK
        return FACE
    return TICKET


def seg_dist(px, py, ax, ay, bx, by):
    vx, vy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * vx + (py - ay) * vy) / (vx * vx + vy * vy)))
    return math.hypot(px - (ax + t * vx), py - (ay + t * vy))


def render():
    rows = []
    n = SS * SS
    for py in range(SIZE):
        row = bytearray([0])  # filter type 0
        for px in range(SIZE):
            r = g = b = 0
            for sy in range(SS):
                for sx in range(SS):
                    c = colour(px + (sx + 0.5) / SS, py + (sy + 0.5) / SS)
                    r += c[0]
                    g += c[1]
                    b += c[2]
            row += bytes((round(r / n), round(g / n), round(b / n)))
        rows.append(bytes(row))
    return b"".join(rows)


def png(raw):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main():
    default = Path(__file__).resolve().parent.parent / "service.kodi-tickets" / "resources" / "icon.png"
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    out.write_bytes(png(render()))
    print(out)


if __name__ == "__main__":
    main()
