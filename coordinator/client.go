package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	pb "github.com/strand-ml/strand/coordinator/proto"
	"github.com/strand-ml/strand/rendezvous"
)

// ClientConfig says how to reach a coordinator.
type ClientConfig struct {
	Addr  string // host:port
	Token string
	// CAFile enables TLS, trusting the coordinator certificates it signs.
	CAFile string
	// ServerName overrides the name checked in the coordinator's
	// certificate (default: the host of Addr).
	ServerName string
	// ConnectTimeout bounds how long Join keeps retrying a coordinator that
	// is not up yet; default 60 s.
	ConnectTimeout time.Duration
	// Epoch is the job incarnation this client belongs to. Workers and
	// launchers set Bound, and then it is sent with every call and the
	// coordinator refuses calls from another epoch; observers such as
	// `strand status` leave Bound false and talk to whichever epoch runs.
	Epoch int64
	Bound bool
}

// Client talks to a coordinator. RPC gives direct access to every call;
// the methods add retries, deadlines and clearer errors.
type Client struct {
	cfg  ClientConfig
	conn *grpc.ClientConn
	RPC  pb.CoordinatorClient
}

// tokenCreds attaches the job token to every call.
type tokenCreds struct {
	token  string
	epoch  int64
	bound  bool
	secure bool
}

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	md := map[string]string{"authorization": "Bearer " + t.token}
	if t.bound {
		md[EpochHeader] = strconv.FormatInt(t.epoch, 10)
	}
	return md, nil
}
func (t tokenCreds) RequireTransportSecurity() bool { return t.secure }

// Dial returns a client for cfg.Addr. It does not connect yet: the first
// call does, and Join retries until the coordinator is up.
func Dial(cfg ClientConfig) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("coordinator address is empty")
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 60 * time.Second
	}
	transportCreds := insecure.NewCredentials()
	if cfg.CAFile != "" {
		c, err := credentials.NewClientTLSFromFile(cfg.CAFile, cfg.ServerName)
		if err != nil {
			return nil, fmt.Errorf("coordinator TLS: %w", err)
		}
		transportCreds = c
	}
	conn, err := grpc.NewClient(cfg.Addr,
		grpc.WithTransportCredentials(transportCreds),
		// Pings notice a coordinator that vanished without closing the
		// connection (host down, network split) in about 10 s.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 5 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		grpc.WithPerRPCCredentials(tokenCreds{token: cfg.Token, epoch: cfg.Epoch, bound: cfg.Bound, secure: cfg.CAFile != ""}))
	if err != nil {
		return nil, fmt.Errorf("coordinator %s: %w", cfg.Addr, err)
	}
	return &Client{cfg: cfg, conn: conn, RPC: pb.NewCoordinatorClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Addr is the coordinator's address.
func (c *Client) Addr() string { return c.cfg.Addr }

// Join joins the job, retrying with exponential backoff (100 ms doubling to
// 2 s) while the coordinator is unreachable, for at most ConnectTimeout.
// It then blocks until the whole world has joined.
func (c *Client) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinReply, error) {
	deadline := time.Now().Add(c.cfg.ConnectTimeout)
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rep, err := c.RPC.Join(ctx, req)
		if err == nil {
			return rep, nil
		}
		switch status.Code(err) {
		case codes.Unavailable:
		case codes.Unauthenticated:
			return nil, fmt.Errorf("coordinator %s refused us: wrong job token (%s)", c.cfg.Addr, status.Convert(err).Message())
		default:
			return nil, fmt.Errorf("join coordinator %s: %s", c.cfg.Addr, status.Convert(err).Message())
		}
		if time.Now().Add(backoff).After(deadline) {
			return nil, fmt.Errorf("coordinator %s not reachable after %v (%d attempts): %s", c.cfg.Addr, c.cfg.ConnectTimeout, attempt, status.Convert(err).Message())
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, fmt.Errorf("join coordinator %s: %w (last error: %s)", c.cfg.Addr, ctx.Err(), status.Convert(err).Message())
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Barrier blocks until every rank has entered the barrier called name.
func (c *Client) Barrier(ctx context.Context, name string, rank int) error {
	_, err := c.RPC.Barrier(ctx, &pb.BarrierRequest{Name: name, Rank: int32(rank)})
	if err != nil {
		return fmt.Errorf("coordinator barrier: %s", status.Convert(err).Message())
	}
	return nil
}

// Status fetches the job's status.
func (c *Client) Status(ctx context.Context) (*pb.StatusReply, error) {
	rep, err := c.RPC.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		if status.Code(err) == codes.Unauthenticated {
			return nil, fmt.Errorf("coordinator %s refused us: wrong job token", c.cfg.Addr)
		}
		return nil, fmt.Errorf("coordinator %s status: %s", c.cfg.Addr, status.Convert(err).Message())
	}
	return rep, nil
}

// Store returns the coordinator's key-value store as a rendezvous.Store.
func (c *Client) Store() rendezvous.Store { return store{c} }

type store struct{ c *Client }

// Set implements rendezvous.Store.
func (s store) Set(ctx context.Context, key string, value []byte) error {
	if _, err := s.c.RPC.Set(ctx, &pb.SetRequest{Key: key, Value: value}); err != nil {
		return fmt.Errorf("rendezvous set %q: %s", key, status.Convert(err).Message())
	}
	return nil
}

// Get implements rendezvous.Store: it waits until key is set or ctx ends.
func (s store) Get(ctx context.Context, key string) ([]byte, error) {
	rep, err := s.c.RPC.Get(ctx, &pb.GetRequest{Key: key, Wait: true})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("rendezvous get %q: %w", key, ctx.Err())
		}
		return nil, fmt.Errorf("rendezvous get %q: %s", key, status.Convert(err).Message())
	}
	return rep.Value, nil
}
