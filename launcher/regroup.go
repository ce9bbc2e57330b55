package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strand-ml/strand/coordinator"
	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/mesh"
)

// Regrouping after a failed epoch (docs/ELASTIC.md):
//
//  1. Node 0 serves a regroup coordinator for the new epoch on the job's
//     coordinator port (store only; Join is refused as Unavailable).
//  2. Every other node whose launcher survived registers there under
//     "regroup/node/<old node rank>" and waits for "regroup/plan".
//  3. Node 0 waits until every node registered or the rejoin timeout
//     passed, then publishes the plan: the surviving nodes in their old
//     order (node 0 stays node 0 and keeps the coordinator), the new node
//     count and the mesh (same TP and PP; DP shrinks with the world). With
//     fewer than MinNodes nodes the plan carries the error instead.
//  4. Each node acknowledges ("regroup/ack/<old rank>"); node 0 closes the
//     regroup coordinator once all have (bounded), and every node launches
//     its workers for the new epoch, which resume from the last checkpoint.
//
// Calls from another epoch are refused by the coordinator, so a node that
// is still at the previous epoch can neither register nor read the plan.

// RegroupConfig describes the nodes of a failed epoch regrouping for the
// next one.
type RegroupConfig struct {
	// NNodes and NodeRank are the failed epoch's node count and this node's
	// rank in it.
	NNodes, NodeRank int
	// MinNodes is the fewest nodes to continue with; 0 means NNodes.
	MinNodes     int
	NProcPerNode int
	// Coordinator is node 0's HOST:PORT, as for Node.
	Coordinator string
	// Mesh is the failed epoch's mesh; TP and PP are kept.
	Mesh mesh.Mesh
	// Timeout is how long node 0 waits for the other nodes (default 30 s).
	// Other nodes wait for node 0's plan up to Timeout + 1 minute.
	Timeout time.Duration
	// Common.Epoch is the new epoch; Token, TLS and Log as for Node.
	Common
}

// Plan is the new epoch's layout, decided by node 0 and read by all.
type Plan struct {
	Epoch  int64 `json:"epoch"`
	NNodes int   `json:"nnodes"`
	// DP, TP and PP are the new mesh (world = NNodes x processes per node).
	DP int `json:"dp"`
	TP int `json:"tp"`
	PP int `json:"pp"`
	// Nodes lists the old node ranks of the new epoch's nodes: Nodes[i]
	// becomes node i.
	Nodes []int `json:"nodes"`
	// Missing lists the old node ranks that did not come back.
	Missing []int `json:"missing,omitempty"`
	// Error, when set, means the job cannot continue (too few nodes).
	Error string `json:"error,omitempty"`
}

// Mesh is the plan's mesh.
func (p Plan) Mesh() mesh.Mesh { return mesh.Mesh{DP: p.DP, TP: p.TP, PP: p.PP} }

// NodeRankOf returns the new node rank of the node that had rank old, or
// -1 when it is not part of the new epoch.
func (p Plan) NodeRankOf(old int) int { return slices.Index(p.Nodes, old) }

const (
	regroupNodeKey = "regroup/node/"
	regroupAckKey  = "regroup/ack/"
	regroupPlanKey = "regroup/plan"
	// ackWait bounds how long node 0 waits for the nodes to confirm they
	// read the plan before it replaces the regroup coordinator.
	ackWait = 10 * time.Second
)

// Regroup runs this node's part of the regrouping and returns the plan of
// the new epoch. It fails when fewer than MinNodes nodes came back (naming
// the missing ones), when this node is not part of the plan, or when node 0
// cannot be reached.
func Regroup(ctx context.Context, cfg RegroupConfig) (Plan, error) {
	if cfg.NNodes < 1 || cfg.NodeRank < 0 || cfg.NodeRank >= cfg.NNodes {
		return Plan{}, fmt.Errorf("regroup: node rank %d outside %d nodes", cfg.NodeRank, cfg.NNodes)
	}
	if cfg.MinNodes == 0 {
		cfg.MinNodes = cfg.NNodes
	}
	if cfg.MinNodes < 1 || cfg.MinNodes > cfg.NNodes {
		return Plan{}, fmt.Errorf("regroup: --min-nodes %d outside 1..%d", cfg.MinNodes, cfg.NNodes)
	}
	if cfg.NProcPerNode < 1 {
		return Plan{}, fmt.Errorf("regroup: %d processes per node", cfg.NProcPerNode)
	}
	if cfg.Token == "" {
		cfg.Token = os.Getenv("STRAND_TOKEN")
	}
	if cfg.Token == "" {
		return Plan{}, errors.New("regroup: a multi-node job needs a token")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	cleanTLS, _, err := cfg.jobTLS(cfg.NodeRank, cfg.Coordinator)
	if err != nil {
		return Plan{}, err
	}
	defer cleanTLS()
	if cfg.TLSCA == "" {
		cfg.TLSCA = cfg.TLSCert
	}
	if cfg.NodeRank == 0 {
		return regroupLead(ctx, cfg)
	}
	return regroupFollow(ctx, cfg)
}

// regroupLead is node 0's side: serve, wait, decide, publish.
func regroupLead(ctx context.Context, cfg RegroupConfig) (Plan, error) {
	_, port, err := net.SplitHostPort(cfg.Coordinator)
	if err != nil {
		return Plan{}, fmt.Errorf("regroup: --coordinator %q: %w", cfg.Coordinator, err)
	}
	adv, err := AdvertiseIP(cfg.Coordinator)
	if err != nil {
		return Plan{}, fmt.Errorf("regroup: %w", err)
	}
	jobID := cfg.JobID
	if jobID == "" {
		jobID = "strand"
	}
	srv, err := coordinator.Start(coordinator.Config{
		Addr: net.JoinHostPort("0.0.0.0", port), Mesh: mesh.Mesh{DP: cfg.NNodes, TP: 1, PP: 1}, Token: cfg.Token,
		JobID: jobID + "-regroup", Epoch: cfg.Epoch, Regroup: true, Gossip: coordinator.GossipConfig{Advertise: adv},
		Log: cfg.Log, CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey,
	})
	if err != nil {
		return Plan{}, fmt.Errorf("regroup: %w", err)
	}
	defer srv.Close()
	cfg.Log.Info("regrouping: waiting for the other nodes", zap.Int64("epoch", cfg.Epoch), zap.Int("nnodes", cfg.NNodes),
		zap.Int("min_nodes", cfg.MinNodes), zap.Duration("timeout", cfg.Timeout))

	deadline := time.Now().Add(cfg.Timeout)
	var back map[string][]byte
	for {
		back = srv.Values(regroupNodeKey)
		if len(back) >= cfg.NNodes-1 || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return Plan{}, fmt.Errorf("regroup: %w", context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
	plan := decide(cfg, back)
	raw, err := json.Marshal(plan)
	if err != nil {
		return Plan{}, fmt.Errorf("regroup: %w", err)
	}
	if _, err := srv.Set(ctx, &pb.SetRequest{Key: regroupPlanKey, Value: raw}); err != nil {
		return Plan{}, fmt.Errorf("regroup: publish plan: %w", err)
	}
	cfg.Log.Info("regroup plan", zap.Int64("epoch", plan.Epoch), zap.Ints("nodes", plan.Nodes), zap.Ints("missing", plan.Missing),
		zap.Stringer("mesh", plan.Mesh()), zap.String("error", plan.Error))
	// Every node, including the ones that will be told to stop, must read
	// the plan before the regroup coordinator goes away.
	ackBy := time.Now().Add(ackWait)
	for len(srv.Values(regroupAckKey)) < len(back) && time.Now().Before(ackBy) {
		select {
		case <-ctx.Done():
			return Plan{}, fmt.Errorf("regroup: %w", context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
	if plan.Error != "" {
		return plan, errors.New(plan.Error)
	}
	return plan, nil
}

// decide builds the plan from the registrations of the nodes that came
// back (keys regroupNodeKey + old node rank).
func decide(cfg RegroupConfig, back map[string][]byte) Plan {
	nodes := []int{0}
	for k := range back {
		r, err := strconv.Atoi(strings.TrimPrefix(k, regroupNodeKey))
		if err == nil && r > 0 && r < cfg.NNodes {
			nodes = append(nodes, r)
		}
	}
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	var missing []int
	for r := 0; r < cfg.NNodes; r++ {
		if !slices.Contains(nodes, r) {
			missing = append(missing, r)
		}
	}
	p := Plan{Epoch: cfg.Epoch, NNodes: len(nodes), Nodes: nodes, Missing: missing, TP: cfg.Mesh.TP, PP: cfg.Mesh.PP}
	if len(nodes) < cfg.MinNodes {
		p.Error = fmt.Sprintf("only %d of %d nodes came back within %v, fewer than --min-nodes %d; missing node(s) %s",
			len(nodes), cfg.NNodes, cfg.Timeout, cfg.MinNodes, joinInts(missing))
		return p
	}
	world := len(nodes) * cfg.NProcPerNode
	if tpp := cfg.Mesh.TP * cfg.Mesh.PP; tpp < 1 || world%tpp != 0 {
		p.Error = fmt.Sprintf("%d nodes x %d processes = %d ranks cannot hold tp %d x pp %d (missing node(s) %s)",
			len(nodes), cfg.NProcPerNode, world, cfg.Mesh.TP, cfg.Mesh.PP, joinInts(missing))
		return p
	}
	p.DP = world / (cfg.Mesh.TP * cfg.Mesh.PP)
	return p
}

// regroupFollow is the side of every node but 0: register, read the plan,
// acknowledge.
func regroupFollow(ctx context.Context, cfg RegroupConfig) (Plan, error) {
	c, err := coordinator.Dial(coordinator.ClientConfig{Addr: cfg.Coordinator, Token: cfg.Token, CAFile: cfg.TLSCA, Epoch: cfg.Epoch, Bound: true})
	if err != nil {
		return Plan{}, fmt.Errorf("regroup: %w", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout+time.Minute)
	defer cancel()
	me, _ := json.Marshal(map[string]any{"host": coordinator.Hostname(), "pid": os.Getpid()})
	key := regroupNodeKey + strconv.Itoa(cfg.NodeRank)
	cfg.Log.Info("regrouping: registering with node 0", zap.String("coordinator", cfg.Coordinator), zap.Int64("epoch", cfg.Epoch))
	// Node 0 may still be tearing down the failed epoch: its coordinator
	// is down or at the old epoch, both answered as Unavailable. Retry.
	for {
		_, err := c.RPC.Set(ctx, &pb.SetRequest{Key: key, Value: me})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return Plan{}, fmt.Errorf("regroup: register with node 0 at %s (epoch %d): %s", cfg.Coordinator, cfg.Epoch, status.Convert(err).Message())
		}
		select {
		case <-ctx.Done():
			return Plan{}, fmt.Errorf("regroup: node 0 at %s not regrouping for epoch %d: %s", cfg.Coordinator, cfg.Epoch, status.Convert(err).Message())
		case <-time.After(200 * time.Millisecond):
		}
	}
	raw, err := c.Store().Get(ctx, regroupPlanKey)
	if err != nil {
		return Plan{}, fmt.Errorf("regroup: wait for node 0's plan: %w", err)
	}
	var plan Plan
	if err := json.Unmarshal(raw, &plan); err != nil {
		return Plan{}, fmt.Errorf("regroup: node 0's plan: %w", err)
	}
	_ = c.Store().Set(ctx, regroupAckKey+strconv.Itoa(cfg.NodeRank), []byte("1"))
	if plan.Error != "" {
		return plan, errors.New(plan.Error)
	}
	if plan.NodeRankOf(cfg.NodeRank) < 0 {
		return plan, fmt.Errorf("regroup: node %d came back too late; epoch %d continues with nodes %s", cfg.NodeRank, plan.Epoch, joinInts(plan.Nodes))
	}
	return plan, nil
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
