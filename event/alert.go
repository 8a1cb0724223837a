package event

import (
	"time"
)

// Severity levels, in increasing order. Routing filters compare them with
// SeverityRank.
const (
	SeverityInfo     = "info"
	SeverityLow      = "low"
	SeverityMedium   = "medium"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

// SeverityRank orders severities; unknown names rank 0.
func SeverityRank(s string) int {
	switch s {
	case SeverityInfo:
		return 1
	case SeverityLow:
		return 2
	case SeverityMedium:
		return 3
	case SeverityHigh:
		return 4
	case SeverityCritical:
		return 5
	}
	return 0
}

// RuleRef names the rule that fired. Version changes whenever the rule's
// definition changes (a hash of it), so an alert can be traced to the exact rule.
type RuleRef struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

// Ref is the part of a recentchange an alert carries, so that actions never
// need the original event.
type Ref struct {
	MetaID     string `json:"meta_id"`
	Wiki       string `json:"wiki"`
	ServerURL  string `json:"server_url"`
	ScriptPath string `json:"server_script_path,omitempty"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Namespace  int    `json:"namespace"`
	User       string `json:"user,omitempty"`
	UserType   string `json:"user_type,omitempty"`
	Bot        bool   `json:"bot,omitempty"`
	Minor      bool   `json:"minor,omitempty"`
	OldRev     int64  `json:"old_rev,omitempty"`
	NewRev     int64  `json:"new_rev,omitempty"`
	OldSize    int64  `json:"old_size,omitempty"`
	NewSize    int64  `json:"new_size,omitempty"`
	DiffURL    string `json:"diff_url,omitempty"`
	Timestamp  int64  `json:"timestamp"`
	Comment    string `json:"comment,omitempty"`
	LogType    string `json:"log_type,omitempty"`
	LogAction  string `json:"log_action,omitempty"`
	// What the enricher fetched about the performer, when a rule needed
	// it (absent: unknown): the account's edit count as fetched, shortly
	// after the edit, and its registration time in unix seconds. Only for
	// accounts (named or temporary), never for an IP.
	UserEditCount    *int64 `json:"user_edit_count,omitempty"`
	UserRegistration int64  `json:"user_registration,omitempty"`
}

// Alert is what the rules stage publishes to ALERTS (subject
// alert.<wiki>.<rule-id>). ID is deterministic (see AlertID) and is also the
// Nats-Msg-Id, so re-evaluating a redelivered event never doubles an alert.
type Alert struct {
	ID         string    `json:"id"`
	Rule       RuleRef   `json:"rule"`
	Severity   string    `json:"severity"`
	Score      float64   `json:"score"`
	Reasons    []string  `json:"reasons,omitempty"`
	Event      Ref       `json:"event"`
	DetectedAt time.Time `json:"detected_at"`
	Actions    []string  `json:"actions,omitempty"`
	Tags       []string  `json:"tags,omitempty"`
	// Partial is true when enrichment failed and the rule was evaluated on
	// what was known; Notes says what was missing.
	Partial bool     `json:"partial,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}

// AlertID is the deterministic id of the alert rule ruleID raises for the
// event with meta.id metaID.
func AlertID(ruleID, metaID string) string { return ruleID + "/" + metaID }

// RefOf extracts the alert reference from an event.
func RefOf(ev *RecentChange) Ref {
	r := Ref{
		MetaID: ev.Meta.ID, Wiki: ev.Wiki, ServerURL: ev.ServerURL, ScriptPath: ev.ServerScriptPath,
		Type: ev.Type, Title: ev.Title, Namespace: ev.Namespace, User: ev.User, UserType: ev.UserType(),
		Bot: ev.Bot, Minor: ev.Minor, DiffURL: ev.DiffURL(), Timestamp: ev.Timestamp, Comment: ev.Comment,
		LogType: ev.LogType, LogAction: ev.LogAction,
	}
	if ev.Revision.Old != nil {
		r.OldRev = *ev.Revision.Old
	}
	if ev.Revision.New != nil {
		r.NewRev = *ev.Revision.New
	}
	if ev.Length.Old != nil {
		r.OldSize = *ev.Length.Old
	}
	if ev.Length.New != nil {
		r.NewSize = *ev.Length.New
	}
	return r
}

// SizeDelta is NewSize − OldSize.
func (r Ref) SizeDelta() int64 { return r.NewSize - r.OldSize }

// A named account is new until Wikipedia would autoconfirm it: fewer than
// NewUserEdits edits, or registered less than NewUserAge before the edit.
const (
	NewUserEdits = 10
	NewUserAge   = 4 * 24 * time.Hour
)

// NewAccount reports whether the performer of the edit, by the edit count
// and registration the rules stage fetched, was not autoconfirmed at the
// time of the edit (detected when the event has no time). Unknown is false.
// The IRC line and the patroller feed both call such a user "new".
func (r *Ref) NewAccount(detected time.Time) bool {
	if r.UserEditCount != nil && *r.UserEditCount < NewUserEdits {
		return true
	}
	if r.UserRegistration == 0 {
		return false
	}
	at := detected
	if r.Timestamp != 0 {
		at = time.Unix(r.Timestamp, 0)
	}
	if at.IsZero() {
		return false
	}
	return at.Sub(time.Unix(r.UserRegistration, 0)) < NewUserAge
}
