#!/usr/bin/env python3
"""A pymodbus TCP server holding a small dosing skid's setpoints, for the
setpoint-write tests (e2e/tests/it/setpoint_writes.rs and the console's
browser suite), and a client that reads one register back independently of
weir-agent.

    setpoints.py serve PORT          serve until killed; prints "ready"
    setpoints.py read PORT KIND REG  print holding register REG (0-based)
                                     as KIND: float32 (REG, REG+1, big
                                     endian) or uint16

Holding registers (0-based; Neuron address 1!4000NN is register NN-1):
    0-1  dose_sp     float32  2.5   (a setpoint, mg/L)
    2    pump_speed  uint16   1200  (a setpoint, rpm)
    4-5  flow        float32  3.5   (a measurement)
Only registers 0-9 exist: a write to 1!400100 gets an "illegal data
address" exception.
"""
import asyncio
import struct
import sys


def words(value: float) -> list:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


async def serve(port: int):
    from pymodbus.datastore import (ModbusDeviceContext, ModbusSequentialDataBlock,
                                    ModbusServerContext)
    from pymodbus.server import StartAsyncTcpServer

    holding = words(2.5) + [1200, 0] + words(3.5) + [0, 0, 0, 0]
    # Block start 1: protocol address i is element i (see server.py).
    dev = ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, holding))
    ctx = ModbusServerContext(devices={1: dev}, single=False)
    loop = asyncio.get_running_loop()
    loop.call_later(0.5, lambda: print("ready", flush=True))
    await StartAsyncTcpServer(context=ctx, address=("127.0.0.1", port))


def read(port: int, kind: str, reg: int):
    from pymodbus.client import ModbusTcpClient

    c = ModbusTcpClient("127.0.0.1", port=port)
    if not c.connect():
        sys.exit(f"cannot connect to 127.0.0.1:{port}")
    try:
        n = 2 if kind == "float32" else 1
        try:
            r = c.read_holding_registers(reg, count=n, device_id=1)
        except TypeError:  # pymodbus before 3.10 names it slave
            r = c.read_holding_registers(reg, count=n, slave=1)
        if r.isError():
            sys.exit(f"read failed: {r}")
        if kind == "float32":
            v = struct.unpack(">f", struct.pack(">HH", *r.registers))[0]
            # The shortest decimal that reads back as the same float32.
            for digits in range(1, 10):
                s = f"{v:.{digits}g}"
                if struct.unpack(">f", struct.pack(">f", float(s)))[0] == v:
                    break
            print(s)
        else:
            print(r.registers[0])
    finally:
        c.close()


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        asyncio.run(serve(int(sys.argv[2])))
    elif len(sys.argv) == 5 and sys.argv[1] == "read":
        read(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)
