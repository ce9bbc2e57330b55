package coordinator

import (
	"context"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Every (re)start of a job is an epoch: epoch 0 is the first launch, and
// each elastic restart increments it. Clients send their epoch with every
// call (gRPC metadata EpochHeader) and the coordinator refuses calls from
// any other epoch, so a straggler of a torn-down incarnation can neither
// join nor write into the store of the new one. Store keys (EpochPrefix)
// and the transports' job id (TransportJobID) carry the epoch as well, so
// the data plane refuses old peers too.

// EpochHeader is the gRPC metadata key carrying the caller's epoch. Calls
// without it (`strand status`, external tools) are accepted: they only
// observe or abort the job that is running now.
const EpochHeader = "strand-epoch"

// EpochPrefix is the prefix a worker puts before its rendezvous store keys
// in epoch e: "epoch3/".
func EpochPrefix(e int64) string { return "epoch" + strconv.FormatInt(e, 10) + "/" }

// TransportJobID is the job id the data-plane transports of epoch e use in
// their handshakes ("strand.e3"): peers of different epochs refuse each
// other. Epoch 0 keeps the bare job id.
func TransportJobID(jobID string, e int64) string {
	if e == 0 {
		return jobID
	}
	return jobID + ".e" + strconv.FormatInt(e, 10)
}

// checkEpoch refuses a call made by a client of another epoch. A caller
// from an older epoch gets FailedPrecondition (final: it belongs to a job
// incarnation that is over); one from a newer epoch gets Unavailable, as
// if the coordinator were not up yet, because this coordinator is the
// stale one and is about to be replaced: the client's retries reach the
// new one.
func (s *Server) checkEpoch(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(EpochHeader)
	if len(vals) == 0 {
		return nil
	}
	e, err := strconv.ParseInt(vals[0], 10, 64)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "bad %s header %q", EpochHeader, vals[0])
	}
	return epochError(e, s.cfg.Epoch)
}

// epochError is nil when the epochs match, else the status error to send
// a caller at epoch caller talking to a coordinator at epoch ours.
func epochError(caller, ours int64) error {
	switch {
	case caller == ours:
		return nil
	case caller < ours:
		return status.Errorf(codes.FailedPrecondition,
			"stale epoch: caller is in epoch %d, but the job restarted and is in epoch %d; a process of an earlier incarnation cannot take part", caller, ours)
	default:
		return status.Errorf(codes.Unavailable,
			"coordinator still serves epoch %d, caller is in epoch %d (the restart has not reached this coordinator yet)", ours, caller)
	}
}

// IsStaleEpoch reports whether err is the coordinator refusing a caller
// from an earlier epoch.
func IsStaleEpoch(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.FailedPrecondition && strings.HasPrefix(st.Message(), "stale epoch")
}
