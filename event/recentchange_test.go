package event_test

import (
	"bytes"
	stdjson "encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
)

// Every recorded event decodes, whatever its era or shape.
func TestDecodeEveryFixtureEvent(t *testing.T) {
	total := 0
	for file, evs := range fixtures.EventsByFile(t, "recentchange.*.jsonl", "recentchange.*.sse", "recentchange.*.concatenated.json") {
		for i, data := range evs {
			ev, err := event.Decode(data)
			require.NoError(t, err, "%s event %d", file, i)
			assert.NotEmpty(t, ev.Meta.ID)
			assert.NotEmpty(t, ev.Type, "%s event %d", file, i)
			assert.False(t, ev.Time().IsZero(), "%s event %d: no time", file, i)
			total++
		}
	}
	assert.Greater(t, total, 2500)
}

func TestDecodeShapes(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		check func(t *testing.T, ev *event.RecentChange)
	}{
		{"dt with offset (2018)", `{"meta":{"id":"a","dt":"2018-03-07T16:16:17+00:00","schema_uri":"mediawiki/recentchange/1"},"type":"edit"}`,
			func(t *testing.T, ev *event.RecentChange) {
				assert.Equal(t, time.Date(2018, 3, 7, 16, 16, 17, 0, time.UTC), ev.Time().UTC())
				assert.Equal(t, "mediawiki/recentchange/1", ev.Meta.SchemaURI)
			}},
		{"dt Z (2024)", `{"meta":{"id":"a","dt":"2024-02-06T16:58:10Z"}}`,
			func(t *testing.T, ev *event.RecentChange) {
				assert.Equal(t, time.Date(2024, 2, 6, 16, 58, 10, 0, time.UTC), ev.Time())
			}},
		{"dt with millis (2025)", `{"meta":{"id":"a","dt":"2025-08-29T06:45:17.001Z"}}`,
			func(t *testing.T, ev *event.RecentChange) {
				assert.Equal(t, time.Date(2025, 8, 29, 6, 45, 17, 1e6, time.UTC), ev.Time())
			}},
		{"null old length and revision", `{"meta":{"id":"a"},"type":"new","length":{"old":null,"new":5},"revision":{"old":null,"new":9}}`,
			func(t *testing.T, ev *event.RecentChange) {
				assert.Nil(t, ev.Length.Old)
				assert.Equal(t, int64(5), *ev.Length.New)
				assert.Equal(t, int64(5), ev.SizeDelta())
			}},
		{"absent old length", `{"meta":{"id":"a"},"type":"new","length":{"new":5},"revision":{"new":9},"server_url":"https://x.org","server_script_path":"/w"}`,
			func(t *testing.T, ev *event.RecentChange) {
				assert.Nil(t, ev.Revision.Old)
				assert.Equal(t, "https://x.org/w/index.php?oldid=9", ev.DiffURL())
			}},
		{"log_params object", `{"meta":{"id":"a"},"type":"log","log_params":{"count":{"files":0}}}`,
			func(t *testing.T, ev *event.RecentChange) { assert.NotNil(t, ev.LogParamsMap()) }},
		{"log_params array", `{"meta":{"id":"a"},"type":"log","log_params":[]}`,
			func(t *testing.T, ev *event.RecentChange) { assert.Nil(t, ev.LogParamsMap()) }},
		{"log_params string", `{"meta":{"id":"a"},"type":"log","log_params":"x"}`,
			func(t *testing.T, ev *event.RecentChange) { assert.Equal(t, `"x"`, string(ev.LogParams)) }},
		{"absent user and rc id", `{"meta":{"id":"a"},"type":"log","log_type":"abusefilter"}`,
			func(t *testing.T, ev *event.RecentChange) {
				assert.Empty(t, ev.User)
				assert.Nil(t, ev.ID)
				assert.Equal(t, "", ev.UserType())
			}},
		{"non-ASCII title", `{"meta":{"id":"a"},"title":"DÉNIEL","user":"~2025-1234"}`,
			func(t *testing.T, ev *event.RecentChange) {
				assert.Equal(t, "DÉNIEL", ev.Title)
				assert.Equal(t, "temp", ev.UserType())
			}},
		{"canary", `{"meta":{"id":"a","domain":"canary"}}`,
			func(t *testing.T, ev *event.RecentChange) { assert.True(t, ev.IsCanary()) }},
		{"unknown fields and type", `{"meta":{"id":"a","new_thing":1},"type":"external","extra":{"x":[1]}}`,
			func(t *testing.T, ev *event.RecentChange) { assert.Equal(t, "external", ev.Type) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := event.Decode([]byte(tc.data))
			require.NoError(t, err)
			tc.check(t, ev)
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"invalid JSON", []byte(`{"meta":{"id":"a"`), event.ErrInvalidJSON},
		{"not an object", []byte(`[1,2]`), event.ErrInvalidJSON},
		{"invalid UTF-8", []byte("{\"meta\":{\"id\":\"a\"},\"title\":\"\xff\xfe\"}"), event.ErrInvalidUTF8},
		{"missing meta.id", []byte(`{"meta":{"dt":"2024-02-06T16:58:10Z"},"type":"edit"}`), event.ErrMissingID},
		{"empty meta.id", []byte(`{"meta":{"id":""}}`), event.ErrMissingID},
		{"wrong type for a field", []byte(`{"meta":{"id":"a"},"namespace":"zero"}`), event.ErrInvalidJSON},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := event.Decode(tc.data)
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func TestUserType(t *testing.T) {
	for name, want := range map[string]string{
		"127.0.0.1": "ip", "2001:db8::1": "ip", "~2024-12345": "temp", "Alice": "named", "": "",
		"1.2.3": "named",
	} {
		assert.Equal(t, want, event.UserType(name), name)
	}
}

func FuzzDecode(f *testing.F) {
	for _, evs := range fixtures.EventsByFile(f, "recentchange.*.jsonl", "recentchange.*.sse", "recentchange.*.concatenated.json") {
		for _, e := range evs[:min(len(evs), 5)] {
			f.Add(e)
		}
	}
	f.Add([]byte(`{"meta":{"id":"a"},"length":{"old":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := event.Decode(data)
		if err != nil {
			require.Nil(t, ev)
			return
		}
		require.NotEmpty(t, ev.Meta.ID)
		_ = ev.Time()
		_ = ev.DiffURL()
		_ = ev.LogParamsMap()
		_ = event.RefOf(ev)
	})
}

func BenchmarkDecode(b *testing.B) {
	data := fixtures.Read(b, "recentchange.electricsql-rag.data.jsonl")
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	var size int
	for _, l := range lines {
		size += len(l)
	}
	b.SetBytes(int64(size / len(lines)))
	b.ReportAllocs()
	var ev event.RecentChange
	i := 0
	for b.Loop() {
		if err := event.DecodeInto(lines[i%len(lines)], &ev); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkDecodeStdlib is the same decode with encoding/json, for the ratio.
func BenchmarkDecodeStdlib(b *testing.B) {
	data := fixtures.Read(b, "recentchange.electricsql-rag.data.jsonl")
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		var ev event.RecentChange
		if err := stdjson.Unmarshal(lines[i%len(lines)], &ev); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
