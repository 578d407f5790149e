"""`python -m jepsen_like.nfq_delay QUEUE DELAY_MS JITTER_MS SEED`: delays packets queued by nftables.

tc netem is not built into this kernel (reference/fault-injection.md §2(c)), so packet delay is done in user
space: an nft rule in a node's namespace sends its inbound packets to NFQUEUE QUEUE (with `bypass`, so
traffic flows again the moment this process dies), and this program, started in the same namespace, holds
each packet for DELAY_MS +- JITTER_MS (uniform, seeded) before giving the kernel an ACCEPT verdict.  Jitter
reorders packets, as netem's does.  It speaks nfnetlink_queue directly (stdlib only): bind the queue, ask
for metadata only (the packet stays in the kernel), read packet ids, send verdicts late.  Runs until killed.
"""

from __future__ import annotations

import heapq
import random
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLMSG_HDR = struct.Struct("=IHHII")
NFGEN_HDR = struct.Struct("!BBH")


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _message(msg: int, queue: int, attrs: bytes, seq: int) -> bytes:
    body = NFGEN_HDR.pack(socket.AF_UNSPEC, 0, queue) + attrs
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, NLM_F_REQUEST, seq, 0) + body


def _packet_ids(data: bytes):
    offset = 0
    while offset + NLMSG_HDR.size <= len(data):
        length, kind, _flags, _seq, _pid = NLMSG_HDR.unpack_from(data, offset)
        if length < NLMSG_HDR.size:
            return
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            pos, end = offset + NLMSG_HDR.size + NFGEN_HDR.size, offset + length
            while pos + 4 <= end:
                attr_len, attr_kind = struct.unpack_from("=HH", data, pos)
                if attr_len < 4:
                    break
                if attr_kind & 0x7FFF == NFQA_PACKET_HDR:
                    yield struct.unpack_from("!I", data, pos + 4)[0]
                pos += attr_len + (-attr_len % 4)
        offset += length + (-length % 4)


def run(queue: int, delay_ms: float, jitter_ms: float, seed: int) -> None:
    rng = random.Random(f"{seed}/nfq/{queue}")
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    seq = 1
    sock.send(_message(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0,
                                                                                     socket.AF_INET)), seq))
    sock.send(_message(NFQNL_MSG_CONFIG, queue, _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
                       seq + 1))
    seq += 2
    pending: list[tuple[float, int, int]] = []   # (due, order, packet id)
    order = 0
    print(f"nfq_delay: queue {queue}, {delay_ms}+-{jitter_ms} ms", flush=True)
    while True:
        timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else 1.0
        readable, _, _ = select.select([sock], [], [], timeout)
        if readable:
            data = sock.recv(1 << 16)
            for packet_id in _packet_ids(data):
                due = time.monotonic() + max(0.0, delay_ms + rng.uniform(-jitter_ms, jitter_ms)) / 1000.0
                heapq.heappush(pending, (due, order, packet_id))
                order += 1
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _due, _order, packet_id = heapq.heappop(pending)
            seq += 1
            sock.send(_message(NFQNL_MSG_VERDICT, queue,
                               _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id)), seq))


if __name__ == "__main__":
    queue_num, delay, jitter, seed_value = sys.argv[1:5]
    run(int(queue_num), float(delay), float(jitter), int(seed_value))
