package tcp

import (
	"fmt"
	"net"
	"strings"
)

// ResolveBind turns a bind spec into a "host:port" listen address.
//
//	"10.0.0.5:7000", "127.0.0.1:0", "[::1]:0"   used as given
//	"10.0.0.0/8", "127.0.0.0/8"                 the first local address in the network, port 0
//	"eth0", "lo"                                the interface's first IPv4 (else IPv6) address, port 0
//
// An interface name or CIDR may carry a port: "eth0:7000", "10.0.0.0/8:7000".
// There is no default: on a machine with several networks, guessing the
// wrong one is how jobs end up talking over the management network.
func ResolveBind(spec string) (string, error) {
	if spec == "" {
		return "", fmt.Errorf("tcp bind: empty spec; give host:port, a CIDR (10.0.0.0/8) or an interface name (eth0)")
	}
	base, port := spec, "0"
	if i := strings.LastIndex(spec, ":"); i >= 0 && !strings.HasSuffix(spec, "]") {
		if host, p, err := net.SplitHostPort(spec); err == nil {
			if ip := net.ParseIP(host); ip != nil || host == "" {
				return spec, nil // plain host:port
			}
			base, port = host, p
		}
	}
	if _, ipnet, err := net.ParseCIDR(base); err == nil {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return "", fmt.Errorf("tcp bind %q: list addresses: %w", spec, err)
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipnet.Contains(ipn.IP) {
				return net.JoinHostPort(ipn.IP.String(), port), nil
			}
		}
		return "", fmt.Errorf("tcp bind %q: no local address in %s", spec, ipnet)
	}
	if ip := net.ParseIP(base); ip != nil {
		return net.JoinHostPort(ip.String(), port), nil
	}
	ifc, err := net.InterfaceByName(base)
	if err != nil {
		return "", fmt.Errorf("tcp bind %q: not host:port, CIDR or interface: %w", spec, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return "", fmt.Errorf("tcp bind %q: addresses of %s: %w", spec, base, err)
	}
	var v6 net.IP
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		if ipn.IP.To4() != nil {
			return net.JoinHostPort(ipn.IP.String(), port), nil
		}
		if v6 == nil {
			v6 = ipn.IP
		}
	}
	if v6 != nil {
		return net.JoinHostPort(v6.String(), port), nil
	}
	return "", fmt.Errorf("tcp bind %q: interface %s has no usable address", spec, base)
}
