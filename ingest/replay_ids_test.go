package ingest_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
)

// `rcwatch replay --loop` gives every event of every pass a distinct meta.id,
// even where the recording repeats an id (the default fixtures do), so no
// pass loses events to JetStream's deduplication.
func TestReplayLoopIDsAreDistinct(t *testing.T) {
	evs := fixtures.Events(t)
	ids := map[string]bool{}
	for _, e := range evs {
		ids[fixtures.MetaID(t, e)] = true
	}
	require.Less(t, len(ids), len(evs), "the fixtures repeat some ids (the case under test)")

	const passes = 3
	_, url := startReplay(t, ingest.ReplayConfig{Events: evs, Loop: true, UniqueIDs: true,
		Limit: passes * len(evs), CloseAtEnd: true})
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	frames := ingest.ParseSSE(body)
	require.Len(t, frames, passes*len(evs))
	seen := map[string]int{}
	for i, f := range frames {
		id := fixtures.MetaID(t, f)
		require.NotContains(t, seen, id, "frame %d repeats the id of frame %d", i, seen[id])
		seen[id] = i
	}
	// The first pass keeps the recorded bytes of every event whose id is its first.
	first := map[string]bool{}
	for i, e := range evs {
		if id := fixtures.MetaID(t, e); !first[id] {
			first[id] = true
			require.Equal(t, string(e), string(frames[i]))
		}
	}
}
