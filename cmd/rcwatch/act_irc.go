package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rcwatch/rcwatch/actions/irc"
)

// ircFlags configure the IRC worker; the networks and channels live in a
// YAML file (docs/IRC.md), secrets in env vars or files it names.
type ircFlags struct {
	Config    string
	ReplicaID string
	Rate      float64
	Burst     int
}

// register adds the flags with a prefix: "" for `act irc` (--config),
// "irc-" for `run` (--irc-config).
func (f *ircFlags) register(fs *pflag.FlagSet, prefix string) {
	fs.StringVar(&f.Config, prefix+"config", "", "IRC worker configuration file (YAML, see docs/IRC.md)")
	fs.StringVar(&f.ReplicaID, prefix+"replica-id", "", "name of this replica in IRC leases and !status (default: hostname-pid)")
	fs.Float64Var(&f.Rate, prefix+"rate", 0, "override every IRC network's flood rate (lines/s; 0: from the file)")
	fs.IntVar(&f.Burst, prefix+"burst", 0, "override every IRC network's flood burst (lines; 0: from the file)")
}

// stage builds the IRC actor on rt (used by `act irc` and, when an IRC
// config is given, by `run`).
func (f *ircFlags) stage(rt *runtime) (stage, error) {
	cfg, err := irc.LoadConfig(f.Config)
	if err != nil {
		return stage{}, err
	}
	if f.ReplicaID != "" {
		cfg.ReplicaID = f.ReplicaID
	}
	var opts []irc.Option
	if f.Rate > 0 || f.Burst > 0 {
		rate, burst := f.Rate, f.Burst
		if rate <= 0 {
			rate = irc.DefaultFlood().Rate
		}
		if burst <= 0 {
			burst = irc.DefaultFlood().Burst
		}
		opts = append(opts, irc.WithFlood(rate, burst))
	}
	w, err := irc.New(rt.deps, cfg, opts...)
	if err != nil {
		return stage{}, err
	}
	rt.log.Info().Str("config", f.Config).Msg("IRC worker configured")
	return stage{"irc", w}, nil
}

func newActIRCCmd() *cobra.Command {
	var c commonFlags
	var f ircFlags
	cmd := &cobra.Command{
		Use:   "irc",
		Short: "Post alerts to IRC channels (ALERTS → IRC), flood-safe, one poster per channel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStages(cmd.Context(), "irc", c, nil, f.stage)
		},
	}
	c.register(cmd.Flags(), ":9093")
	f.register(cmd.Flags(), "")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
