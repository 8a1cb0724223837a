// Package deploy_test checks every shipped action configuration (the
// examples, the Kubernetes ConfigMaps, the Toolforge job's) against the
// rules they route: a config that names a rule id the default pack (plus
// the deployed local rules) does not have fails, as does a rule posting to
// a channel no shipped IRC config joins.
package deploy_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/actions/edit"
	"github.com/rcwatch/rcwatch/actions/irc"
	"github.com/rcwatch/rcwatch/rules"
	"github.com/rcwatch/rcwatch/rules/pack"
)

// knownRules compiles the default pack and the deployed local rules.
func knownRules(t *testing.T) []*rules.Rule {
	t.Helper()
	var srcs []rules.Source
	for _, f := range pack.Files() {
		srcs = append(srcs, rules.Source{Name: "default-pack/" + f.Name, Data: f.Data})
	}
	local, err := filepath.Glob("k8s/base/rules/*.yaml")
	require.NoError(t, err)
	for _, f := range local {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		srcs = append(srcs, rules.Source{Name: f, Data: b})
	}
	rs, _, err := rules.Compile(srcs, rules.CompileOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, rs)
	return rs
}

// shipped returns the files under deploy/ whose name says they configure
// the IRC or the edit worker.
func shipped(t *testing.T, kind string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() || !strings.Contains(name, kind) || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.Contains("\n"+string(b), "\napiVersion:") { // not a Kubernetes manifest
			out = append(out, path)
		}
		return nil
	}))
	require.NotEmpty(t, out, "no shipped %s config found", kind)
	return out
}

func TestShippedConfigsNameRealRules(t *testing.T) {
	rs := knownRules(t)
	ids := map[string]bool{}
	ircTargets := map[string][]string{} // irc:<target> → rule ids
	for _, r := range rs {
		ids[r.ID] = true
		for _, a := range r.Actions {
			if target, ok := strings.CutPrefix(a, "irc:"); ok {
				ircTargets[target] = append(ircTargets[target], r.ID)
			}
		}
	}
	known := func(id string) bool { return ids[id] }

	for _, f := range shipped(t, "irc") {
		t.Run(f, func(t *testing.T) {
			cfg, err := irc.LoadConfig(f)
			require.NoError(t, err)
			joined := map[string]bool{}
			for _, n := range cfg.Networks {
				for _, ch := range n.Channels {
					for _, id := range ch.Route.Rules {
						assert.True(t, known(id), "%s: channel %s routes rule %q, which the default pack does not have", f, ch.Name, id)
					}
					assert.False(t, strings.HasPrefix(strings.ToLower(ch.Name), "#cvn-"),
						"%s: %s belongs to the Countervandalism Network; use a channel of our own", f, ch.Name)
					if ch.Route.FromActions == nil || *ch.Route.FromActions {
						joined[strings.ToLower(ch.Name)] = true
						joined[strings.ToLower(n.Name+"/"+ch.Name)] = true
					}
				}
			}
			for target, rids := range ircTargets {
				assert.True(t, joined[strings.ToLower(target)],
					"%s: rules %v post to irc:%s, but no channel takes alerts from actions there", f, rids, target)
			}
		})
	}
	for _, f := range shipped(t, "edit") {
		t.Run(f, func(t *testing.T) {
			cfg, err := edit.LoadConfig(f)
			require.NoError(t, err)
			for wiki, w := range cfg.Wikis {
				for id := range w.Tag.Rules {
					assert.True(t, known(id), "%s: wiki %s tags for rule %q, which the default pack does not have", f, wiki, id)
				}
			}
		})
	}
}

// No shipped rule posts to a channel of the Countervandalism Network.
func TestPackPostsToOurOwnChannels(t *testing.T) {
	for _, r := range knownRules(t) {
		for _, a := range r.Actions {
			assert.False(t, strings.HasPrefix(strings.ToLower(a), "irc:#cvn-"), "rule %s: %s", r.ID, a)
		}
	}
	assert.True(t, slices.ContainsFunc(knownRules(t), func(r *rules.Rule) bool { return r.ID == "citation-dead-no-archive" }))
}

// The Toolforge job's IRC config loads and takes every secret from an
// environment variable (set with `toolforge envvars`): a job has no
// /run/secrets. DEPLOY.md's Toolforge steps copy this file, not the
// general example (whose second network reads a file secret).
func TestToolforgeIRCConfigSecretsFromEnvOnly(t *testing.T) {
	const f = "toolforge/irc.yaml"
	cfg, err := irc.LoadConfig(f)
	require.NoError(t, err)
	require.NotEmpty(t, cfg.Networks)
	secrets := 0
	for _, n := range cfg.Networks {
		for what, s := range map[string]irc.Secret{"sasl_password": n.SASLPassword, "server_password": n.ServerPassword} {
			if !s.IsSet() {
				continue
			}
			secrets++
			assert.Empty(t, s.File, "%s: network %s %s reads a file; on Toolforge use {env: …}", f, n.Name, what)
			require.NotEmpty(t, s.Env, "%s: network %s %s", f, n.Name, what)
			t.Setenv(s.Env, "")
			_, err := s.Resolve()
			assert.Error(t, err, "%s: %s resolves with %s empty", f, what, s.Env)
			t.Setenv(s.Env, "from-toolforge-envvars")
			v, err := s.Resolve()
			require.NoError(t, err, "%s: %s", f, what)
			assert.Equal(t, "from-toolforge-envvars", v)
		}
	}
	assert.Positive(t, secrets, "the Toolforge example shows how a secret is given")

	doc, err := os.ReadFile("../docs/DEPLOY.md")
	require.NoError(t, err)
	start := strings.Index(string(doc), "## 2. Toolforge")
	end := strings.Index(string(doc), "## Storage limits")
	require.True(t, start >= 0 && end > start, "DEPLOY.md has a Toolforge section")
	section := string(doc)[start:end]
	assert.Contains(t, section, "deploy/toolforge/irc.yaml", "the Toolforge steps copy the Toolforge IRC example")
	assert.NotContains(t, section, "deploy/examples/irc.yaml", "the general example has a file secret that fails on Toolforge")
}
