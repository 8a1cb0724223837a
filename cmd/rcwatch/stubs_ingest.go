package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newRunCmd() *cobra.Command {
	return &cobra.Command{Use: "run", RunE: func(*cobra.Command, []string) error { return errors.New("not implemented yet") }}
}

func newIngestCmd() *cobra.Command {
	return &cobra.Command{Use: "ingest", RunE: func(*cobra.Command, []string) error { return errors.New("not implemented yet") }}
}

func newReplayCmd() *cobra.Command {
	return &cobra.Command{Use: "replay", RunE: func(*cobra.Command, []string) error { return errors.New("not implemented yet") }}
}
