#!/usr/bin/env python3
"""A pymodbus RTU server for the agent's tests and benches: unit 1 holds one
value of every data type in every byte order (the table of
e2e/modbus/server.py, encoded there independently of the agent's code);
every other unit id is absent and stays silent, as on a real RS-485 line.

    peer.py --tcp PORT  --out DIR       RTU frames over TCP on 127.0.0.1:PORT
    peer.py --serial PATH --out DIR     RTU on a serial line (e.g. a socat pty)

Writes DIR/tags.json (the tags that read the table) and DIR/expected.json,
then DIR/ready once it listens; appends each write request it receives to
DIR/writes.jsonl as {"unit", "function", "address", "registers"|"bits"}.
"""
import argparse
import asyncio
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "..", "e2e", "modbus"))

from pymodbus import FramerType  # noqa: E402
from pymodbus.datastore import (ModbusDeviceContext,  # noqa: E402
                                ModbusSequentialDataBlock, ModbusServerContext)
from pymodbus.server import ModbusSerialServer, ModbusTcpServer  # noqa: E402
from server import build  # noqa: E402  (e2e/modbus/server.py)

WRITES = {5, 6, 15, 16}


def block(values: dict, size: int, zero):
    # Protocol address i reads element i (pymodbus numbers blocks from 1).
    data = [zero] * size
    for a, v in values.items():
        data[a] = v
    return ModbusSequentialDataBlock(1, data)


def main():
    ap = argparse.ArgumentParser()
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT")
    where.add_argument("--serial", metavar="PATH")
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    asyncio.run(serve(args))


async def serve(args):
    holding, inputs, coils, discrete, tags, expected = build()
    unit = ModbusDeviceContext(
        co=block(coils, 200, False),
        di=block(discrete, 200, False),
        hr=block(holding, 400, 0),
        ir=block(inputs, 200, 0),
    )
    context = ModbusServerContext(devices={1: unit}, single=False)
    with open(os.path.join(args.out, "tags.json"), "w") as f:
        json.dump(tags, f)
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f)
    log = open(os.path.join(args.out, "writes.jsonl"), "a", buffering=1)

    def trace_pdu(sending, pdu):
        if not sending and pdu.function_code in WRITES:
            entry = {"unit": pdu.dev_id, "function": pdu.function_code, "address": pdu.address}
            if pdu.function_code in (5, 15):
                entry["bits"] = [bool(b) for b in pdu.bits]
            else:
                entry["registers"] = list(pdu.registers)
            log.write(json.dumps(entry) + "\n")
        return pdu

    def trace_packet(sending, data):
        # An absent unit stays silent, as on RS-485: pymodbus 3.x answers
        # unknown ids with an exception even with ignore_missing_devices,
        # so the answer is dropped here (an RTU frame starts with its unit).
        if sending and data and data[0] != 1:
            return b""
        return data

    common = dict(framer=FramerType.RTU, ignore_missing_devices=True,
                  trace_pdu=trace_pdu, trace_packet=trace_packet)
    if args.tcp is not None:
        server = ModbusTcpServer(context, address=("127.0.0.1", args.tcp), **common)
    else:
        server = ModbusSerialServer(context, port=args.serial, baudrate=args.baud, **common)
    await server.serve_forever(background=True)
    open(os.path.join(args.out, "ready"), "w").close()
    await server.serving


if __name__ == "__main__":
    main()
