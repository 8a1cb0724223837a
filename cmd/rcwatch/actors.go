package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
)

// actor is one long-running part of a process (a stage, the ops server): it
// runs until ctx is cancelled, then drains and returns.
type actor struct {
	name string
	run  func(ctx context.Context) error
}

// runActors runs every actor; the first to fail stops the others (the
// run-group shape of prometheus's main). A clean shutdown returns nil.
func runActors(ctx context.Context, log zerolog.Logger, actors ...actor) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, a := range actors {
		g.Go(func() error {
			err := a.run(gctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Error().Err(err).Str("actor", a.name).Msg("stopped with an error")
				return fmt.Errorf("%s: %w", a.name, err)
			}
			log.Info().Str("actor", a.name).Msg("stopped")
			return nil
		})
	}
	return g.Wait()
}
