//go:build rdma && cgo

package ibverbs

import (
	"errors"
	"testing"

	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// On a machine without RDMA devices (CI, this project's build machine) the
// provider must say "no RDMA device", not crash. With devices, it lists and
// opens them and reports port 1.
func TestDevicesOrNoDevice(t *testing.T) {
	p := New()
	names, err := p.Devices()
	if err != nil {
		if !errors.Is(err, verbs.ErrNoDevice) {
			t.Fatalf("Devices() error %v does not wrap ErrNoDevice", err)
		}
		if _, oerr := p.Open(""); !errors.Is(oerr, verbs.ErrNoDevice) {
			t.Fatalf("Open(\"\") on a machine without devices: %v, want ErrNoDevice", oerr)
		}
		t.Logf("no device: %v", err)
		return
	}
	if len(names) == 0 {
		t.Fatal("Devices() returned no names and no error")
	}
	dev, err := p.Open(names[0])
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	attr, err := dev.QueryPort(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s port 1: %+v", names[0], attr)
	if _, err := p.Open("no-such-device"); !errors.Is(err, verbs.ErrNoDevice) {
		t.Fatalf("Open(no-such-device) = %v, want ErrNoDevice", err)
	}
}

// The verbs package mirrors libibverbs' enums by value; check every one
// the transport relies on against the real header.
func TestConstantsMatchVerbsH(t *testing.T) {
	for _, m := range constantMismatches() {
		t.Error(m)
	}
}
