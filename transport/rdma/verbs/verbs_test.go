package verbs

import (
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	cases := []struct{ got, want string }{
		{StatusRemAccessErr.String(), "remote access error"},
		{StatusRNRRetryExcErr.String(), "RNR retry counter exceeded"},
		{StatusGeneralErr.String(), "general error"},
		{Status(99).String(), "unknown status 99"},
		{QPRTS.String(), "RTS"},
		{QPState(42).String(), "QPState(42)"},
		{OpRDMAWriteWithImm.String(), "RDMA write with immediate"},
		{WCRecvRDMAWithImm.String(), "receive of RDMA write with immediate"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	e := (&WCError{Status: StatusRetryExcErr, Opcode: "send", QPN: 7}).Error()
	if !strings.Contains(e, "send on QP 7") || !strings.Contains(e, "transport retry counter exceeded (12)") {
		t.Errorf("WCError text %q", e)
	}
}

func TestMTUBytes(t *testing.T) {
	want := map[MTU]int{MTU256: 256, MTU512: 512, MTU1024: 1024, MTU2048: 2048, MTU4096: 4096, 0: 0, 6: 0}
	for m, b := range want {
		if m.Bytes() != b {
			t.Errorf("MTU %d: %d bytes, want %d", m, m.Bytes(), b)
		}
	}
}
