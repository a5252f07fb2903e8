"""What a proxyDHCP reply holds and where it is sent.

A proxy reply names us as the boot server and carries the boot file, but no
address and no lease options: the site's DHCP server does that part.
"""

import socket

from .packets import UNSPECIFIED, encode_reply
from .policy import PXE_CLIENT

DHCP_SERVER_PORT, DHCP_CLIENT_PORT = 67, 68
BROADCAST = "255.255.255.255"

# PXE 2.1 vendor options (option 43). Discovery control bit 3: the offer
# already names the boot file, so download it without a menu or a boot-server
# discovery round on 4011.
PXE_DISCOVERY_CONTROL, USE_BOOT_FILE_IN_OFFER = 6, 0x08
PXE_BOOT_ITEM = 71
END = 255


def proxy_reply(request, message_type, server_ip, client_class, boot_file):
    options = [(53, bytes([message_type])), (54, socket.inet_aton(server_ip)),
               (60, client_class.encode())]
    if client_class == PXE_CLIENT:
        options.append((43, _vendor_options(request.options.get(43, b""))))
    machine_id = request.options.get(97)
    if machine_id is not None and len(machine_id) == 17 and machine_id[0] == 0:
        options.append((97, machine_id))
    options.append((67, boot_file.encode("ascii")))
    return encode_reply(request, server_ip, boot_file, options)


def _vendor_options(requested):
    """Our PXE vendor options; a boot item the client asked for (on 4011) is
    confirmed, as a PXE boot server does."""
    data = bytes([PXE_DISCOVERY_CONTROL, 1, USE_BOOT_FILE_IN_OFFER])
    item = _suboptions(requested).get(PXE_BOOT_ITEM)
    if item is not None and len(item) == 4:
        data += bytes([PXE_BOOT_ITEM, 4]) + item
    return data + bytes([END])


def _suboptions(data):
    found = {}
    while len(data) >= 2 and data[0] != END:
        code, length = data[0], data[1]
        if length + 2 > len(data):
            break
        found[code] = data[2:length + 2]
        data = data[length + 2:]
    return found


def destination(request, source):
    """Where the reply to ``request``, received from ``source``, goes.

    Through the relay when relayed; straight back when the client already
    has an address (REQUESTs to 4011); otherwise broadcast, since a client
    without an address cannot be reached by unicast without ARP tricks.
    """
    if request.giaddr != UNSPECIFIED:
        return request.giaddr, DHCP_SERVER_PORT
    if source[0] != UNSPECIFIED:
        return source
    if request.ciaddr != UNSPECIFIED:
        return request.ciaddr, DHCP_CLIENT_PORT
    return BROADCAST, DHCP_CLIENT_PORT
