package feed

// bounded is a map that holds at most max keys: putting a new key into a
// full map evicts the oldest put. It is not safe for concurrent use.
type bounded[K comparable, V any] struct {
	max     int
	m       map[K]slot[V]
	q       []qkey[K] // ring of puts, oldest at head
	head, n int
	gen     uint64
	evicted int
}

type slot[V any] struct {
	v   V
	gen uint64
}

type qkey[K comparable] struct {
	k   K
	gen uint64
}

func newBounded[K comparable, V any](max int) *bounded[K, V] {
	return &bounded[K, V]{max: max, m: make(map[K]slot[V]), q: make([]qkey[K], max)}
}

func (b *bounded[K, V]) get(k K) (V, bool) {
	s, ok := b.m[k]
	return s.v, ok
}

// put stores v under k, refreshing its age, and returns the value of the
// live key it evicted to make room, if any.
func (b *bounded[K, V]) put(k K, v V) (old V, evicted bool) {
	if b.max <= 0 {
		return old, false
	}
	if b.n == b.max {
		oldest := b.q[b.head]
		b.head = (b.head + 1) % b.max
		b.n--
		if s, ok := b.m[oldest.k]; ok && s.gen == oldest.gen {
			delete(b.m, oldest.k)
			b.evicted++
			old, evicted = s.v, true
		}
	}
	b.gen++
	b.m[k] = slot[V]{v: v, gen: b.gen}
	b.q[(b.head+b.n)%b.max] = qkey[K]{k: k, gen: b.gen}
	b.n++
	return old, evicted
}

// update replaces the value of k without refreshing its age; false when absent.
func (b *bounded[K, V]) update(k K, v V) bool {
	s, ok := b.m[k]
	if !ok {
		return false
	}
	s.v = v
	b.m[k] = s
	return true
}

func (b *bounded[K, V]) del(k K) { delete(b.m, k) }

func (b *bounded[K, V]) len() int { return len(b.m) }
