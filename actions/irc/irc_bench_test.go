package irc

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rcwatch/rcwatch/internal/testbed/ircdtest"
)

// BenchmarkAlertToLine publishes alerts to ALERTS at the configured flood
// rate and measures, at a second IRC client, the time from publish to the
// received line (p50/p99). Real embedded NATS and ngircd:
//
//	go test ./actions -run '^$' -bench IRCAlertToLine -benchtime 60x
func BenchmarkAlertToLine(b *testing.B) {
	for _, rate := range []float64{2, 20} {
		b.Run(fmt.Sprintf("rate=%g", rate), func(b *testing.B) {
			env := newTestEnv(b, ircdtest.Options{})
			watcher := ircdtest.Dial(b, env.irc.Addr, "patroller", "")
			watcher.Join(b, "#alerts")
			env.startWorker(b, env.config("rcbot", "#alerts"), WithFlood(rate, 4))
			interval := time.Duration(float64(time.Second) / rate)
			sent := make(map[int64]time.Time, b.N)
			tick := time.NewTicker(interval) // the load generator's pace
			defer tick.Stop()
			b.ResetTimer()
			for i := range b.N {
				rev := int64(10000 + i)
				a := testAlert("bench", rev, "#alerts")
				sent[rev] = time.Now()
				publishAlert(b, env.js, a)
				if i < b.N-1 {
					<-tick.C
				}
			}
			msgs := watcher.WaitMessages(b, "#alerts", b.N, time.Minute+time.Duration(b.N)*interval)
			b.StopTimer()
			lat := make([]time.Duration, 0, len(msgs))
			for _, m := range msgs {
				if t0, ok := sent[revOf(m.Text)]; ok {
					lat = append(lat, m.At.Sub(t0))
				}
			}
			if len(lat) != b.N {
				b.Fatalf("%d alerts, %d single lines (folding at the configured rate?)", b.N, len(lat))
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
