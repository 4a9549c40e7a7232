"""A simulated day of a data centre under DPM against the same day with no policy, from the
deterministic policy simulator, plotted as a PNG: the running servers' CPU utilisation (top) and the
servers powered on (bottom), minute by minute. Standard library only: the PNG is drawn and encoded
here.

    python policy_day.py [OUTPUT.png] [SERVERS]
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import zlib

import ovm

WIDTH, PANEL, GAP = 720, 180, 20
HEIGHT = 2 * PANEL + 3 * GAP
WHITE, GREY, BLACK = (255, 255, 255), (170, 170, 170), (0, 0, 0)
BLUE, GREEN = (31, 119, 180), (44, 160, 44)


class Canvas:
    """An RGB image, white, with pixels set one by one."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.rows = [bytearray(WHITE * width) for _ in range(height)]

    def dot(self, x: int, y: int, colour: tuple[int, int, int]) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            self.rows[y][3 * x : 3 * x + 3] = bytes(colour)

    def line(self, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int]) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            self.dot(x0 + (x1 - x0) * i // steps, y0 + (y1 - y0) * i // steps, colour)

    def png(self) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        raw = b"".join(b"\x00" + bytes(r) for r in self.rows)
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def plot(c: Canvas, top: int, series: list[list[float]], colours: list[tuple[int, int, int]], high: float) -> None:
    """Series of one value a minute in a panel whose top row is `top`, from 0 to `high`."""
    c.line(0, top + PANEL, WIDTH - 1, top + PANEL, BLACK)
    c.line(0, top, 0, top + PANEL, BLACK)
    for hour in range(0, 25, 6):
        x = min(hour * 60 * WIDTH // 1440, WIDTH - 1)
        c.line(x, top + PANEL, x, top + PANEL + 4, BLACK)
    for values, colour in zip(series, colours):
        points = [(i * WIDTH // len(values), top + PANEL - int(v / high * PANEL)) for i, v in enumerate(values)]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            c.line(x0, y0, x1, y1, colour)


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.gettempdir(), "ovm-policy-day.png")
    servers = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    dpm = ovm.simulate_policy_day(seed=2026, servers=servers, mode="Dpm")
    off = ovm.simulate_policy_day(seed=2026, servers=servers, mode="Off")
    assert dpm.ticks == off.ticks == len(dpm.powered_servers) == len(off.cpu_utilisation_percent) == 1440
    assert max(off.powered_servers) == servers and min(dpm.powered_servers) < servers
    assert dpm.server_hours_on < off.server_hours_on, "DPM saves server-hours"

    c = Canvas(WIDTH, HEIGHT)
    plot(c, GAP, [off.cpu_utilisation_percent, dpm.cpu_utilisation_percent], [GREY, BLUE], 100.0)
    powered = [[float(n) for n in off.powered_servers], [float(n) for n in dpm.powered_servers]]
    plot(c, 2 * GAP + PANEL, powered, [GREY, GREEN], float(servers))
    data = c.png()
    with open(out, "wb") as f:
        f.write(data)
    print(f"{servers} servers, one day at one-minute ticks (grey: no policy; colour: DPM)")
    print(f"  no policy: {off.server_hours_on:.0f} server-hours, {off.server_minutes_over:.0f} server-minutes over threshold")
    print(
        f"  DPM:       {dpm.server_hours_on:.0f} server-hours, {dpm.server_minutes_over:.0f} server-minutes over threshold, "
        f"{dpm.migrations} migrations, {dpm.power_offs} power-offs, {dpm.power_ons} power-ons"
    )
    print(f"plot: {out} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
