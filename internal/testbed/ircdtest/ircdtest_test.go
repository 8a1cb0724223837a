package ircdtest

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestServerClientsAndRestart(t *testing.T) {
	s := Start(t, Options{Password: "pw"})
	a := Dial(t, s.Addr, "alice", "pw")
	b := Dial(t, s.Addr, "bob", "pw")
	a.Join(t, "#test")
	b.Join(t, "#test")
	a.Send(t, "PRIVMSG #test :hello \x0303world")
	msgs := b.WaitMessages(t, "#test", 1, 5*time.Second)
	require.Equal(t, "alice", msgs[0].Nick)
	require.Equal(t, "hello \x0303world", msgs[0].Text)
	require.True(t, strings.HasPrefix(msgs[0].Raw, ":alice!"))

	s.Restart(t)
	c := Dial(t, s.Addr, "carol", "pw")
	c.Join(t, "#test")
}

func TestParsePrivmsg(t *testing.T) {
	tests := []struct {
		raw  string
		ok   bool
		want Msg
	}{
		{":n!u@h PRIVMSG #c :a b", true, Msg{Nick: "n", Target: "#c", Text: "a b"}},
		{":n!u@h PRIVMSG #c word", true, Msg{Nick: "n", Target: "#c", Text: "word"}},
		{":srv 001 n :welcome", false, Msg{}},
		{"PING :x", false, Msg{}},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			m, ok := ParsePrivmsg(Line{Raw: tt.raw})
			require.Equal(t, tt.ok, ok)
			if ok {
				tt.want.Raw = tt.raw
				require.Equal(t, tt.want, m)
			}
		})
	}
}
