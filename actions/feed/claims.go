package feed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

// Claim states.
const (
	StateOnIt = "on-it"
	StateDone = "done"
)

// Limits of a claim request.
const (
	MaxClaimName  = 64 // characters
	maxClaimID    = 512
	maxClaimBody  = 2048
	claimKeyStart = "claim."
)

// Claim is a patroller's mark on an alert: "on it" or "done", by Name.
// State is "" in an SSE claim event when the claim expired.
type Claim struct {
	Seq   uint64    `json:"seq"`
	ID    string    `json:"id"`
	State string    `json:"state"`
	Name  string    `json:"name,omitempty"`
	At    time.Time `json:"at,omitzero"`
}

// ClaimRequest is the body of POST /api/claims.
type ClaimRequest struct {
	Seq   uint64 `json:"seq"`
	ID    string `json:"id"`
	State string `json:"state"`
	Name  string `json:"name"`
}

// Errors of a claim request; the HTTP status follows from each.
var (
	ErrClaimInvalid  = errors.New("invalid claim")
	ErrClaimUnknown  = errors.New("no such alert")
	ErrClaimForged   = errors.New("alert id does not match the alert at this sequence")
	ErrClaimConflict = errors.New("someone else is on it")
	ErrClaimLimited  = errors.New("too many claims: slow down")
)

// validate checks a claim request's fields.
func (r *ClaimRequest) validate() error {
	switch {
	case r.Seq == 0:
		return fmt.Errorf("%w: seq is required", ErrClaimInvalid)
	case r.ID == "" || len(r.ID) > maxClaimID || !utf8.ValidString(r.ID):
		return fmt.Errorf("%w: id is required, at most %d bytes", ErrClaimInvalid, maxClaimID)
	case r.State != StateOnIt && r.State != StateDone:
		return fmt.Errorf("%w: state %q (want %s or %s)", ErrClaimInvalid, r.State, StateOnIt, StateDone)
	}
	name := strings.TrimSpace(r.Name)
	if name == "" || utf8.RuneCountInString(name) > MaxClaimName || !utf8.ValidString(name) {
		return fmt.Errorf("%w: name is required, at most %d characters", ErrClaimInvalid, MaxClaimName)
	}
	for _, c := range name {
		// Control and format characters (RTL overrides, zero-width joiners)
		// would let a name disguise itself.
		if unicode.IsControl(c) || unicode.Is(unicode.Cf, c) {
			return fmt.Errorf("%w: name has a control or format character (U+%04X)", ErrClaimInvalid, c)
		}
	}
	r.Name = name
	return nil
}

func claimKey(seq uint64) string { return claimKeyStart + strconv.FormatUint(seq, 10) }

// Claim records a claim after checking that the alert at req.Seq is req.ID
// and that nobody else is on it. Every feed watching the bucket pushes it
// to its pages.
func (f *Feed) Claim(ctx context.Context, req ClaimRequest) (*Claim, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	a, err := f.alertAt(ctx, req.Seq)
	if err != nil {
		return nil, err
	}
	if a.ID != req.ID {
		return nil, ErrClaimForged
	}
	kvp := f.kv.Load()
	if kvp == nil {
		return nil, errors.New("feed: the claims bucket is not open yet")
	}
	kv := *kvp
	c := &Claim{Seq: req.Seq, ID: req.ID, State: req.State, Name: req.Name, At: f.now().UTC()}
	val, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("feed: encoding a claim: %w", err)
	}
	key := claimKey(req.Seq)
	cur, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if _, err := kv.Create(ctx, key, val, jetstream.KeyTTL(f.cfg.ClaimTTL)); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return nil, ErrClaimConflict
			}
			return nil, fmt.Errorf("feed: writing claim %s: %w", key, err)
		}
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("feed: reading claim %s: %w", key, err)
	}
	var old Claim
	if json.Unmarshal(cur.Value(), &old) == nil && old.State == StateOnIt && req.State == StateOnIt &&
		old.Name != req.Name && old.ID == req.ID {
		return &old, ErrClaimConflict
	}
	if _, err := pipeline.KVPutTTL(ctx, f.d.JS, kv, key, val, f.cfg.ClaimTTL, cur.Revision()); err != nil {
		if errors.Is(err, pipeline.ErrRevisionMismatch) {
			return nil, ErrClaimConflict
		}
		return nil, fmt.Errorf("feed: writing claim %s: %w", key, err)
	}
	return c, nil
}

// alertAt returns the alert at stream sequence seq, from the ring or the stream.
func (f *Feed) alertAt(ctx context.Context, seq uint64) (*event.Alert, error) {
	f.mu.Lock()
	e := f.ring.get(seq)
	f.mu.Unlock()
	if e != nil {
		return e.alert, nil
	}
	s, err := f.d.JS.Stream(ctx, pipeline.StreamAlerts)
	if err != nil {
		return nil, fmt.Errorf("feed: looking up stream %s: %w", pipeline.StreamAlerts, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrClaimUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("feed: reading alert %d: %w", seq, err)
	}
	a, err := decodeRaw(m.Data)
	if err != nil {
		return nil, ErrClaimUnknown
	}
	return a, nil
}

// watchClaims keeps the in-memory claims in step with the bucket and pushes
// every change (an expiry too) to the pages.
func (f *Feed) watchClaims(ctx context.Context) error {
	kv, err := pipeline.OpenKV(ctx, f.d.JS, pipeline.BucketFeedClaims, f.log)
	if err != nil {
		return fmt.Errorf("feed: opening KV bucket %s: %w", pipeline.BucketFeedClaims, err)
	}
	f.kv.Store(&kv)
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("feed: watching KV bucket %s: %w", pipeline.BucketFeedClaims, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("feed: the watch of KV bucket %s stopped", pipeline.BucketFeedClaims)
			}
			if e == nil {
				f.claimsOK.Store(true)
				continue
			}
			f.claimChanged(e)
		}
	}
}

func (f *Feed) claimChanged(e jetstream.KeyValueEntry) {
	seq, err := strconv.ParseUint(strings.TrimPrefix(e.Key(), claimKeyStart), 10, 64)
	if err != nil || !strings.HasPrefix(e.Key(), claimKeyStart) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var c *Claim
	if e.Operation() == jetstream.KeyValuePut {
		c = new(Claim)
		if err := json.Unmarshal(e.Value(), c); err != nil || c.Seq != seq {
			f.m.decodeErrors.WithLabelValues(pipeline.BucketFeedClaims).Inc()
			return
		}
		if _, ok := f.claims.put(seq, c); ok {
			f.m.evicted.WithLabelValues("claims").Inc()
		}
	} else {
		old, ok := f.claims.get(seq)
		if !ok {
			return
		}
		f.claims.del(seq)
		c = &Claim{Seq: seq, ID: old.ID}
	}
	f.m.claims.Set(float64(f.claims.len()))
	if data, err := json.Marshal(c); err == nil {
		f.dispatch(outMsg{event: evClaim, data: data}, nil)
	}
}

// limiters are the per-client claim rate limiters, at most max of them.
type limiters struct {
	mu    sync.Mutex
	rate  rate.Limit
	burst int
	m     *bounded[string, *rate.Limiter]
}

func newLimiters(perSecond float64, burst, maxClients int) *limiters {
	return &limiters{rate: rate.Limit(perSecond), burst: burst, m: newBounded[string, *rate.Limiter](maxClients)}
}

// allow takes a token of client's limiter at now; evicted says a full map
// dropped the oldest client's limiter.
func (l *limiters) allow(client string, now time.Time) (ok, evicted bool, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, found := l.m.get(client)
	if !found {
		lim = rate.NewLimiter(l.rate, l.burst)
		_, evicted = l.m.put(client, lim)
	}
	return lim.AllowN(now, 1), evicted, l.m.len()
}

// clientAddr is the client's IP address: the connection's peer, or with
// Config.ClientIPHeader the last address in that header (set by the proxy).
func (f *Feed) clientAddr(r *http.Request) string {
	if h := f.cfg.ClientIPHeader; h != "" {
		if v := r.Header.Values(h); len(v) > 0 {
			parts := strings.Split(v[len(v)-1], ",")
			if ip := strings.TrimSpace(parts[len(parts)-1]); net.ParseIP(ip) != nil {
				return ip
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
