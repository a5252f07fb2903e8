"""proxyDHCP adapter: answers PXE firmware and iPXE with a boot file, never
with an address, beside the site's own DHCP server (PXE 2.1 proxyDHCP)."""
