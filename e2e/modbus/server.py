#!/usr/bin/env python3
"""A pymodbus TCP server holding one value of every data type in every byte
order, plus the gateway config that reads them and the expected values.

    server.py PORT OUTDIR   writes OUTDIR/config.json and OUTDIR/expected.json,
                            then serves until killed.

Encoding follows Neuron's address syntax, independently of the agent's code:
for `#XY`, X is the word order (B: most significant word first) and Y the
byte order inside each word (B: high byte first), e.g. float32 #LB = CDAB.
"""
import asyncio
import json
import struct
import sys

from pymodbus.datastore import (ModbusDeviceContext, ModbusSequentialDataBlock,
                                ModbusServerContext)
from pymodbus.server import StartAsyncTcpServer

FORMATS = {  # data type -> (struct format, value)
    "int16": (">h", -12345),
    "uint16": (">H", 54321),
    "int32": (">i", -123456789),
    "uint32": (">I", 3123456789),
    "int64": (">q", -1234567890123456789),
    "uint64": (">Q", 1234567890123456789),
    "float32": (">f", 123.456),
    "float64": (">d", -98765.4321),
}


def words_for(data: bytes, order: str) -> list:
    words_big, bytes_big = order[0] == "B", order[-1] == "B"
    words = []
    for i in range(0, len(data), 2):
        a, b = data[i], data[i + 1]
        words.append((a << 8 | b) if bytes_big else (b << 8 | a))
    if len(order) == 2 and not words_big:
        words.reverse()
    return words


def build():
    holding = {}
    tags, expected = [], {}
    reg = 0
    for dt, (fmt, value) in FORMATS.items():
        orders = ["B", "L"] if struct.calcsize(fmt) == 2 else ["BB", "BL", "LB", "LL"]
        for order in orders:
            data = struct.pack(fmt, value)
            for i, w in enumerate(words_for(data, order)):
                holding[reg + i] = w
            name = f"{dt}_{order.lower()}"
            tags.append({"name": name, "address": f"1!4{reg + 1:05d}#{order}", "dataType": dt})
            if dt == "float32":
                value_read = struct.unpack(">f", struct.pack(">f", value))[0]
            else:
                value_read = value
            expected[name] = value_read
            reg += len(data) // 2
        reg += 1  # a gap: the agent must split requests here
    # bits of one register, and strings in the four layouts
    holding[reg] = 0b1000_0000_0000_0101
    for bit, want in [(0, True), (1, False), (2, True), (15, True)]:
        name = f"bit_{bit}"
        tags.append({"name": name, "address": f"1!4{reg + 1:05d}.{bit}", "dataType": "bit"})
        expected[name] = want
    reg += 2
    text = "WEIR-PS1"
    for layout in "HLDE":
        raw = text.encode()
        if layout == "H":
            words = [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]
        elif layout == "L":
            words = [raw[i + 1] << 8 | raw[i] for i in range(0, len(raw), 2)]
        elif layout == "D":
            words = [c << 8 for c in raw]
        else:
            words = list(raw)
        for i, w in enumerate(words):
            holding[reg + i] = w
        name = f"string_{layout.lower()}"
        tags.append({"name": name, "address": f"1!4{reg + 1:05d}.{len(raw)}{layout}", "dataType": "string"})
        expected[name] = text
        reg += len(words) + 1
    # input registers, coils and discrete inputs
    inputs = {0: 4242}
    tags.append({"name": "input_u16", "address": "1!300001", "dataType": "uint16"})
    expected["input_u16"] = 4242
    coils = {0: True, 1: False, 2: True}
    for i, v in coils.items():
        tags.append({"name": f"coil_{i}", "address": f"1!0{i + 1:05d}", "dataType": "bool"})
        expected[f"coil_{i}"] = v
    discrete = {0: False, 1: True}
    for i, v in discrete.items():
        tags.append({"name": f"di_{i}", "address": f"1!1{i + 1:05d}", "dataType": "bool"})
        expected[f"di_{i}"] = v
    return holding, inputs, coils, discrete, tags, expected


async def main(port: int, outdir: str):
    holding, inputs, coils, discrete, tags, expected = build()
    def block(values: dict, size: int, zero):
        # Protocol address i reads element i (start 1 is pymodbus's 1-based
        # block numbering, the same in the 3.x and the SimData-backed API).
        data = [zero] * size
        for a, v in values.items():
            data[a] = v
        return ModbusSequentialDataBlock(1, data)

    dev = ModbusDeviceContext(
        co=block(coils, 200, False),
        di=block(discrete, 200, False),
        hr=block(holding, 400, 0),
        ir=block(inputs, 200, 0),
    )
    config = {
        "devices": [{
            "name": "pymodbus",
            "adapter": "modbusTcp",
            "modbus": {"host": "127.0.0.1", "port": port, "timeoutMs": 1000},
            "groups": [{"name": "all", "intervalMs": 500, "tags": tags}],
        }],
        "uplink": {"lingerMs": 0},
    }
    with open(f"{outdir}/config.json", "w") as f:
        json.dump(config, f, indent=2)
    with open(f"{outdir}/expected.json", "w") as f:
        json.dump(expected, f, indent=2)
    context = ModbusServerContext(devices={1: dev}, single=False)
    await StartAsyncTcpServer(context=context, address=("127.0.0.1", port))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
