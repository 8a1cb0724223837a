package main

import (
	"github.com/spf13/cobra"
)

// newActCmd groups the action workers: irc (issue 5), edit (issue 6).
func newActCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "act",
		Short: "Action workers that consume ALERTS (irc, edit)",
	}
	cmd.AddCommand(newActIRCCmd())
	cmd.AddCommand(newActEditCmd())
	return cmd
}
