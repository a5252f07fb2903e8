#!/bin/sh
# /init of the netboot demo and test ramdisk (busybox): what a real node's
# installer ramdisk does under heckle-appliance. Bring the NIC up (e1000 or
# virtio-net), fetch the flunky agent from the appliance named by
# flunky=<url> on the kernel command line, run the image's rendered install
# script with it, then reboot into the next netboot (whose bootconfig leaves
# the network boot). A failed install powers the node off instead: it must
# not look installed.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp
exec </dev/console >/dev/console 2>&1

stop() {
    echo "ramdisk: $1"
    sync
    $2 -f
}

while read -r module; do
    insmod "/lib/modules/$module.ko" || stop "cannot load $module" poweroff
done < /lib/modules/order
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -f -q -n -t 10 -T 2 -s /bin/udhcpc.script || stop "no DHCP lease" poweroff

server=
read -r cmdline < /proc/cmdline
set -f  # words of the command line, not file patterns
for word in $cmdline; do
    case $word in flunky=*) server=${word#flunky=} ;; esac
done
set +f
[ -n "$server" ] || stop "no flunky=<url> on the kernel command line" poweroff
wget -q -O /bin/flunky "$server/flunky.sh" || stop "cannot fetch $server/flunky.sh" poweroff
chmod 755 /bin/flunky
echo "ramdisk: running the install script from $server"
sh /bin/flunky -x install
status=$?
[ "$status" = 0 ] && stop "install done, rebooting" reboot
stop "install failed (status $status), powering off" poweroff
