"""Bidirectional Forwarding Detection (RFC 5880 asynchronous mode, RFC 5881 single hop).

:mod:`.packet` reads and writes Control packets, :mod:`.session` is one session's state
machine (sans-IO: time passed in, packets and deadlines returned), :mod:`.service` is the IO
shell that runs every session on its own thread, so that a busy event loop never delays a
packet.
"""
