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
