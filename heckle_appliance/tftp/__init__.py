"""TFTP adapter: a read-only RFC 1350/2347/2348/2349/7440 server on the reactor.

``server`` listens for requests, ``source`` turns a filename into content
through the core, ``options`` negotiates, ``transfer`` sends one file from
its own port, ``packets`` is the wire codec.
"""
