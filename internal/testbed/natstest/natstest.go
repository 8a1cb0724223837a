// Package natstest runs a real NATS server with JetStream for tests: the
// embedded nats-server/v2, listening on a free loopback port, storing in
// tb.TempDir(). It is the one helper every package's tests use.
package natstest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rcwatch/rcwatch/internal/testbed/freeport"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/pipeline"
)

// Server is a running embedded NATS server owned by a test.
type Server struct {
	*pipeline.Embedded
	Dir  string
	Port int
	URL  string
}

// Start runs a JetStream server for the test and stops it at cleanup.
func Start(tb testing.TB) *Server {
	tb.Helper()
	port, err := freeport.Get()
	require.NoError(tb, err)
	s := &Server{Dir: tb.TempDir(), Port: port}
	s.start(tb)
	tb.Cleanup(func() { s.Shutdown() })
	return s
}

func (s *Server) start(tb testing.TB) {
	tb.Helper()
	e, err := pipeline.StartEmbedded(pipeline.EmbeddedConfig{StoreDir: s.Dir, Port: s.Port, Name: "test"})
	require.NoError(tb, err)
	s.Embedded = e
	s.URL = e.ClientURL()
}

// Restart stops the server and starts it again on the same port and store.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Shutdown()
	s.start(tb)
}

// Connect opens a client over TCP (so it sees disconnects and reconnects),
// ensures the rcwatch streams and buckets, and closes at cleanup.
func (s *Server) Connect(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	return Connect(tb, s.URL)
}

// Connect is Server.Connect for any server (one a test runs with options
// of its own, a cluster).
func Connect(tb testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := pipeline.Connect(url, tb.Name(), zerolog.Nop())
	require.NoError(tb, err)
	tb.Cleanup(nc.Close)
	js, err := pipeline.JetStream(nc)
	require.NoError(tb, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(tb, pipeline.Ensure(ctx, js, pipeline.Topology{Replicas: 1, Storage: jetstream.FileStorage}))
	return nc, js
}

// Count returns how many messages stream holds now.
func Count(tb testing.TB, js jetstream.JetStream, stream string) int {
	tb.Helper()
	n, err := count(js, stream)
	require.NoError(tb, err)
	return n
}

func count(js jetstream.JetStream, stream string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("looking up stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading stream %s info: %w", stream, err)
	}
	return int(info.State.Msgs), nil
}

// reached polls the server's own count (there is no event to await) until
// stream holds at least want messages or timeout passes. A failed poll (a
// cluster electing a leader) counts as not yet.
func reached(js jetstream.JetStream, stream string, want int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if n, err := count(js, stream); err == nil && n >= want {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitCount waits until stream holds at least want messages and fails the
// test if it does not within timeout.
func WaitCount(tb testing.TB, js jetstream.JetStream, stream string, want int, timeout time.Duration) {
	tb.Helper()
	if !reached(js, stream, want, timeout) {
		n, err := count(js, stream)
		tb.Fatalf("stream %s never reached %d messages within %s (holds %d, %v)", stream, want, timeout, n, err)
	}
}

// StreamMessages reads every message of a stream in order (an ordered
// consumer), waiting up to timeout for at least want messages (it returns
// what is there after timeout: the caller checks the count).
func StreamMessages(tb testing.TB, js jetstream.JetStream, stream string, want int, timeout time.Duration) []jetstream.Msg {
	tb.Helper()
	reached(js, stream, want, timeout)
	return Messages(tb, js, stream)
}

// Messages reads every message stream holds now, in order. A read that fails
// (a cluster electing a leader after a node died answers "no responders" for a
// moment) is retried from the start for up to 60 s; only then does the test fail.
func Messages(tb testing.TB, js jetstream.JetStream, stream string) []jetstream.Msg {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := readAll(js, stream)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			require.NoError(tb, err, "reading stream %s", stream)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readAll(js jetstream.JetStream, stream string) ([]jetstream.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("looking up stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading stream %s info: %w", stream, err)
	}
	n := int(info.State.Msgs)
	if n == 0 {
		return nil, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("creating ordered consumer on %s: %w", stream, err)
	}
	out := make([]jetstream.Msg, 0, n)
	for len(out) < n {
		batch, err := c.Fetch(min(n-len(out), 500), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("fetching from %s: %w", stream, err)
		}
		for m := range batch.Messages() {
			out = append(out, m)
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("fetching from %s: %w", stream, err)
		}
	}
	return out, nil
}

// Publish stores data on subject with a Nats-Msg-Id (as the stages do) and
// waits for the stream's ack.
func Publish(tb testing.TB, js jetstream.JetStream, subject, id string, data []byte) {
	tb.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, id)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := js.PublishMsg(ctx, m)
	require.NoError(tb, err, "publishing to %s", subject)
}

// ConsumerInfo returns the state of stream's consumer durable.
func ConsumerInfo(tb testing.TB, js jetstream.JetStream, stream, durable string) *jetstream.ConsumerInfo {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, stream, durable)
	require.NoError(tb, err)
	info, err := c.Info(ctx)
	require.NoError(tb, err)
	return info
}

// BenchStage times a consumer stage over the b.N messages already in
// stream: it runs s, waits until the durable consumer has acknowledged them
// all (the consumer's state is only observable by asking), stops s, and
// reports events/s and the ALERTS messages per event.
func BenchStage(b *testing.B, js jetstream.JetStream, s pipeline.Stage, stream, durable string) {
	b.Helper()
	ctx := context.Background()
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.ResetTimer()
	go func() { done <- s.Run(rctx) }()
	for {
		c, err := js.Consumer(ctx, stream, durable)
		if err == nil {
			if info, err := c.Info(ctx); err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == uint64(b.N) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	stop()
	require.NoError(b, <-done)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	alerts, err := js.Stream(ctx, pipeline.StreamAlerts)
	require.NoError(b, err)
	ai, err := alerts.Info(ctx)
	require.NoError(b, err)
	b.ReportMetric(float64(ai.State.Msgs)/float64(b.N), "alerts/event")
}

// EnsureSmallRecentChange creates the pipeline's streams with RECENTCHANGE
// at the smallest byte limit allowed (pipeline.MinStreamBytes, 64 KiB), so
// a test fills it and makes retention remove messages with a few hundred.
func EnsureSmallRecentChange(ctx context.Context, tb testing.TB, js jetstream.JetStream) {
	tb.Helper()
	require.NoError(tb, pipeline.Ensure(ctx, js, pipeline.Topology{Replicas: 1, Storage: jetstream.FileStorage,
		Limits: map[string]pipeline.Limits{pipeline.StreamRecentChange: {MaxBytes: pipeline.MinStreamBytes}}}))
}

// WaitStream waits until stream exists (a process under test creates it as
// it starts) and fails the test if it does not within timeout.
func WaitStream(tb testing.TB, js jetstream.JetStream, stream string, timeout time.Duration) {
	tb.Helper()
	require.Eventually(tb, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.Stream(ctx, stream)
		return err == nil
	}, timeout, 50*time.Millisecond, "stream %s never created", stream)
}

// WaitConsumerDone waits until stream's consumer durable exists and has
// nothing pending and nothing waiting for an ack (a stage caught up). With
// durable "", it waits for every durable consumer of the stream (the
// stages'; a test's own readers are ephemeral), at least one.
func WaitConsumerDone(tb testing.TB, js jetstream.JetStream, stream, durable string, timeout time.Duration) {
	tb.Helper()
	require.Eventually(tb, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		// A consumer that has not caught up yet may still show nothing
		// pending for a moment (just created, its first pull not answered):
		// one without a filter is done only when its ack floor reaches the
		// stream's last message.
		si, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		last := si.CachedInfo().State.LastSeq
		done := func(c *jetstream.ConsumerInfo) bool {
			caughtUp := c.Config.FilterSubject != "" || len(c.Config.FilterSubjects) > 0 || c.AckFloor.Stream >= last
			return c.NumPending == 0 && c.NumAckPending == 0 && caughtUp
		}
		if durable != "" {
			c, err := js.Consumer(ctx, stream, durable)
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			return err == nil && done(info)
		}
		n, all := 0, true
		// Read the lister to the end: leaving early leaks its goroutine.
		for info := range si.ListConsumers(ctx).Info() {
			if info.Config.Durable == "" {
				continue
			}
			n++
			all = all && done(info)
		}
		return n > 0 && all
	}, timeout, 20*time.Millisecond, "consumer %q of %s never caught up", durable, stream)
}

// Cluster is a JetStream cluster of embedded servers on loopback.
type Cluster struct {
	Nodes []*ClusterNode
}

// ClusterNode is one server of a Cluster.
type ClusterNode struct {
	Server *server.Server
	URL    string
	opts   *server.Options
}

// StartCluster runs n clustered JetStream servers (each with its own store
// and client/cluster ports) and waits until every node is ready.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	cports := make([]int, n)
	routes := make([]string, n)
	for i := range n {
		p, err := freeport.Get()
		require.NoError(tb, err)
		cports[i] = p
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	c := &Cluster{}
	for i := range n {
		port, err := freeport.Get()
		require.NoError(tb, err)
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: port,
			JetStream: true, StoreDir: tb.TempDir(), NoSigs: true, NoLog: true, MaxPayload: 8 << 20,
			Cluster: server.ClusterOpts{Name: "rehearsal", Host: "127.0.0.1", Port: cports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		node := &ClusterNode{opts: opts}
		node.start(tb)
		c.Nodes = append(c.Nodes, node)
	}
	tb.Cleanup(func() {
		for _, nd := range c.Nodes {
			nd.Shutdown()
		}
	})
	return c
}

func (nd *ClusterNode) start(tb testing.TB) {
	tb.Helper()
	s, err := server.NewServer(nd.opts)
	require.NoError(tb, err)
	go s.Start()
	require.True(tb, s.ReadyForConnections(30*time.Second), "cluster node %s not ready", nd.opts.ServerName)
	nd.Server = s
	nd.URL = s.ClientURL()
}

// Shutdown stops the node (idempotent).
func (nd *ClusterNode) Shutdown() {
	if nd.Server != nil {
		nd.Server.Shutdown()
		nd.Server.WaitForShutdown()
	}
}

// URLs is the comma-separated client URLs of every node.
func (c *Cluster) URLs() string {
	u := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		u[i] = nd.URL
	}
	return strings.Join(u, ",")
}

// WaitConsumer waits until stream has a consumer whose name starts with
// prefix (action workers create theirs at start, from new messages on).
func WaitConsumer(tb testing.TB, js jetstream.JetStream, stream, prefix string, timeout time.Duration) {
	tb.Helper()
	require.Eventually(tb, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		for name := range s.ConsumerNames(ctx).Name() {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		}
		return false
	}, timeout, 20*time.Millisecond, "no consumer %s* on %s", prefix, stream)
}
