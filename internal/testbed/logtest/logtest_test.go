package logtest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rcwatch/rcwatch/internal/testbed/logtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Concurrent writers lose no line; Await sees a line written after it
// started waiting; Matching decodes only matching JSON lines.
func TestSink(t *testing.T) {
	log, sink := logtest.New(t)
	mark := sink.Len()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				log.Info().Int("writer", i).Msg("busy")
			}
		}()
	}
	go func() {
		wg.Wait()
		log.Warn().Str("code", "maxlag").Msg("backed off")
	}()
	line := sink.Await(t, mark, 10*time.Second, "backed off", `"code":"maxlag"`)
	require.NotNil(t, line)
	assert.Equal(t, "maxlag", line["code"])
	assert.Equal(t, 401, sink.Len())
	assert.Len(t, sink.Matching("busy"), 400)
	assert.Len(t, sink.Matching(`"writer":3`), 50)
	assert.Contains(t, sink.String(), "backed off")
	assert.Contains(t, sink.Tail(100), "backed off")
}

// The zero Sink is usable.
func TestZeroSink(t *testing.T) {
	var s logtest.Sink
	_, err := s.Write([]byte("{\"a\":1}\n"))
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"a": 1.0}, s.Await(t, 0, time.Second, `"a"`))
}
