// Command rcwatch is the single binary of every stage: it parses flags and
// environment variables, builds the stages and runs them. It holds no
// business logic (see docs/ARCHITECTURE.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	// First, so that a SIGTERM at any point after the first line drains
	// rather than kills (tests signal a process once it has written one).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	setMemoryLimit() // from the container's limit unless GOMEMLIMIT is set
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "rcwatch:", err)
		var ec exitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

// exitCoder lets a command choose its exit status (rules lint: 1 on problems).
type exitCoder interface{ ExitCode() int }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "rcwatch",
		Short:         "Event-driven stream processor for Wikipedia patrolling",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return bindEnv(cmd)
		},
	}
	root.AddCommand(
		newRunCmd(),
		newIngestCmd(),
		newReplayCmd(),
		newEvaluateCmd(),
		newRulesCmd(),
		newActCmd(),
		newBenchCmd(),
		newFeedCmd(),
	)
	return root
}

// EnvName is the environment variable that sets a flag: RCWATCH_ plus the
// flag name upper-cased with '-' as '_' (--nats → RCWATCH_NATS).
func EnvName(flag string) string {
	return "RCWATCH_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// bindEnv sets every flag not given on the command line from its
// environment variable, the Kubernetes way. Command-line flags win.
func bindEnv(cmd *cobra.Command) error {
	var errs []error
	set := func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	}
	cmd.Flags().VisitAll(set)
	cmd.InheritedFlags().VisitAll(set)
	return errors.Join(errs...)
}
