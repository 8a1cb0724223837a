package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Checkpoint is what a process keeps outside JetStream (on Toolforge, on the
// tool's NFS home) so that a new container with an empty store resumes from
// the last event every stage had finished: ResumeFrom is the event time
// (meta.dt) of the oldest event some durable consumer of RECENTCHANGE or
// ALERTS has not acknowledged yet, or of the newest stored event when all
// are done. Reading the source again from that time skips nothing that was
// still stored; what retention had removed before a stage finished it is
// reported by ResumePoint (Resume.Lost). What a restart repeats and what it
// cannot recover are described in docs/DEPLOY.md.
type Checkpoint struct {
	ResumeFrom time.Time `json:"resume_from"`
	WrittenAt  time.Time `json:"written_at"`
}

// Resume is what ResumePoint found: From is the checkpoint's ResumeFrom
// (zero while RECENTCHANGE is empty); Lost lists, per durable consumer,
// the messages it had not finished that retention removed: From is past
// them, so a restart from the checkpoint does not read them again.
type Resume struct {
	From time.Time
	Lost []Loss
}

// Loss is a range of stream sequences a durable consumer had not
// acknowledged when the stream's byte or age limit (DiscardOld) removed
// them. Their event times are gone with them; KeptFrom, the event time of
// the first message still stored, is later than all of them.
type Loss struct {
	Stream, Consumer    string
	FromSeq, ThroughSeq uint64
	KeptFrom            time.Time
	// Filtered: the consumer has a subject filter, so how many of the
	// removed messages were its own cannot be known; the number of
	// sequences (ThroughSeq − FromSeq + 1) is a bound.
	Filtered bool
}

// ResumePoint computes the checkpoint's ResumeFrom from the streams and
// their durable consumers. A consumer whose first unacknowledged message
// is older than the stream's first is resumed from the first kept message
// and reported in Lost: the events between were dropped by retention
// before that stage finished them.
func ResumePoint(ctx context.Context, js jetstream.JetStream) (Resume, error) {
	rc, err := js.Stream(ctx, StreamRecentChange)
	if err != nil {
		return Resume{}, fmt.Errorf("reading stream %s: %w", StreamRecentChange, err)
	}
	info, err := rc.Info(ctx)
	if err != nil {
		return Resume{}, fmt.Errorf("reading stream %s: %w", StreamRecentChange, err)
	}
	if info.State.Msgs == 0 {
		return Resume{}, nil
	}
	last, err := eventTimeAt(ctx, rc, StreamRecentChange, info.State.LastSeq, info.State.FirstSeq)
	if err != nil {
		return Resume{}, err
	}
	res := Resume{From: last}
	for _, name := range []string{StreamRecentChange, StreamAlerts} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return Resume{}, fmt.Errorf("reading stream %s: %w", name, err)
		}
		si, err := s.Info(ctx)
		if err != nil {
			return Resume{}, fmt.Errorf("reading stream %s: %w", name, err)
		}
		lister := s.ListConsumers(ctx)
		for ci := range lister.Info() {
			if ci.Config.Durable == "" {
				continue // ephemeral readers (the feed's page, tests) are not stages
			}
			if ci.NumPending == 0 && ci.NumAckPending == 0 {
				continue // caught up (a filtered consumer's ack floor stays at its last matching message)
			}
			next := ci.AckFloor.Stream + 1
			if ci.NumAckPending == 0 {
				next = max(next, ci.Delivered.Stream+1) // all it was given is done
			}
			if next > si.State.LastSeq {
				continue // caught up
			}
			first := si.State.FirstSeq
			t, err := eventTimeAt(ctx, s, name, max(next, first), first)
			if err != nil {
				return Resume{}, err
			}
			if next < first {
				filtered := ci.Config.FilterSubject != "" || len(ci.Config.FilterSubjects) > 0
				res.Lost = append(res.Lost, Loss{Stream: name, Consumer: ci.Config.Durable,
					FromSeq: next, ThroughSeq: first - 1, KeptFrom: t, Filtered: filtered})
			}
			if t.Before(res.From) {
				res.From = t
			}
		}
		if err := lister.Err(); err != nil {
			return Resume{}, fmt.Errorf("listing consumers of %s: %w", name, err)
		}
	}
	return res, nil
}

// eventTimeAt is the event time of the message at seq, or of the next one
// still stored when seq was deleted (dedup leaves no gaps; retention does).
func eventTimeAt(ctx context.Context, s jetstream.Stream, stream string, seq, first uint64) (time.Time, error) {
	for tries := 0; tries < 64; tries++ {
		m, err := s.GetMsg(ctx, max(seq, first))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			seq++
			continue
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("reading %s message %d: %w", stream, seq, err)
		}
		return eventTime(stream, m)
	}
	return time.Time{}, fmt.Errorf("reading %s from message %d: too many deleted messages", stream, seq)
}

// eventTime is meta.dt of a RECENTCHANGE message, or the event timestamp of
// an alert (whole seconds, so never later than the event's meta.dt).
func eventTime(stream string, m *jetstream.RawStreamMsg) (time.Time, error) {
	if stream == StreamRecentChange {
		t, err := time.Parse(time.RFC3339Nano, m.Header.Get(HeaderEventTime))
		if err != nil {
			return time.Time{}, fmt.Errorf("%s message %d: event time header: %w", stream, m.Sequence, err)
		}
		return t, nil
	}
	var a struct {
		Event struct {
			Timestamp int64 `json:"timestamp"`
		} `json:"event"`
	}
	if err := json.Unmarshal(m.Data, &a); err != nil || a.Event.Timestamp == 0 {
		return time.Time{}, fmt.Errorf("%s message %d: no event timestamp", stream, m.Sequence)
	}
	return time.Unix(a.Event.Timestamp, 0).UTC(), nil
}

// ReadCheckpoint reads a checkpoint file; ok is false when there is none.
func ReadCheckpoint(file string) (Checkpoint, bool, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("reading checkpoint %s: %w", file, err)
	}
	var c Checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return Checkpoint{}, false, fmt.Errorf("decoding checkpoint %s: %w", file, err)
	}
	return c, !c.ResumeFrom.IsZero(), nil
}

// WriteCheckpoint replaces the file atomically (write, sync, rename).
func WriteCheckpoint(file string, c Checkpoint) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("writing checkpoint %s: %w", file, err)
	}
	tmp, err := os.CreateTemp(dir, ".checkpoint-*")
	if err != nil {
		return fmt.Errorf("writing checkpoint %s: %w", file, err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("writing checkpoint %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("writing checkpoint %s: %w", file, err)
	}
	return nil
}
