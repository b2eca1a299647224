"""One process serving HTTP on many loopback ports for bench/probe/run.py.

Port i answers 503 when i % 10 == 0, waits 50 ms before a 200 when i % 10 == 1, and answers 200
at once otherwise. One extra port is reserved and closed, so probes of it are refused. Prints one JSON
line {"ports": [...], "closed_port": N, "event_loop": "uvloop"} once everything listens, then serves until
stdin closes. It serves on uvloop when importable: the server shares the machine's CPUs with the client
being measured, and the less it takes the more the figures measure the client.
"""
import asyncio
import json
import resource
import socket
import sys

try:
    import uvloop
except ImportError:
    uvloop = None

DELAY_SECONDS = 0.05
ANSWERS = {
    200: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    503: b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown",
}


class Answer(asyncio.Protocol):
    def __init__(self, code, delay):
        self.code, self.delay, self.buffer, self.transport = code, delay, b"", None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        if b"\r\n\r\n" in self.buffer:
            self.buffer = b""
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self.reply)
            else:
                self.reply()

    def reply(self):
        if not self.transport.is_closing():
            self.transport.write(ANSWERS[self.code])
            self.transport.close()


async def serve(count):
    loop = asyncio.get_running_loop()
    ports = []
    for index in range(count):
        code = 503 if index % 10 == 0 else 200
        delay = DELAY_SECONDS if index % 10 == 1 else 0
        server = await loop.create_server(lambda c=code, d=delay: Answer(c, d), "127.0.0.1", 0, backlog=1024)
        ports.append(server.sockets[0].getsockname()[1])
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    closed_port = reserved.getsockname()[1]
    reserved.close()
    print(json.dumps({"ports": ports, "closed_port": closed_port, "event_loop": "uvloop" if uvloop else "asyncio"}),
          flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


def main():
    count = int(sys.argv[1])
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < 2 * count + 64:
        sys.exit("loopback_server: %d ports and their connections need about %d open files, but the hard limit is %d; "
                 "raise it (ulimit -Hn, LimitNOFILE=) or serve fewer ports" % (count, 2 * count + 64, hard))
    loop = uvloop.new_event_loop() if uvloop else asyncio.new_event_loop()
    try:
        loop.run_until_complete(serve(count))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
