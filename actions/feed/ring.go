package feed

import (
	"sort"
	"time"

	"github.com/rcwatch/rcwatch/event"
)

// entry is one alert of the stream as the feed holds it.
type entry struct {
	seq   uint64
	at    time.Time // the stream's time of the message
	alert *event.Alert
	class string
}

// ring holds the most recent alerts in stream order (ascending sequence),
// at most cap of them.
type ring struct {
	buf     []*entry
	head, n int
}

func newRing(capacity int) *ring { return &ring{buf: make([]*entry, max(capacity, 1))} }

func (r *ring) at(i int) *entry { return r.buf[(r.head+i)%len(r.buf)] }

// push appends e and returns the entry it evicted, if any.
func (r *ring) push(e *entry) (old *entry) {
	if r.n == len(r.buf) {
		old = r.buf[r.head]
		r.buf[r.head] = nil
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
	r.buf[(r.head+r.n)%len(r.buf)] = e
	r.n++
	return old
}

// dropBefore removes the entries older than t from the head.
func (r *ring) dropBefore(t time.Time) (dropped int) {
	for r.n > 0 && r.buf[r.head].at.Before(t) {
		r.buf[r.head] = nil
		r.head = (r.head + 1) % len(r.buf)
		r.n--
		dropped++
	}
	return dropped
}

// find returns the index of the first entry with seq >= s.
func (r *ring) find(s uint64) int {
	return sort.Search(r.n, func(i int) bool { return r.at(i).seq >= s })
}

// findTime returns the index of the first entry at or after t.
func (r *ring) findTime(t time.Time) int {
	return sort.Search(r.n, func(i int) bool { return !r.at(i).at.Before(t) })
}

// get returns the entry of sequence s, or nil.
func (r *ring) get(s uint64) *entry {
	if i := r.find(s); i < r.n && r.at(i).seq == s {
		return r.at(i)
	}
	return nil
}
