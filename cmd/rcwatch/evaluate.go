package main

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rcwatch/rcwatch/enrich"
	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/mediawiki"
	"github.com/rcwatch/rcwatch/rules"
	"github.com/rcwatch/rcwatch/rules/quality"
)

// evaluateFlags configure the rules evaluator stage; `rcwatch run` registers
// them too.
type evaluateFlags struct {
	Rules        []string
	DefaultPack  bool
	Enrich       bool
	EnrichUA     string
	EnrichAPI    string
	EnrichRate   float64
	EnrichConc   int
	MaxMatchRate float64
	MinEvals     int64
	Workers      int
	Reload       time.Duration
	KVLists      bool
	QualityWin   time.Duration
	QualityWikis []string
}

func (f *evaluateFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.Rules, "rules", nil, "rule/list file or directory, re-read when it changes (repeatable; default: the embedded default pack)")
	fs.BoolVar(&f.DefaultPack, "default-pack", false, "also load the embedded default pack when --rules is given (without --rules it is always used)")
	fs.BoolVar(&f.Enrich, "enrich", true, "fetch wikitext, diff and user info from the wiki when a rule needs them")
	fs.StringVar(&f.EnrichUA, "enrich-user-agent", mediawiki.DefaultUserAgent, "User-Agent of enrichment requests (name a contact, per Wikimedia policy)")
	fs.StringVar(&f.EnrichAPI, "enrich-api-url", "", "send every enrichment request to this api.php (default: the event's own wiki)")
	fs.Float64Var(&f.EnrichRate, "enrich-rate", 10, "enrichment requests per second per wiki")
	fs.IntVar(&f.EnrichConc, "enrich-concurrency", 2, "enrichment requests in flight per wiki")
	fs.Float64Var(&f.MaxMatchRate, "max-match-rate", 0.05, "disable a rule that matches more than this share of events (negative: never)")
	fs.Int64Var(&f.MinEvals, "min-evaluations", 1000, "evaluations before a rule's match rate is judged")
	fs.IntVar(&f.Workers, "workers", 4, "events evaluated concurrently")
	fs.DurationVar(&f.Reload, "rules-reload-interval", 5*time.Second, "how often rule files are checked for changes")
	fs.BoolVar(&f.KVLists, "kv-lists", true, "also follow list entries in the KV bucket rules (rcwatch rules list add …)")
	fs.DurationVar(&f.QualityWin, "quality-window", 48*time.Hour, "self-measurement: an alerted edit counts as reverted when reverted within this (0: off; see rcwatch_quality_* metrics)")
	fs.StringSliceVar(&f.QualityWikis, "quality-wikis", nil, "wikis that always get their own rcwatch_quality_* series (beyond them the first 30 seen do; later ones are wiki=\"other\")")
}

// stageConfig turns the flags into the stage's config.
func (f *evaluateFlags) stageConfig() (rules.StageConfig, error) {
	cfg := rules.StageConfig{
		Paths: f.Rules, Workers: f.Workers, ReloadInterval: f.Reload, KVLists: f.KVLists,
		Engine:  rules.EngineConfig{MaxMatchRate: f.MaxMatchRate, MinEvaluations: f.MinEvals},
		Quality: quality.Config{Window: f.QualityWin, Wikis: f.QualityWikis},
	}
	if len(f.Rules) == 0 || f.DefaultPack {
		def, err := defaultPack()
		if err != nil {
			return cfg, err
		}
		cfg.Default = def
	}
	return cfg, nil
}

// stage builds the evaluator stage on rt (evaluate and run use it).
func (f *evaluateFlags) stage(rt *runtime) (stage, error) {
	cfg, err := f.stageConfig()
	if err != nil {
		return stage{}, err
	}
	var enricher rules.Enricher
	if f.Enrich {
		if enricher, err = f.newEnricher(rt); err != nil {
			return stage{}, err
		}
	} else {
		rt.log.Info().Msg("no enrichment: rules are evaluated on the event alone; alerts that needed more are marked partial")
	}
	s, err := rules.NewStage(rt.deps, cfg, enricher)
	if err != nil {
		return stage{}, err
	}
	return stage{"rules", s}, nil
}

// newEnricher is the MediaWiki Action API enrichment of the evaluator.
func (f *evaluateFlags) newEnricher(rt *runtime) (*enrich.Enricher, error) {
	cfg := enrich.Config{UserAgent: f.EnrichUA, PerWikiRate: f.EnrichRate, PerWikiConcurrency: f.EnrichConc}
	if f.EnrichAPI != "" {
		api := f.EnrichAPI
		cfg.APIURLFor = func(*event.RecentChange) string { return api }
	}
	mw, err := rt.mediawikiMetrics()
	if err != nil {
		return nil, err
	}
	return enrich.New(rt.deps, cfg, mw)
}

func newEvaluateCmd() *cobra.Command {
	var (
		c  commonFlags
		ef evaluateFlags
	)
	cmd := &cobra.Command{
		Use:   "evaluate",
		Short: "Run the rules evaluator stage (RECENTCHANGE → ALERTS)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStages(cmd.Context(), "evaluate", c, nil, ef.stage)
		},
	}
	c.register(cmd.Flags(), ":9091")
	ef.register(cmd.Flags())
	return cmd
}
