package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rcwatch/rcwatch/actions/edit"
	"github.com/rcwatch/rcwatch/pipeline"
)

// editFlags configure the edit worker; the wikis live in a YAML file
// (docs/EDIT.md). Credentials come only from RCWATCH_EDIT_OAUTH_TOKEN /
// RCWATCH_EDIT_BOT_PASSWORD or from files (a mounted Secret), never from a
// flag value.
type editFlags struct {
	Config          string
	Live            bool
	OAuthTokenFile  string
	BotPasswordFile string
}

// register adds the flags with a prefix: "" for `act edit` (--config),
// "edit-" for `run` (--edit-config).
func (f *editFlags) register(fs *pflag.FlagSet, prefix string) {
	fs.StringVar(&f.Config, prefix+"config", "", "edit worker configuration file (YAML, see docs/EDIT.md)")
	fs.BoolVar(&f.Live, prefix+"live", false, "make real edits (default: dry-run, changes are only logged and audited)")
	fs.StringVar(&f.OAuthTokenFile, prefix+"oauth-token-file", "", "file holding the OAuth 2 owner-only access token (else env "+edit.EnvOAuthToken+")")
	fs.StringVar(&f.BotPasswordFile, prefix+"bot-password-file", "", "file holding the BotPassword secret (else env "+edit.EnvBotPassword+")")
}

func (f *editFlags) load() (edit.Config, edit.Credentials, error) {
	cfg, err := edit.LoadConfig(f.Config)
	if err != nil {
		return cfg, edit.Credentials{}, err
	}
	if f.Live {
		cfg.Live = true
	}
	creds, err := edit.LoadCredentials(os.Getenv, f.OAuthTokenFile, f.BotPasswordFile)
	if err != nil {
		return cfg, creds, err
	}
	if cfg.Live && creds.Kind() == "" {
		return cfg, creds, fmt.Errorf("live editing needs credentials: set %s or %s, or --oauth-token-file / --bot-password-file",
			edit.EnvOAuthToken, edit.EnvBotPassword)
	}
	return cfg, creds, nil
}

// stage builds the edit actor on rt (used by `act edit` and, when an edit
// config is given, by `run`).
func (f *editFlags) stage(rt *runtime) (stage, error) {
	cfg, creds, err := f.load()
	if err != nil {
		return stage{}, err
	}
	mw, err := rt.mediawikiMetrics()
	if err != nil {
		return stage{}, err
	}
	w, err := edit.New(rt.deps, cfg, edit.NewClientFactory(creds, mw, rt.log))
	if err != nil {
		return stage{}, err
	}
	rt.log.Info().Str("config", f.Config).Bool("live", cfg.Live).Str("auth", creds.Kind()).Msg("edit worker configured")
	return stage{"edit", w}, nil
}

func newActEditCmd() *cobra.Command {
	var c commonFlags
	var f editFlags
	cmd := &cobra.Command{
		Use:   "edit",
		Short: "Make the wiki edits alerts ask for (tag, report, revert): dry-run unless --live",
		Long: `Consumes ALERTS (durable consumer "edit", shared by every replica) and carries out the
edit:<operation> actions of each alert under the bot policy: {{nobots}}/{{bots}}, a kill switch page,
a talk-page stop, trusted users, one revert per (page, user) per 24 h, and one edit budget per bot
account shared through NATS KV. Without --live it only logs and publishes to audit.edit.<wiki>
what it would change. Credentials: env ` + edit.EnvOAuthToken + ` or ` + edit.EnvBotPassword + `,
or --oauth-token-file / --bot-password-file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStages(cmd.Context(), "edit", c, nil, f.stage)
		},
	}
	c.register(cmd.Flags(), ":9094")
	f.register(cmd.Flags(), "")
	_ = cmd.MarkFlagRequired("config")
	cmd.AddCommand(newEditResetTalkCmd())
	return cmd
}

// newEditResetTalkCmd clears a talk-page stop after an operator has read
// the message: the talk page's current revision becomes the new baseline.
func newEditResetTalkCmd() *cobra.Command {
	var c commonFlags
	var f editFlags
	var wiki string
	cmd := &cobra.Command{
		Use:   "reset-talk",
		Short: "Resume editing on a wiki after a message on the bot's talk page was read",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, creds, err := f.load()
			if err != nil {
				return err
			}
			wc, ok := cfg.Wikis[wiki]
			if !ok {
				return fmt.Errorf("--wiki %q is not in %s", wiki, f.Config)
			}
			rt, closeRT, err := setup(cmd.Context(), "edit-reset-talk", c, nil)
			if err != nil {
				return err
			}
			defer closeRT()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			kv, err := rt.js.KeyValue(ctx, pipeline.BucketActions)
			if err != nil {
				return fmt.Errorf("opening KV bucket %s: %w", pipeline.BucketActions, err)
			}
			client, err := edit.NewClientFactory(creds, nil, rt.log)(wiki, wc)
			if err != nil {
				return err
			}
			if err := edit.ResetTalkStop(ctx, kv, client, wiki, wc.Account, rt.deps.Clock()()); err != nil {
				return err
			}
			rt.log.Info().Str("wiki", wiki).Msg("talk-page stop reset; editing resumes at the next check")
			return nil
		},
	}
	c.register(cmd.Flags(), "")
	f.register(cmd.Flags(), "")
	cmd.Flags().StringVar(&wiki, "wiki", "", "wiki whose stop to reset (a key of wikis: in the config)")
	_ = cmd.MarkFlagRequired("config")
	_ = cmd.MarkFlagRequired("wiki")
	return cmd
}
