package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// Owned by the rules stage (issue 4).
func newEvaluateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "evaluate",
		Short: "Run the rules evaluator stage (RECENTCHANGE → ALERTS)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("not implemented yet") },
	}
}
