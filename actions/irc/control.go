package irc

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/lrstanley/girc"
)

// onPrivmsg handles control commands in the control channel; only the
// replica holding the control channel's lease answers.
func (n *network) onPrivmsg(_ *girc.Client, e girc.Event) {
	ctl := n.cfg.Control
	if ctl == nil || e.Source == nil || len(e.Params) < 2 || !strings.EqualFold(e.Params[0], ctl.Channel) {
		return
	}
	if n.ctrl.lease == nil || !n.ctrl.lease.Valid(n.w.now()) {
		return
	}
	cmd, ok, err := parseControl(e.Last(), n.w.cfg.MaxMute)
	if !ok {
		return
	}
	if !trusted(ctl.Trusted, e.Source.Name, e.Source.String()) {
		n.log.Info().Str("nick", e.Source.Name).Msg("control command from an untrusted nick ignored")
		return
	}
	nick := e.Source.Name
	n.w.goBackground(func(ctx context.Context) { n.control(ctx, nick, cmd, err) })
}

// control carries out one command and queues its reply.
func (n *network) control(ctx context.Context, nick string, cmd controlCommand, perr error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reply := func(s string) { n.queue.AddControl(n.cfg.Control.Channel, nick+": "+s) }
	if perr != nil {
		reply(perr.Error())
		return
	}
	now := n.w.now()
	switch cmd.name {
	case "status":
		reply(n.w.status(ctx, now))
	case "mute":
		m, err := n.w.mutes.Mute(ctx, cmd.rule, cmd.dur, nick, now)
		if err != nil {
			n.log.Error().Err(err).Msg("!mute failed")
			reply("mute failed: " + err.Error())
			return
		}
		n.log.Info().Str("rule", cmd.rule).Time("until", m.Until).Str("by", nick).Msg("rule muted")
		reply(fmt.Sprintf("muted rule %s until %s (%v)", cmd.rule, m.Until.Format(time.RFC3339), cmd.dur))
	case "unmute":
		was, err := n.w.mutes.Unmute(ctx, cmd.rule, now)
		if err != nil {
			reply("unmute failed: " + err.Error())
			return
		}
		n.log.Info().Str("rule", cmd.rule).Str("by", nick).Msg("rule unmuted")
		if was {
			reply("unmuted rule " + cmd.rule)
		} else {
			reply("rule " + cmd.rule + " was not muted")
		}
	}
}

// status is the !status reply.
func (w *Worker) status(ctx context.Context, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "replica %s:", w.cfg.ReplicaID)
	for _, n := range w.nets {
		n.mu.Lock()
		conn := n.connected
		n.mu.Unlock()
		var held []string
		for _, c := range n.chans {
			if c.lease != nil && c.lease.Valid(now) && c != n.ctrl {
				held = append(held, c.name)
			}
		}
		state := "down"
		if conn {
			state = "up"
		}
		fmt.Fprintf(&b, " %s %s, posting to %d/%d channels [%s], queue %d; sent %d (digests %d), folded %d, delayed %d;",
			n.cfg.Name, state, len(held), len(n.cfg.Channels), strings.Join(held, " "), n.queue.Len(),
			n.sent.Load(), n.digests.Load(), n.folded.Load(), n.delayed.Load())
	}
	mutes, err := w.mutes.List(ctx, now)
	switch {
	case err != nil:
		b.WriteString(" mutes: unknown (" + err.Error() + ")")
	case len(mutes) == 0:
		b.WriteString(" no mutes")
	default:
		b.WriteString(" muted:")
		for _, m := range mutes {
			fmt.Fprintf(&b, " %s until %s", m.Rule, m.Until.Format("15:04Z"))
		}
	}
	return b.String()
}

// parseMuteDuration accepts Go durations plus d (days) and w (weeks).
func parseMuteDuration(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil {
				return 0, fmt.Errorf("bad duration %q", s)
			}
			return time.Duration(v * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q (examples: 30m, 2h, 1d)", s)
	}
	return d, nil
}

// trusted reports whether source ("nick!user@host") matches a trusted
// entry: a bare nick, or a mask with * and ? (case-insensitive).
func trusted(entries []string, nick, source string) bool {
	nick, source = strings.ToLower(nick), strings.ToLower(source)
	for _, e := range entries {
		e = strings.ToLower(e)
		if !strings.Contains(e, "!") {
			if e == nick {
				return true
			}
			continue
		}
		if ok, _ := path.Match(strings.ReplaceAll(e, "/", "\x00"), strings.ReplaceAll(source, "/", "\x00")); ok {
			return true
		}
	}
	return false
}

// controlCommand is a parsed control-channel command.
type controlCommand struct {
	name string // status, mute, unmute
	rule string
	dur  time.Duration
}

// parseControl parses "!status", "!mute <rule> <duration>", "!unmute
// <rule>". ok is false for lines that are not commands; err explains a
// malformed command.
func parseControl(text string, maxMute time.Duration) (controlCommand, bool, error) {
	f := strings.Fields(sanitize(text))
	if len(f) == 0 || !strings.HasPrefix(f[0], "!") {
		return controlCommand{}, false, nil
	}
	switch strings.ToLower(f[0]) {
	case "!status":
		return controlCommand{name: "status"}, true, nil
	case "!mute":
		if len(f) != 3 {
			return controlCommand{}, true, errors.New("usage: !mute <rule> <duration>")
		}
		d, err := parseMuteDuration(f[2])
		if err != nil {
			return controlCommand{}, true, err
		}
		if d < time.Second || d > maxMute {
			return controlCommand{}, true, fmt.Errorf("duration must be between 1s and %v", maxMute)
		}
		return controlCommand{name: "mute", rule: f[1], dur: d}, true, nil
	case "!unmute":
		if len(f) != 2 {
			return controlCommand{}, true, errors.New("usage: !unmute <rule>")
		}
		return controlCommand{name: "unmute", rule: f[1]}, true, nil
	}
	return controlCommand{}, false, nil
}
