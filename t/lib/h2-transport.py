#!/usr/bin/python3
# The HTTP/2 transport of the harness's SSE clients (WsAgent::Sse, option
# "h2=NAME"): one HTTP/2 connection (cleartext, prior knowledge) to
# 127.0.0.1:PORT, many streams on it, driven by Debian's python3-h2.  It
# only carries: the Perl client of each stream parses the event stream,
# records it and decides when to drop and resume.
#
#   h2-transport.py PORT [WINDOW]     WINDOW: the streams' initial window
#                                     (256k); the connection's is 16M
#
# Lines in (stdin) and out (stdout), tab-separated, each field escaped as
# WsAgent::Sse::esc does (\\ \t \n \r):
#   in   open NAME PATH [HEADER VALUE]...   a new stream for client NAME
#        reset NAME                         RST_STREAM (CANCEL) of its stream
#        slow NAME 1|0                      stop / go on giving its stream
#                                           window (the connection's is
#                                           always given back)
#   out  status NAME CODE | header NAME FIELD VALUE | data NAME BYTES
#        | end NAME eof|reset CODE|error TEXT
# It exits when stdin closes or the connection ends (every open stream
# then ends "error: ...").

import os
import re
import select
import socket
import sys

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings

ESC = {b"\\": b"\\\\", b"\t": b"\\t", b"\n": b"\\n", b"\r": b"\\r"}
SPECIAL = re.compile(rb"[\\\t\n\r]")
CONN_WINDOW = 16 * 1024 * 1024
UNESC = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def esc(data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return SPECIAL.sub(lambda m: ESC[m.group()], data)


def unesc(text):
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in UNESC:
            out.append(UNESC[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


class Transport:
    def __init__(self, port, window):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        cfg = h2.config.H2Configuration(client_side=True,
                                        header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        # windows as a browser's, if smaller (Chromium: 6M a stream, 15M
        # the connection): nginx's default 64k for the connection, shared
        # by every stream, would make one slow read stall them all
        self.conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE:
                            window or 262144})
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONN_WINDOW - 65535)
        self.by_stream = {}     # stream id -> client name
        self.stream_of = {}     # client name -> its open stream id
        self.slow = set()       # names whose stream gets no window back
        self.held = {}          # stream id -> window held back from it
        self.out = []
        self.wbuf = b""
        self.inbuf = b""

    def say(self, *fields):
        self.out.append(b"\t".join(esc(f) for f in fields) + b"\n")

    def flush(self):
        if self.out:
            os.write(1, b"".join(self.out))
            self.out = []
        self.wbuf += self.conn.data_to_send()
        while self.wbuf:
            try:
                n = self.sock.send(self.wbuf)
            except BlockingIOError:
                return
            self.wbuf = self.wbuf[n:]

    def command(self, line):
        f = [unesc(x) for x in line.split("\t")]
        if f[0] == "open":
            name, path = f[1], f[2]
            sid = self.conn.get_next_available_stream_id()
            headers = [(":method", "GET"), (":scheme", "http"),
                       (":authority", "localhost:%d" % self.port),
                       (":path", path)]
            extra = list(zip(f[3::2], f[4::2]))
            names = {k.lower() for k, _ in extra}
            for k, v in (("accept", "text/event-stream"),
                         ("cache-control", "no-cache")):
                if k not in names:
                    headers.append((k, v))
            headers += [(k.lower(), v) for k, v in extra]
            self.conn.send_headers(sid, headers, end_stream=True)
            self.by_stream[sid] = name
            self.stream_of[name] = sid
        elif f[0] == "reset":
            sid = self.stream_of.pop(f[1], None)
            if sid is not None:
                self.by_stream.pop(sid, None)
                self.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        elif f[0] == "slow":
            if f[2] == "1":
                self.slow.add(f[1])
            else:
                self.slow.discard(f[1])
                sid = self.stream_of.get(f[1])
                held = self.held.pop(sid, 0)
                # what it held back: the stream's window made whole again
                if held and sid in self.by_stream:
                    self.conn.increment_flow_control_window(held, sid)

    def event(self, ev):
        sid = getattr(ev, "stream_id", None)
        name = self.by_stream.get(sid)
        if isinstance(ev, h2.events.ResponseReceived) and name:
            for k, v in ev.headers:
                if k == ":status":
                    self.say("status", name, v)
            for k, v in ev.headers:
                if not k.startswith(":"):
                    self.say("header", name, k, v)
        elif isinstance(ev, h2.events.DataReceived):
            n = ev.flow_controlled_length
            if name:
                self.say("data", name, ev.data)
            if name in self.slow:
                # the connection's window back, the stream's held
                if n:
                    self.conn.increment_flow_control_window(n)
                    self.held[sid] = self.held.get(sid, 0) + n
            elif n:
                self.conn.acknowledge_received_data(n, sid)
        elif isinstance(ev, h2.events.StreamEnded) and name:
            self.say("end", name, "eof")
            self.close_stream(sid)
        elif isinstance(ev, h2.events.StreamReset) and name:
            self.say("end", name, "reset %d" % int(ev.error_code))
            self.close_stream(sid)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.end_all("error: GOAWAY %d" % int(ev.error_code))
            return False
        return True

    def close_stream(self, sid):
        name = self.by_stream.pop(sid, None)
        if name is not None and self.stream_of.get(name) == sid:
            del self.stream_of[name]

    def end_all(self, why):
        for sid, name in list(self.by_stream.items()):
            self.say("end", name, why)
        self.by_stream.clear()
        self.stream_of.clear()

    def run(self):
        self.flush()
        while True:
            want_w = [self.sock] if self.wbuf else []
            r, w, _ = select.select([0, self.sock], want_w, [], 0.5)
            if 0 in r:
                chunk = os.read(0, 65536)
                if not chunk:
                    return
                self.inbuf += chunk
                while b"\n" in self.inbuf:
                    line, self.inbuf = self.inbuf.split(b"\n", 1)
                    self.command(line.decode("utf-8", "surrogateescape"))
            if self.sock in r:
                try:
                    data = self.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError as e:
                    self.end_all("error: read: %s" % e)
                    self.flush()
                    return
                if data == b"":
                    self.end_all("error: connection closed")
                    self.flush()
                    return
                if data:
                    for ev in self.conn.receive_data(data):
                        if not self.event(ev):
                            self.flush()
                            return
            self.flush()


def main():
    port = int(sys.argv[1])
    window = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    try:
        t = Transport(port, window)
    except OSError as e:
        sys.stdout.write("fail\t-\tconnect: %s\n" % e)
        sys.stdout.flush()
        return
    t.run()


if __name__ == "__main__":
    main()
