#!/usr/bin/env python3
"""Minimal QUIC peers (aioquic) for make.sh.
  quic_peer.py server CERT KEY HOST PORT      answer handshakes until killed
  quic_peer.py client HOST PORT SNI [v2]      one connection attempt (3 s), then exit"""
import asyncio, ssl, sys

from aioquic.asyncio import connect, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicProtocolVersion


async def server(cert, key, host, port):
    cfg = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    cfg.supported_versions = [QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2]
    cfg.load_cert_chain(cert, key)
    await serve(host, int(port), configuration=cfg)
    await asyncio.Future()


async def client(host, port, sni, v2):
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=sni, verify_mode=ssl.CERT_NONE)
    if v2:
        cfg.original_version = QuicProtocolVersion.VERSION_2
        cfg.supported_versions = [QuicProtocolVersion.VERSION_2, QuicProtocolVersion.VERSION_1]
    try:
        async with connect(host, int(port), configuration=cfg) as conn:
            await conn.ping()
    except Exception:
        pass


if sys.argv[1] == "server":
    asyncio.run(server(*sys.argv[2:6]))
else:
    try:
        asyncio.run(asyncio.wait_for(client(sys.argv[2], sys.argv[3], sys.argv[4], len(sys.argv) > 5), 3))
    except Exception:
        pass
