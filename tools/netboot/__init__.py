"""A real netboot on this host: kernel and ramdisk build, namespaces, QEMU node.

Shared by the end-to-end tests (tests/test_netboot_e2e.py) and ``make demo``.
"""
