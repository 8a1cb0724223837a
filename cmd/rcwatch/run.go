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
		irc ircFlags
		ed  editFlags
		fd  feedFlags
		cp  checkpointFlags
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run every stage in one process around an embedded NATS server (the one-machine default)",
		Long: `Starts an embedded NATS server with JetStream (file storage under --data-dir) unless --nats
points at an external one, and runs the stages in one process: ingest and the rules
evaluator always; the IRC worker with --irc-config; the edit worker with --edit-config
(dry-run unless --edit-live). SIGTERM stops reading, drains every stage and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stages := []func(*runtime) (stage, error){in.stage, ev.stage}
			if cp.File != "" {
				stages = append([]func(*runtime) (stage, error){cp.stage(&in)}, stages...) // before ingest: it may set --since
			}
			if irc.Config != "" {
				stages = append(stages, irc.stage)
			}
			if ed.Config != "" {
				stages = append(stages, ed.stage)
			}
			if fd.Addr != "" {
				stages = append(stages, fd.stage) // the patroller feed; Run logs the URL to open
			}
			return runStages(cmd.Context(), "run", c, &emb, stages...)
		},
	}
	fs := cmd.Flags()
	c.register(fs, "127.0.0.1:9090")
	emb.register(fs)
	in.register(fs)
	ev.register(fs)
	irc.register(fs, "irc-")
	ed.register(fs, "edit-")
	fd.register(fs, "127.0.0.1:8080")
	cp.register(fs)
	return cmd
}
