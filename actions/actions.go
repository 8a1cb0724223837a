// Package actions holds what every action worker shares. The workers
// themselves are packages of their own: irc posts alerts to IRC channels,
// edit makes the wiki edits alerts ask for, feed serves them to browsers.
// Each consumes ALERTS through a pipeline.Runner; this package decodes and
// validates the alert a runner hands to a worker, names the alerts a worker
// takes, makes KV key tokens, and starts a new worker consumer at the
// alerts it has not seen yet rather than at new ones.
package actions

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

// ErrInvalidOption is wrapped by the errors of a worker's options
// (irc.WithFlood(0, 0), edit.WithClientFactory(nil), …).
var ErrInvalidOption = errors.New("invalid option")

// ReasonBadAlert is the dead-letter reason of an alert that cannot be
// decoded or has no id.
const ReasonBadAlert = "bad_alert"

// DecodeAlert decodes and validates the alert in msg. A malformed alert is
// a pipeline.InvalidError (dead-lettered, never retried).
func DecodeAlert(msg jetstream.Msg) (*event.Alert, error) {
	var a event.Alert
	if err := json.Unmarshal(msg.Data(), &a); err != nil {
		return nil, pipeline.Invalid(ReasonBadAlert, fmt.Errorf("decoding alert: %w", err))
	}
	if a.ID == "" {
		return nil, pipeline.Invalid(ReasonBadAlert, errors.New("alert without id"))
	}
	return &a, nil
}

// FilterSubjects returns the filter subjects of a worker that takes the
// alerts of wikis only (nil: every alert).
func FilterSubjects(wikis []string) []string { return pipeline.AlertFilterWikis(wikis) }

// KeyToken maps a name (network, channel, wiki, account) to a token usable
// in a KV key and a consumer name that stays readable and cannot collide:
// the sanitised, case-folded name plus a short hash of it.
func KeyToken(s string) string {
	s = strings.ToLower(s)
	h := sha256.Sum256([]byte(s))
	return pipeline.SubjectToken(strings.TrimLeft(s, "#&")) + "-" + hex.EncodeToString(h[:3])
}
