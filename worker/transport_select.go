package worker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/strand-ml/strand/coordinator"
	"github.com/strand-ml/strand/launcher/jobenv"
	"github.com/strand-ml/strand/rendezvous"
	"github.com/strand-ml/strand/transport"
	"github.com/strand-ml/strand/transport/hybrid"
	"github.com/strand-ml/strand/transport/rdma"
	"github.com/strand-ml/strand/transport/shm"
	"github.com/strand-ml/strand/transport/tcp"
)

// Transport selection. Every rank publishes its host identity
// (shm.HostID: kernel boot, pid and network namespace) in the job's store
// and reads everyone's, so all ranks derive the same routes:
//
//	--transport shm   shared memory between every pair; an error naming a
//	                  pair that cannot share memory
//	--transport auto  shared memory between ranks with the same identity,
//	                  RDMA (when every rank has a device) or TCP between
//	                  the others
//	--transport tcp | rdma   that transport between every pair

func hostKey(rank int) string { return "strand/host/" + strconv.Itoa(rank) }

// hostIDEnv, when set, replaces a rank's host identity: ranks with
// different values never use shared memory with each other (tests, and
// containers that share a kernel but should not share memory).
const hostIDEnv = "STRAND_HOST_ID"

// shareHosts publishes this rank's host identity (id, or shm.HostID when
// empty) and returns every rank's.
func shareHosts(ctx context.Context, store rendezvous.Store, id string, rank, world int) ([]string, error) {
	if id == "" {
		id = shm.HostID()
	}
	if id == "" {
		id = "unknown/" + strconv.Itoa(rank) // cannot tell: share with nobody
	}
	if err := store.Set(ctx, hostKey(rank), []byte(id)); err != nil {
		return nil, fmt.Errorf("publish host identity: %w", err)
	}
	hosts := make([]string, world)
	for r := range world {
		v, err := store.Get(ctx, hostKey(r))
		if err != nil {
			return nil, fmt.Errorf("host identity of rank %d: %w", r, err)
		}
		hosts[r] = string(v)
	}
	return hosts, nil
}

// dialTransport builds the world transport (see above) and records the
// route to each peer in rt.routes and a summary in rt.TransportName.
func (rt *Runtime) dialTransport(ctx context.Context, job jobenv.Job, adv string, log *zap.Logger) (transport.Transport, error) {
	// Keys and the TCP handshake's job id carry the epoch: a straggler of
	// an earlier incarnation cannot be mistaken for a peer of this one.
	store := rendezvous.Prefixed(rt.client.Store(), coordinator.EpochPrefix(job.Epoch))
	world := rt.Mesh.World()
	var local, remote []int
	if job.Transport == "shm" || job.Transport == "auto" {
		hosts, err := shareHosts(ctx, store, rt.hostID, rt.Rank, world)
		if err != nil {
			return nil, fmt.Errorf("--transport %s: %w", job.Transport, err)
		}
		rt.hosts = hosts
		for p, h := range hosts {
			switch {
			case p == rt.Rank:
			case h == hosts[rt.Rank]:
				local = append(local, p)
			default:
				remote = append(remote, p)
			}
		}
		if job.Transport == "shm" {
			for a := range hosts {
				for b := a + 1; b < world; b++ {
					if hosts[a] != hosts[b] {
						return nil, fmt.Errorf("--transport shm: ranks %d and %d cannot share memory (different host or kernel namespace: %s vs %s); use --transport auto", a, b, hosts[a], hosts[b])
					}
				}
			}
		}
	} else {
		for p := range world {
			if p != rt.Rank {
				remote = append(remote, p)
			}
		}
	}
	var routes []hybrid.Route
	if len(local) > 0 {
		t, err := shm.Dial(ctx, shm.Config{Rank: rt.Rank, Size: world, Store: store, Peers: local,
			JobID:  coordinator.TransportJobID(job.JobID, job.Epoch),
			Logger: slog.New(slog.NewTextHandler(transportLog{rt, log}, nil))})
		if err != nil {
			return nil, fmt.Errorf("shm transport: %w", err)
		}
		routes = append(routes, hybrid.Route{Name: "shm", Transport: t, Peers: local})
	}
	if len(remote) > 0 || len(local) == 0 {
		t, name, err := rt.dialNetwork(ctx, store, job, adv, log)
		if err != nil {
			for _, r := range routes {
				r.Transport.Close()
			}
			return nil, err
		}
		routes = append(routes, hybrid.Route{Name: name, Transport: t, Peers: remote})
	}
	rt.routes = make([]string, world)
	for _, r := range routes {
		for _, p := range r.Peers {
			rt.routes[p] = r.Name
		}
	}
	if len(routes) == 1 {
		rt.TransportName = routes[0].Name
		log.Info("transport", zap.String("pairs", rt.RouteSummary()))
		return routes[0].Transport, nil
	}
	h, err := hybrid.New(rt.Rank, world, routes...)
	if err != nil {
		for _, r := range routes {
			r.Transport.Close()
		}
		return nil, err
	}
	rt.TransportName = routes[0].Name + "+" + routes[1].Name
	log.Info("transport", zap.String("pairs", rt.RouteSummary()))
	return h, nil
}

// RouteOf names the transport this rank reaches peer through ("shm",
// "tcp", "rdma/<provider>"; "" for itself).
func (rt *Runtime) RouteOf(peer int) string {
	if peer < 0 || peer >= len(rt.routes) {
		return ""
	}
	return rt.routes[peer]
}

// RouteSummary lists this rank's peers by route, e.g.
// "rank 0: shm to [1 2 3], tcp to [4 5 6 7]".
func (rt *Runtime) RouteSummary() string {
	var names []string
	by := map[string][]int{}
	for p, n := range rt.routes {
		if p == rt.Rank || n == "" {
			continue
		}
		if _, ok := by[n]; !ok {
			names = append(names, n)
		}
		by[n] = append(by[n], p)
	}
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s to %v", n, by[n]))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("rank %d: no peers", rt.Rank)
	}
	return fmt.Sprintf("rank %d: %s", rt.Rank, strings.Join(parts, ", "))
}

// dialNetwork builds the between-hosts transport: RDMA when asked for and
// available (else TCP), TCP otherwise.
func (rt *Runtime) dialNetwork(ctx context.Context, store rendezvous.Store, job jobenv.Job, adv string, log *zap.Logger) (transport.Transport, string, error) {
	useRDMA := false
	switch job.Transport {
	case "rdma":
		// Asked for explicitly: a missing device is an error, not a silent
		// fallback that would hide a misconfigured cluster.
		if err := rdma.Available(job.RDMAProvider); err != nil {
			return nil, "", fmt.Errorf("--transport rdma: %w (use --transport auto or tcp to run without RDMA)", err)
		}
		useRDMA = true
		if dataTLS(job) {
			log.Warn("NOT ENCRYPTED: this job runs TLS but --transport rdma moves activations and gradients between hosts in the clear " +
				"(RDMA has no TLS); use --transport auto or tcp for an encrypted data path")
		}
	case "auto":
		if dataTLS(job) {
			// the job asked for encryption: RDMA cannot give it, so the
			// hosts talk TCP over TLS (--transport rdma overrides)
			log.Info("transport auto: the job runs TLS, so pairs on different hosts use tcp with TLS, not rdma (not encrypted)")
			break
		}
		// Every rank publishes whether it has a usable device, so all ranks
		// make the same choice: RDMA only when every pair can use it.
		missing, err := rdma.MissingDevices(ctx, store, rt.Rank, rt.Mesh.World(), job.RDMAProvider)
		if err != nil {
			return nil, "", fmt.Errorf("--transport auto: %w", err)
		}
		useRDMA = len(missing) == 0
		if useRDMA {
			log.Info("transport auto: every rank has an RDMA device; pairs on different hosts use rdma")
		} else {
			ranks := make([]int, 0, len(missing))
			for r := range missing {
				ranks = append(ranks, r)
			}
			slices.Sort(ranks)
			log.Info("transport auto: pairs on different hosts use tcp", zap.Ints("ranks_without_rdma", ranks), zap.String("reason", missing[ranks[0]]))
		}
	}
	if useRDMA {
		p, err := rdma.ProviderByName(job.RDMAProvider)
		if err != nil {
			return nil, "", fmt.Errorf("rdma transport: %w", err)
		}
		t, err := rdma.Dial(ctx, rdma.Config{Rank: rt.Rank, Size: rt.Mesh.World(), Store: store, Provider: p})
		if err != nil {
			return nil, "", fmt.Errorf("rdma transport (%s): %w", p.Name(), err)
		}
		return t, "rdma/" + p.Name(), nil
	}
	bind := job.Bind
	if bind == "" {
		bind = net.JoinHostPort(adv, "0")
	}
	slogger := slog.New(slog.NewTextHandler(transportLog{rt, log}, nil))
	cfg := tcp.Config{Rank: rt.Rank, Size: rt.Mesh.World(), Store: store, JobID: coordinator.TransportJobID(job.JobID, job.Epoch), Token: job.Token, Bind: bind, Logger: slogger}
	if dataTLS(job) {
		// A job with TLS (--tls-auto, or certificate files for the
		// coordinator) encrypts the data path too: mutual TLS with
		// certificates of the job CA every rank derives from the token,
		// on every socket that leaves the host (tcp/tls.go).
		var err error
		if cfg.TLS, err = coordinator.JobDataTLS(job.Token); err != nil {
			return nil, "", fmt.Errorf("tcp transport TLS: %w", err)
		}
	}
	t, err := tcp.Dial(ctx, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("tcp transport: %w", err)
	}
	if peers := t.TLSPeers(); len(peers) > 0 {
		log.Info("tcp transport: TLS to the ranks on other hosts (job CA)", zap.String("listen", t.Addr().String()), zap.Ints("peers", peers))
	} else {
		log.Info("tcp transport", zap.String("listen", t.Addr().String()))
	}
	return t, "tcp", nil
}

// dataTLS says whether the job runs TLS, so its data transport must too:
// the workers were given the CA to trust the coordinator with, or host
// the coordinator's certificate.
func dataTLS(job jobenv.Job) bool { return job.TLSCA != "" || job.TLSCert != "" }

// nodeLabels labels the given ranks by host for collective.Options.Nodes,
// or nil when hosts were not exchanged (--transport tcp or rdma: no
// shared memory, so no hierarchy to exploit).
func (rt *Runtime) nodeLabels(ranks []int) []string {
	if rt.hosts == nil {
		return nil
	}
	out := make([]string, len(ranks))
	for i, r := range ranks {
		out[i] = rt.hosts[r]
	}
	return out
}
