#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH: busybox udhcpc, its event script (addresses,
# routes, /run/resolv.conf), and /bin/dhcp to run it on every interface.
set -euo pipefail
. ../lib/busybox.sh
install_busybox sh udhcpc ip ifconfig route cat ls sleep echo mv rm
mkdir -p "$ROOTFS/usr/share/udhcpc"
cat > "$ROOTFS/usr/share/udhcpc/default.script" <<'SH'
#!/bin/sh
# udhcpc events: configure the interface, the default route and DNS.
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && { ip route del default 2>/dev/null; ip route add default via "${router%% *}" dev "$interface"; }
    : > /run/resolv.conf.new
    [ -n "$domain" ] && echo "search $domain" >> /run/resolv.conf.new
    for d in $dns; do echo "nameserver $d" >> /run/resolv.conf.new; done
    mv /run/resolv.conf.new /run/resolv.conf
    echo "dhcp: $interface $ip via ${router:-none}" ;;
esac
exit 0
SH
chmod 0755 "$ROOTFS/usr/share/udhcpc/default.script"
cat > "$ROOTFS/bin/dhcp" <<'SH'
#!/bin/sh
# One lease for each interface but lo (default), or keep leases (--daemon).
# The script is named: Debian's busybox looks in /etc/udhcpc by default.
script="-s /usr/share/udhcpc/default.script"
mode="-q -n -t 5 $script"
[ "$1" = --daemon ] && mode="-f $script"
status=1
found=
for i in /sys/class/net/*; do
  i=${i##*/}
  [ "$i" = lo ] && continue
  found=1
  ip link set "$i" up
  if [ "$1" = --daemon ]; then udhcpc $mode -i "$i" & else udhcpc $mode -i "$i" && status=0; fi
done
[ -n "$found" ] || echo "dhcp: no network interface but lo"
[ "$1" = --daemon ] && wait
[ $status = 0 ] || echo "dhcp: no lease"
exit $status
SH
chmod 0755 "$ROOTFS/bin/dhcp"
