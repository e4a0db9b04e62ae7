"""Read a running hashrig's cgminer API with pyasic, the way dashboards do, and print what
pyasic understood as one JSON object (tests/e2e/monitor_bench.rs and tests/e2e/monitor_mine.rs check it).

Usage: python pyasic_probe.py PORT [switchpool N]

pyasic's CGMiner backend (pyasic/miners/backends/cgminer.py) and BMMiner backend
(pyasic/miners/backends/bmminer.py) are used as they are: only the port differs from a real
miner's 4028.
"""

import asyncio
import json
import sys

from pyasic.miners.backends.bmminer import BMMiner
from pyasic.miners.backends.cgminer import CGMiner


def rate(h):
    # A pyasic hashrate is a rate in a unit (the default unit of the miner's algorithm);
    # int(unit) is that unit in H/s.
    return None if h is None else float(h) * int(h.unit)


async def main(port, write):
    out = {}
    cg = CGMiner("127.0.0.1")
    cg.rpc.port = port
    # What CGMiner's data locations read over RPC alone (its subclasses add web-API data).
    data = await cg.get_data(allow_warning=True, include=["hashrate", "fw_ver", "api_ver", "uptime", "pools"])
    out["cgminer"] = {
        "hashrate_hs": rate(data.hashrate),
        "fw_ver": data.fw_ver,
        "api_ver": data.api_ver,
        "uptime": data.uptime,
        "pools": [
            {
                "index": p.index,
                "url": None if p.url is None else str(p.url),
                "user": p.user,
                "accepted": p.accepted,
                "rejected": p.rejected,
                "active": p.active,
                "alive": p.alive,
            }
            for p in data.pools
        ],
    }
    # The raw replies, parsed by pyasic's own reader (it mends NULs and other quirks).
    raw = {}
    for cmd in ["summary", "devs", "stats", "version", "config", "devdetails"]:
        raw[cmd] = await getattr(cg.rpc, cmd)()
    out["raw"] = raw
    bm = BMMiner("127.0.0.1")
    bm.rpc.port = port
    bm.expected_hashboards = 3
    bm.expected_fans = 0
    boards = await bm._get_hashboards()
    out["bmminer_boards"] = [
        {"slot": b.slot, "chips": b.chips, "chip_temp": b.chip_temp, "hashrate_hs": rate(b.hashrate), "missing": b.missing}
        for b in boards
    ]
    out["bmminer_uptime"] = await bm._get_uptime()
    if write:
        cmd, arg = write
        try:
            reply = await getattr(cg.rpc, cmd)(int(arg))
            out["write"] = {"ok": True, "reply": reply}
        except Exception as e:  # pyasic raises APIError on an error status
            out["write"] = {"ok": False, "error": str(e)}
    print(json.dumps(out))


if __name__ == "__main__":
    port = int(sys.argv[1])
    write = (sys.argv[2], sys.argv[3]) if len(sys.argv) >= 4 else None
    asyncio.run(main(port, write))
