package main

import (
	"github.com/spf13/cobra"
)

// Owned by the rules stage (issue 4): lint, test (backtest), cases.
func newRulesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rules",
		Short: "Rule authoring tools: lint, test (backtest), cases",
	}
}
