package verbs

import "fmt"

// Status is a work completion status (enum ibv_wc_status).
type Status int

const (
	StatusSuccess        Status = 0
	StatusLocLenErr      Status = 1
	StatusLocQPOpErr     Status = 2
	StatusLocEECOpErr    Status = 3
	StatusLocProtErr     Status = 4
	StatusWRFlushErr     Status = 5
	StatusMWBindErr      Status = 6
	StatusBadRespErr     Status = 7
	StatusLocAccessErr   Status = 8
	StatusRemInvReqErr   Status = 9
	StatusRemAccessErr   Status = 10
	StatusRemOpErr       Status = 11
	StatusRetryExcErr    Status = 12
	StatusRNRRetryExcErr Status = 13
	StatusLocRDDViolErr  Status = 14
	StatusRemInvRDReqErr Status = 15
	StatusRemAbortErr    Status = 16
	StatusInvEECNErr     Status = 17
	StatusInvEECStateErr Status = 18
	StatusFatalErr       Status = 19
	StatusRespTimeoutErr Status = 20
	StatusGeneralErr     Status = 21
)

var statusNames = [...]string{
	"success", "local length error", "local QP operation error",
	"local EE context operation error", "local protection error",
	"work request flushed error", "memory window bind error",
	"bad response error", "local access error",
	"remote invalid request error", "remote access error",
	"remote operation error", "transport retry counter exceeded",
	"RNR retry counter exceeded", "local RDD violation error",
	"remote invalid RD request", "aborted error", "invalid EE context number",
	"invalid EE context state", "fatal error", "response timeout error",
	"general error",
}

// String is the text ibv_wc_status_str gives.
func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("unknown status %d", int(s))
}

// WCError is a failed work completion turned into an error.
type WCError struct {
	Status Status
	Opcode string // what the work request was ("RDMA write with immediate", "receive")
	QPN    uint32
}

func (e *WCError) Error() string {
	return fmt.Sprintf("%s on QP %d: completion status %s (%d)", e.Opcode, e.QPN, e.Status, int(e.Status))
}
