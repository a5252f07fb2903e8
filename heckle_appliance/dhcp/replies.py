"""What a proxyDHCP reply holds and where it is sent.

A proxy reply names us as the boot server and carries the boot file (or,
with --boot-file-on-4011, a PXE offer leaves it to the 4011 ACK), but no
address and no lease options: the site's DHCP server does that part.
"""

import socket

from .packets import ACK, UNSPECIFIED, encode_reply
from .policy import PXE_CLIENT

DHCP_SERVER_PORT, DHCP_CLIENT_PORT = 67, 68
BROADCAST = "255.255.255.255"

# PXE 2.1 vendor options (option 43), sub-option numbers.
PXE_DISCOVERY_CONTROL, PXE_BOOT_SERVERS, PXE_BOOT_MENU, PXE_MENU_PROMPT = 6, 8, 9, 10
PXE_BOOT_ITEM = 71
END = 255
# Discovery control. Bit 3: the offer names the boot file, download it with
# no prompt, menu or boot-server discovery (iPXE and EDK2 obey it). Stacks
# that ignore it show the menu below instead; bits 0 and 1 then make them
# ask the boot server listed for the item (us, on 4011) by unicast, not by
# a broadcast to port 67 that we do not answer.
NO_BROADCAST_DISCOVERY, NO_MULTICAST_DISCOVERY, USE_BOOT_FILE_IN_OFFER = 0x01, 0x02, 0x08
DISCOVERY_CONTROL = NO_BROADCAST_DISCOVERY | NO_MULTICAST_DISCOVERY | USE_BOOT_FILE_IN_OFFER
# Our one boot item: a vendor-range server type (32768-65534), as dnsmasq's
# first pxe-service gets. Type 0 would mean "boot from local disk".
BOOT_SERVER_TYPE = 0x8000
MENU_ITEM = b"heckle-appliance network boot"
MENU_PROMPT = b"heckle-appliance"
MENU_TIMEOUT = 0  # seconds: 0 picks the first (only) item without prompting


def proxy_reply(request, message_type, server_ip, client_class, boot_file, with_file=True):
    """The reply datagram.

    Without ``with_file``, an offer names no boot file (no ``file``, no
    option 67) and has no option 43: what EDK2 calls a BINL offer, whose
    client asks the offer's server (us) on 4011, and our ACK carries the
    file. Any PXE vendor option would spoil that: EDK2 takes an offer with
    discovery options for a menu offer, finds no menu and stops; iPXE boots
    from a menu rather than ask.
    """
    options = [(53, bytes([message_type])), (54, socket.inet_aton(server_ip)),
               (60, client_class.encode())]
    if client_class == PXE_CLIENT and message_type == ACK:
        options.append((43, _boot_server_options(request.options.get(43, b""))))
    elif client_class == PXE_CLIENT and with_file:
        options.append((43, _offer_options(server_ip)))
    machine_id = request.options.get(97)
    if machine_id is not None and len(machine_id) == 17 and machine_id[0] == 0:
        options.append((97, machine_id))
    if with_file:
        options.append((67, boot_file.encode("ascii")))
    return encode_reply(request, server_ip, boot_file if with_file else "", options)


def _offer_options(server_ip):
    """PXE vendor options of a proxy offer: use the boot file in it, or,
    for a stack that ignores that, a one-item menu chosen at once whose
    boot server is us."""
    type_ = BOOT_SERVER_TYPE.to_bytes(2, "big")
    return _encode([
        (PXE_DISCOVERY_CONTROL, bytes([DISCOVERY_CONTROL])),
        (PXE_BOOT_SERVERS, type_ + bytes([1]) + socket.inet_aton(server_ip)),
        (PXE_BOOT_MENU, type_ + bytes([len(MENU_ITEM)]) + MENU_ITEM),
        (PXE_MENU_PROMPT, bytes([MENU_TIMEOUT]) + MENU_PROMPT),
    ])


def _boot_server_options(requested):
    """PXE vendor options of an ACK on 4011: the boot item the client asked
    for is confirmed, as a PXE boot server does."""
    suboptions = [(PXE_DISCOVERY_CONTROL, bytes([DISCOVERY_CONTROL]))]
    item = _suboptions(requested).get(PXE_BOOT_ITEM)
    if item is not None and len(item) == 4:
        suboptions.append((PXE_BOOT_ITEM, item))
    return _encode(suboptions)


def _encode(suboptions):
    return b"".join(bytes([code, len(value)]) + value for code, value in suboptions) + bytes([END])


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
