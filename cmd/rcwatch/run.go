package main

import (
	"github.com/spf13/cobra"
)

func newRunCmd() *cobra.Command {
	var (
		c   commonFlags
		emb embeddedFlags
		in  ingestFlags
		ev  evaluateFlags
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run every stage in one process around an embedded NATS server (the one-machine default)",
		Long: `Starts an embedded NATS server with JetStream (file storage under --data-dir) unless --nats
points at an external one, and runs the stages in one process: ingest and the rules
evaluator (and the action workers when they are configured). SIGTERM stops reading, drains every stage and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStages(cmd.Context(), "run", c, &emb, in.stage, ev.stage)
		},
	}
	fs := cmd.Flags()
	c.register(fs, ":9090")
	emb.register(fs)
	in.register(fs)
	ev.register(fs)
	return cmd
}
