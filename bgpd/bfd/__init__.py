"""Bidirectional Forwarding Detection (RFC 5880 asynchronous mode, RFC 5881 single hop).

:mod:`.packet` reads and writes Control packets, :mod:`.session` is one session's state
machine (sans-IO: time passed in, packets and deadlines returned), :mod:`.engine` runs every
session with its sockets in a process of its own (so that nothing the daemon does delays a
packet), :mod:`.service` starts and watches that process for the daemon, :mod:`.messages` is
what the two tell each other, and :mod:`.link` decides which peers get a session and what a
session's news does to BGP.
"""
