"""Discovery's reading of the kernel's socket tables: addresses as the kernel writes them, which
of them are asked on loopback, and what is skipped."""

from __future__ import annotations

import socket

import pytest

from vramtop.scrape.discovery import Discovery, Listener, parse_net

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1
   1: 0100007F:7530 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4243 1
   2: 0200007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4244 1
   3: 0100007F:1F40 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 4245 1
   4: 0501A8C0:2CAA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4246 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5001 1
   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5002 1
   2: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5003 1
"""  # noqa: E501


def test_the_kernels_tables_are_read_as_listeners() -> None:
    got = {lst.inode: lst for lst in parse_net(TCP) + parse_net(TCP6)}
    assert 4245 not in got  # an established connection is not a listener
    assert got[4242] == Listener("0.0.0.0", 8000, 1000, 4242)
    assert got[4243].address == "127.0.0.1" and got[4243].port == 30000
    assert got[4246].address == "192.168.1.5"
    assert (got[5001].address, got[5002].address, got[5003].address) == (
        "::", "::1", "::ffff:127.0.0.1",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::", "::1"),
        ("::1", "::1"),
        ("127.0.0.2", None),  # bound to another loopback address: not asked on 127.0.0.1
        ("192.168.1.5", None),
    ],
)
def test_which_bound_addresses_are_asked_on_loopback(address: str, host: str | None) -> None:
    assert Listener(address, 8000, 0, 1).loopback_host == host


def test_a_real_listener_of_this_process_is_in_the_table() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        found = [lst for lst in Discovery().listeners().values() if lst.port == port]
    assert len(found) == 1 and found[0].address == "127.0.0.1"
