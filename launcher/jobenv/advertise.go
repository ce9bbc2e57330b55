package jobenv

import (
	"fmt"
	"net"
)

// AdvertiseIP returns the local IP address that routes to addr
// ("host:port"): the address other nodes can reach this one at. No packet
// is sent (a UDP "connection" only picks a route).
//
// One trap is handled: Debian-style /etc/hosts map a node's own name to
// 127.0.1.1, so on the coordinator's node the route to "node0:29500" is
// loopback, which other nodes cannot use. When addr names a host (or a
// non-loopback IP) but the route is loopback, the first non-loopback IPv4
// address of an up interface is returned instead. Use --bind to choose
// explicitly on machines with several networks.
func AdvertiseIP(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", fmt.Errorf("find the local address that reaches %s: %w", addr, err)
	}
	defer c.Close()
	ip := c.LocalAddr().(*net.UDPAddr).IP
	host, _, _ := net.SplitHostPort(addr)
	if ip.IsLoopback() && !isLoopbackName(host) {
		if alt := firstNonLoopback(); alt != nil {
			return alt.String(), nil
		}
	}
	return ip.String(), nil
}

func isLoopbackName(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func firstNonLoopback() net.IP {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				return n.IP
			}
		}
	}
	return nil
}
