package jobenv

import (
	"net"
	"os"
	"testing"
)

func TestAdvertiseIP(t *testing.T) {
	ip, err := AdvertiseIP("127.0.0.1:9")
	if err != nil || ip != "127.0.0.1" {
		t.Fatalf("loopback coordinator: %q %v", ip, err)
	}
	// A host name that routes through loopback (Debian maps the own name
	// to 127.0.1.1) must not be advertised to other nodes when a real
	// interface exists.
	ip, err = AdvertiseIP("localhost:9")
	if err != nil || !net.ParseIP(ip).IsLoopback() {
		t.Fatalf("localhost: %q %v", ip, err)
	}
	host, _ := os.Hostname()
	addrs, _ := net.LookupIP(host)
	alt := firstNonLoopback()
	if len(addrs) == 0 || !addrs[0].IsLoopback() || alt == nil {
		t.Logf("%s resolves to %v; the loopback-name case cannot be shown here", host, addrs)
	} else if ip, err = AdvertiseIP(net.JoinHostPort(host, "9")); err != nil || ip != alt.String() {
		t.Fatalf("own name %s (-> %v): got %q %v, want %v", host, addrs, ip, err, alt)
	}
	if _, err := AdvertiseIP("no-such-host.invalid:1"); err == nil {
		t.Fatal("unresolvable coordinator accepted")
	}
}
