package coordinator

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/mesh"
)

func dialEpoch(t *testing.T, addr string, epoch int64) *Client {
	t.Helper()
	c, err := Dial(ClientConfig{Addr: addr, Token: testToken, ConnectTimeout: 500 * time.Millisecond, Epoch: epoch, Bound: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEpochRefusesOtherEpochs: a coordinator of epoch 2 refuses joins and
// store writes from epoch 1 with a clear, final error, tells an epoch-3
// client to retry (Unavailable), and serves its own epoch.
func TestEpochRefusesOtherEpochs(t *testing.T) {
	s := startServer(t, mesh.Mesh{DP: 1, TP: 1, PP: 1}, func(c *Config) { c.Epoch = 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	old := dialEpoch(t, s.Addr(), 1)
	_, err := old.Join(ctx, &pb.JoinRequest{Host: "h", WantRank: -1})
	if err == nil || !strings.Contains(err.Error(), "epoch 1") || !strings.Contains(err.Error(), "epoch 2") {
		t.Fatalf("join from epoch 1: %v, want a refusal naming both epochs", err)
	}
	_, err = old.RPC.Set(ctx, &pb.SetRequest{Key: "k", Value: []byte("v")})
	if !IsStaleEpoch(err) {
		t.Fatalf("set from epoch 1: %v, want a stale-epoch refusal", err)
	}
	if len(s.Values("k")) != 0 {
		t.Fatal("a stale client's write reached the store")
	}

	newer := dialEpoch(t, s.Addr(), 3)
	_, err = newer.RPC.Set(ctx, &pb.SetRequest{Key: "k", Value: []byte("v")})
	if status.Code(err) != codes.Unavailable || IsStaleEpoch(err) {
		t.Fatalf("set from epoch 3: %v, want Unavailable (retry: this coordinator is the stale one)", err)
	}

	cur := dialEpoch(t, s.Addr(), 2)
	rep, err := cur.Join(ctx, &pb.JoinRequest{Host: "h", WantRank: -1})
	if err != nil {
		t.Fatalf("join from epoch 2: %v", err)
	}
	if rep.Epoch != 2 {
		t.Fatalf("join reply epoch %d, want 2", rep.Epoch)
	}
	// Tools without an epoch (strand status) still observe the job.
	st, err := dial(t, s.Addr(), testToken).Status(ctx)
	if err != nil || st.Epoch != 2 {
		t.Fatalf("status without an epoch: %v (epoch %v), want epoch 2", err, st.GetEpoch())
	}
}

// TestRegroupRefusesJoin: a regrouping coordinator serves the store but
// answers Join with Unavailable, so an early worker keeps retrying.
func TestRegroupRefusesJoin(t *testing.T) {
	s := startServer(t, mesh.Mesh{DP: 2, TP: 1, PP: 1}, func(c *Config) { c.Regroup = true; c.Epoch = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := dialEpoch(t, s.Addr(), 1)
	if err := c.Store().Set(ctx, "regroup/x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	_, err := c.RPC.Join(ctx, &pb.JoinRequest{Host: "h", WantRank: -1})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("join at a regrouping coordinator: %v, want Unavailable", err)
	}
	start := time.Now()
	_, err = c.Join(ctx, &pb.JoinRequest{Host: "h", WantRank: -1})
	if err == nil || !strings.Contains(err.Error(), "regrouping") || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("client join: %v after %v, want retries then an error naming the regroup", err, time.Since(start))
	}
}

func TestTransportJobID(t *testing.T) {
	if TransportJobID("strand", 0) != "strand" || TransportJobID("strand", 3) != "strand.e3" || EpochPrefix(3) != "epoch3/" {
		t.Fatal("epoch naming changed: old and new epochs must differ, epoch 0 stays compatible")
	}
}
