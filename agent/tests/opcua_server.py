"""OPC UA test server for the agent's opcUa adapter (PyPI asyncua).

Nodes in namespace 2 (string ids `ns=2;s=Plant.<Name>`):
  fixed values of each data type: Bool, Int16, UInt16, Int32, UInt32, Int64,
  UInt64, Float, Double, String (see FIXED below);
  Counter (UInt32) and Level (Double) change every --tick-ms;
  Setpoint (Double) and SetpointInt (Int32) are writable: every change made by
  a client is printed as `WRITE <name> <value>` on stdout.
--bench-nodes N adds Double nodes Plant.B0..B<N-1>, all changed every tick;
the number of node updates made so far is printed as `UPDATES <n>` each second.
Prints `READY <port> <sha256 of the server certificate or ->` once serving.

  --security none            endpoint None only
  --security basic256sha256  endpoint Basic256Sha256/SignAndEncrypt only; the
                             self-signed certificate and key live in --pki
                             (kept across restarts, so a pin stays valid)
  --user U --password P      only that user name and password are accepted
  --x509-user                only the X.509 user whose certificate and key the
                             script writes to --pki (user-cert.pem, user-key.pem)
"""

import argparse
import asyncio
import hashlib
import logging
import socket
import sys
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import CertificateUserManager
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

FIXED = [
    ("Bool", True, ua.VariantType.Boolean),
    ("Int16", -12345, ua.VariantType.Int16),
    ("UInt16", 54321, ua.VariantType.UInt16),
    ("Int32", -123456789, ua.VariantType.Int32),
    ("UInt32", 3000000000, ua.VariantType.UInt32),
    ("Int64", -9000000000000, ua.VariantType.Int64),
    ("UInt64", 9000000000000000000, ua.VariantType.UInt64),
    ("Float", 1.5, ua.VariantType.Float),
    ("Double", -2.25, ua.VariantType.Double),
    ("String", "pump running", ua.VariantType.String),
]


class OneUser:
    """Accepts exactly one user name and password."""

    def __init__(self, user, password):
        self.user, self.password = user, password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username == self.user and password == self.password:
            return User(role=UserRole.User)
        return None


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--security", choices=["none", "basic256sha256"], default="none")
    p.add_argument("--pki", default=None)
    p.add_argument("--user", default=None)
    p.add_argument("--password", default=None)
    p.add_argument("--tick-ms", type=int, default=100)
    p.add_argument("--bench-nodes", type=int, default=0)
    p.add_argument("--x509-user", action="store_true")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    users = None
    if a.user:
        users = OneUser(a.user, a.password)
    elif a.x509_user:
        pki = Path(a.pki)
        pki.mkdir(parents=True, exist_ok=True)
        ukey, ucert = pki / "user-key.pem", pki / "user-cert.der"
        await setup_self_signed_certificate(
            ukey, ucert, "urn:weir:test:user", socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "operator"}
        )
        der = x509.load_der_x509_certificate(ucert.read_bytes())
        (pki / "user-cert.pem").write_bytes(der.public_bytes(serialization.Encoding.PEM))
        users = CertificateUserManager()
        await users.add_user(ucert, name="operator")
    server = Server(user_manager=users)
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{a.port}/weir/")
    server.set_server_name("weir test server")
    uri = "urn:weir:test:server"
    await server.set_application_uri(uri)
    sha = "-"
    if a.security == "basic256sha256":
        pki = Path(a.pki)
        pki.mkdir(parents=True, exist_ok=True)
        key, cert = pki / "server-key.pem", pki / "server-cert.der"
        await setup_self_signed_certificate(
            key, cert, uri, socket.gethostname(), [ExtendedKeyUsageOID.SERVER_AUTH], {"commonName": "weir test server"}
        )
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        sha = hashlib.sha256(cert.read_bytes()).hexdigest()
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    if a.user:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    elif a.x509_user:
        server.set_identity_tokens([ua.X509IdentityToken])
    else:
        server.set_identity_tokens([ua.AnonymousIdentityToken])

    ns = await server.register_namespace("urn:weir:test")
    plant = await server.nodes.objects.add_object(ua.NodeId("Plant", ns), "Plant")
    for name, value, vt in FIXED:
        await plant.add_variable(ua.NodeId(f"Plant.{name}", ns), name, ua.Variant(value, vt))
    counter = await plant.add_variable(ua.NodeId("Plant.Counter", ns), "Counter", ua.Variant(0, ua.VariantType.UInt32))
    level = await plant.add_variable(ua.NodeId("Plant.Level", ns), "Level", ua.Variant(0.0, ua.VariantType.Double))
    writable = {}
    for name, value, vt in [("Setpoint", 0.0, ua.VariantType.Double), ("SetpointInt", 0, ua.VariantType.Int32)]:
        v = await plant.add_variable(ua.NodeId(f"Plant.{name}", ns), name, ua.Variant(value, vt))
        await v.set_writable()
        writable[name] = (v, value)

    bench = []
    for i in range(a.bench_nodes):
        bench.append(await plant.add_variable(ua.NodeId(f"Plant.B{i}", ns), f"B{i}", ua.Variant(0.0, ua.VariantType.Double)))

    loop = asyncio.get_running_loop()
    async with server:
        print(f"READY {a.port} {sha}", flush=True)
        n = 0
        updates = 0
        last_report = loop.time()
        next_tick = loop.time()
        while True:
            # A fixed schedule: slow ticks are not stretched by the work.
            next_tick += a.tick_ms / 1000
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            n += 1
            for i, node in enumerate(bench):
                await node.write_value(ua.Variant(float(n + i), ua.VariantType.Double))
            updates += len(bench)
            if bench and loop.time() - last_report >= 1.0:
                print(f"UPDATES {updates}", flush=True)
                last_report = loop.time()
            await counter.write_value(ua.Variant(n, ua.VariantType.UInt32))
            await level.write_value(ua.Variant(float(n % 100) / 10.0, ua.VariantType.Double))
            for name, (node, last) in list(writable.items()):
                v = await node.read_value()
                if v != last:
                    print(f"WRITE {name} {v}", flush=True)
                    writable[name] = (node, v)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
