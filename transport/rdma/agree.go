package rdma

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/rendezvous"
)

// MissingDevices is how `--transport auto` decides consistently: every rank
// checks Available(provider) locally, publishes the answer under
// "rdma/avail/<rank>" in store, and reads everyone's. It returns the ranks
// that have no usable device (with their reasons), identical on every
// rank, so that either all ranks dial RDMA (missing is empty) or all fall
// back to TCP — a mixed choice would leave ranks waiting for each other.
// Every rank of the group must call it with the same store (prefixed per
// job epoch with rendezvous.Prefixed, as for Dial).
func MissingDevices(ctx context.Context, store rendezvous.Store, rank, size int, provider string) (missing map[int]string, err error) {
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("rdma: rank %d is not in a group of size %d", rank, size)
	}
	reason := ""
	if err := Available(provider); err != nil {
		reason = err.Error()
		if reason == "" {
			reason = "unavailable"
		}
	}
	if err := store.Set(ctx, availKey(rank), []byte(reason)); err != nil {
		return nil, fmt.Errorf("rdma: publish availability: %w", err)
	}
	missing = make(map[int]string)
	for r := range size {
		b, err := store.Get(ctx, availKey(r))
		if err != nil {
			return nil, fmt.Errorf("rdma: availability of rank %d: %w", r, err)
		}
		if len(b) > 0 {
			missing[r] = string(b)
		}
	}
	return missing, nil
}

func availKey(r int) string { return fmt.Sprintf("rdma/avail/%d", r) }
