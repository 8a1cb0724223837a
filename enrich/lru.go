package enrich

import (
	"container/list"
	"sync"
	"time"
)

// lru is a cache bounded by the total cost (bytes) of its entries, each with
// an expiry. Safe for concurrent use.
type lru struct {
	mu      sync.Mutex
	max     int
	used    int
	ll      *list.List
	entries map[string]*list.Element
}

type lruEntry struct {
	key     string
	val     any
	cost    int
	expires time.Time
}

func newLRU(maxCost int) *lru {
	return &lru{max: maxCost, ll: list.New(), entries: map[string]*list.Element{}}
}

func (c *lru) get(key string, now time.Time) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	en := el.Value.(*lruEntry)
	if !now.Before(en.expires) {
		c.remove(el)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return en.val, true
}

// put stores val; an entry costing more than a quarter of the cache is not kept.
func (c *lru) put(key string, val any, cost int, expires time.Time) {
	if cost > c.max/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.remove(el)
	}
	c.entries[key] = c.ll.PushFront(&lruEntry{key: key, val: val, cost: cost, expires: expires})
	c.used += cost
	for c.used > c.max {
		c.remove(c.ll.Back())
	}
}

func (c *lru) remove(el *list.Element) {
	en := el.Value.(*lruEntry)
	c.ll.Remove(el)
	delete(c.entries, en.key)
	c.used -= en.cost
}
