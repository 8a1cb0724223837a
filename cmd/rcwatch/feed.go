package main

import (
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rcwatch/rcwatch/actions/feed"
)

// feedFlags configure the patroller feed (docs/FEED.md); the same flags,
// all prefixed feed-, serve `rcwatch feed` and `rcwatch run`.
type feedFlags struct {
	fs             *pflag.FlagSet
	loopback       bool // the default address is loopback (run)
	Addr           string
	Backfill       time.Duration
	MaxClients     int
	ClaimTTL       time.Duration
	ClientIPHeader string
	Wikis          []string
}

func (f *feedFlags) register(fs *pflag.FlagSet, addrDefault string) {
	d := feed.DefaultConfig()
	f.fs, f.loopback = fs, strings.HasPrefix(addrDefault, "127.")
	fs.StringVar(&f.Addr, "feed-addr", addrDefault, "listen address of the patroller feed's page and API (empty: off)")
	fs.DurationVar(&f.Backfill, "feed-backfill", d.Backfill, "how far back the feed's page looks on opening")
	fs.IntVar(&f.MaxClients, "feed-max-clients", d.MaxClients, "most open feed connections (SSE)")
	fs.DurationVar(&f.ClaimTTL, "feed-claim-ttl", d.ClaimTTL, "how long a claim (\"on it\", \"done\") lasts")
	fs.StringVar(&f.ClientIPHeader, "feed-client-ip-header", "", "header the reverse proxy puts the client address in (X-Forwarded-For), for the claim rate limit")
	fs.StringSliceVar(&f.Wikis, "feed-wikis", nil, "wikis whose edits retire alerts (empty: all)")
}

// stage builds the feed on rt (used by `feed` and by `run`).
func (f *feedFlags) stage(rt *runtime) (stage, error) {
	cfg := feed.DefaultConfig()
	cfg.Addr, cfg.Backfill, cfg.MaxClients, cfg.ClaimTTL = f.Addr, f.Backfill, f.MaxClients, f.ClaimTTL
	cfg.ClientIPHeader, cfg.Wikis = f.ClientIPHeader, f.Wikis
	// The default loopback address of `run` may be taken (a second run):
	// then any free port, whose URL Run logs. An address given is kept.
	cfg.AnyPortIfBusy = f.loopback && f.fs != nil && !f.fs.Changed("feed-addr") && os.Getenv(EnvName("feed-addr")) == ""
	fd, err := feed.New(rt.deps, cfg)
	if err != nil {
		return stage{}, err
	}
	return stage{"feed", fd}, nil
}

func newFeedCmd() *cobra.Command {
	var c commonFlags
	var f feedFlags
	cmd := &cobra.Command{
		Use:   "feed",
		Short: "Serve the patroller feed: live alerts in the browser, filtered, with claims (ALERTS → web/SSE)",
		Long: `Serves a web page and an HTTP API over the ALERTS stream: the last hour of alerts, then live
ones over Server-Sent Events, filtered on the server (wiki, namespace, rule, severity, score,
user class), with claims kept in NATS KV and alerts retired when their page is edited again.
See docs/FEED.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStages(cmd.Context(), "feed", c, nil, f.stage)
		},
	}
	c.register(cmd.Flags(), ":9095")
	f.register(cmd.Flags(), ":8080")
	return cmd
}
