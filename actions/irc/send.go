package irc

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// barrierTimeout bounds the wait for the PONG that confirms a line.
const barrierTimeout = 15 * time.Second

// sendLoop takes lines from the queue as the token bucket allows, writes
// each and waits for the server to confirm it.
func (n *network) sendLoop(ctx context.Context) {
	defer n.queue.FailAll(errStopping, true)
	for {
		n.w.m.queue.WithLabelValues(n.cfg.Name).Set(float64(n.queue.Len()))
		if n.queue.Len() == 0 {
			select {
			case <-ctx.Done():
				return
			case <-n.queue.wake:
			}
			continue
		}
		ok, wait := n.bucket.Take(n.w.now())
		if !ok {
			n.queue.markHeadDelayed()
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		it := n.queue.Pop()
		if it == nil {
			n.bucket.tokens = min(n.bucket.burst, n.bucket.tokens+1)
			continue
		}
		n.send(ctx, it)
	}
}

// send writes one line, stores the idempotency keys of its alerts, and
// only then finishes them with the outcome and goes on to the next line: a
// replica killed after the server confirmed a line but before its keys were
// stored repeats that one line, never more (docs/IRC.md).
func (n *network) send(ctx context.Context, it *outItem) {
	now := n.w.now()
	c := n.channelByName(it.channel)
	if c == nil || c.lease == nil || !c.lease.Valid(now) {
		n.bucket.tokens = min(n.bucket.burst, n.bucket.tokens+1)
		it.finish(outcome{err: errLeaseLost})
		return
	}
	text := n.render(it, c)
	err := n.writeLine(it.channel, text)
	sentAt := n.w.now()
	if err == nil {
		n.storeKeys(ctx, it, sentAt)
	}
	it.finish(outcome{sentAt: sentAt, err: err})
	if err != nil {
		n.log.Warn().Err(err).Str("channel", it.channel).Str("kind", it.kind.String()).Msg("line not confirmed; its alerts will be redelivered")
		return
	}
	n.w.m.lines.WithLabelValues(n.cfg.Name, it.kind.String()).Inc()
	n.sent.Add(1)
	switch it.kind {
	case itemDigest:
		n.digests.Add(1)
		n.folded.Add(int64(len(it.folded)))
		reason := "queue"
		if it.dkind == DigestBacklog {
			reason = "backlog"
		}
		n.w.m.folded.WithLabelValues(n.cfg.Name, reason).Add(float64(len(it.folded)))
	case itemAlert:
		if it.delayed {
			n.delayed.Add(1)
			n.w.m.delayed.WithLabelValues(n.cfg.Name).Inc()
		}
	}
}

// feedLink is the patroller feed filtered by rule and wiki (docs/FEED.md),
// or "" when no backlog_fold.feed_url is configured.
func (w *Worker) feedLink(rule, wiki string) string {
	base := w.cfg.BacklogFold.FeedURL
	if base == "" {
		return ""
	}
	q := url.Values{}
	q.Set("rule", rule)
	if wiki != "" {
		q.Set("wiki", wiki)
	}
	return strings.TrimRight(base, "/") + "/?" + q.Encode()
}

// textBudget is the byte budget of a message to channel with the current
// nick: the 512-byte line limit with the relayed prefix, and girc's own
// split threshold so that a line is never split in two.
func (n *network) textBudget(channel string) int {
	b := TextBudget(n.client.GetNick(), "~"+n.cfg.User, n.cfg.HostLen, channel)
	split := n.client.MaxEventLength() - len("PRIVMSG ") - len(channel) - len(" :") - 1
	return min(b, split)
}

func (n *network) render(it *outItem, c *channel) string {
	opts := FormatOptions{Plain: c.cfg.Plain, ShowWiki: c.cfg.ShowWiki, MaxBytes: n.textBudget(it.channel)}
	switch it.kind {
	case itemAlert:
		return FormatAlert(it.single.alert, opts)
	case itemDigest:
		if it.dkind == DigestBacklog {
			return FormatBacklogDigest(it.dkey, it.wiki, len(it.folded), it.latest(), n.w.feedLink(it.dkey, it.wiki), opts)
		}
		return FormatDigest(it.dkind, it.dkey, len(it.folded), it.latest(), opts)
	}
	return FormatControl(it.text, opts.MaxBytes)
}

// writeLine sends a PRIVMSG followed by a PING with a unique token, and
// returns once the PONG arrives: the server processes a client's commands in
// order, so the PONG proves the line was received and relayed.
func (n *network) writeLine(channel, text string) error {
	n.mu.Lock()
	if !n.connected {
		n.mu.Unlock()
		return errNotConnected
	}
	n.seq++
	tok := "rcw" + strconv.FormatUint(n.seq, 10)
	done := make(chan struct{})
	n.pongs[tok] = done
	disc := n.disc
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.pongs, tok)
		n.mu.Unlock()
	}()
	n.client.Cmd.Message(channel, text)
	n.client.Cmd.Ping(tok)
	t := time.NewTimer(barrierTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-disc:
		// The PONG is handled before the disconnect (girc runs the events
		// read before the connection ended first), but both may be ready
		// when this goroutine wakes, and select picks at random: a line the
		// server confirmed is confirmed, or its alert is posted twice.
		select {
		case <-done:
			return nil
		default:
		}
		return errNotConnected
	case <-t.C:
		return fmt.Errorf("no PONG %v after a line to %s", barrierTimeout, channel)
	}
}

// storeKeys writes the idempotency key of every alert a confirmed line
// stands for (backlog digests write none: docs/IRC.md), a digest's keys a
// few at a time. The line is out, so the keys matter more than the next
// line's latency; a shutdown does not cut them short (a NATS outage does,
// after 30 s).
func (n *network) storeKeys(ctx context.Context, it *outItem, sentAt time.Time) {
	if it.kind == itemControl || (it.kind == itemDigest && it.dkind == DigestBacklog) {
		return
	}
	// One deadline for all the keys of the line: while NATS cannot write,
	// posting pauses for at most 30 s per line, not per alert.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	val := []byte(`{"at":"` + sentAt.UTC().Format(time.RFC3339Nano) + `","folded":` + strconv.FormatBool(it.kind == itemDigest) + `}`)
	ps := it.pendings()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, p := range ps {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := n.w.storeSent(ctx, sentKey(n.cfg.Name, p.channel, p.alert.ID), val); err != nil {
				n.log.Warn().Err(err).Str("channel", p.channel).Str("alert", p.alert.ID).
					Msg("line posted but its idempotency key was not stored; a redelivery could post it again")
			}
		}()
	}
	wg.Wait()
}
