// Package event holds the types that cross stage boundaries: the Wikimedia
// recentchange event as consumers read it, and the Alert the rules stage
// publishes. It has no dependency on NATS, HTTP or any stage.
package event

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	json "github.com/goccy/go-json"
)

// Errors returned by Decode. They are sentinels so that ingest can label the
// dead-letter reason and the malformed metric with errors.Is.
var (
	// ErrInvalidUTF8 means the payload is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("invalid UTF-8")
	// ErrInvalidJSON means the payload is not a JSON object of the expected shape.
	ErrInvalidJSON = errors.New("invalid JSON")
	// ErrMissingID means meta.id is absent or empty: the event cannot be deduplicated.
	ErrMissingID = errors.New("missing meta.id")
	// ErrTooLarge means the payload exceeds the configured size limit.
	ErrTooLarge = errors.New("event too large")
)

// Meta is the event envelope. Old (2018/19) events carry SchemaURI and no
// Stream; newer ones carry Topic/Partition/Offset added by EventStreams.
type Meta struct {
	URI       string `json:"uri,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	ID        string `json:"id"`
	DT        string `json:"dt"`
	Domain    string `json:"domain,omitempty"`
	Stream    string `json:"stream,omitempty"`
	Topic     string `json:"topic,omitempty"`
	Partition *int64 `json:"partition,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
	SchemaURI string `json:"schema_uri,omitempty"`
	Key       any    `json:"key,omitempty"`
}

// OldNew is the {old,new} pair of length and revision. Either side may be
// absent (2019 "new" events) or null (2018 "new" events); both decode to nil.
type OldNew struct {
	Old *int64 `json:"old,omitempty"`
	New *int64 `json:"new,omitempty"`
}

// RecentChange is a mediawiki/recentchange event (schema 1.0.x and the legacy
// 1/2 schemas). Every field except Meta.ID may be missing.
type RecentChange struct {
	Schema           string          `json:"$schema,omitempty"`
	Meta             Meta            `json:"meta"`
	ID               *int64          `json:"id,omitempty"` // rc_id; absent on abusefilter/hit and patrol log events
	Type             string          `json:"type"`         // edit, new, log, categorize, external
	Namespace        int             `json:"namespace"`
	Title            string          `json:"title"`
	TitleURL         string          `json:"title_url,omitempty"`
	Comment          string          `json:"comment"`
	ParsedComment    string          `json:"parsedcomment,omitempty"`
	Timestamp        int64           `json:"timestamp"`
	User             string          `json:"user,omitempty"` // absent when redacted
	Bot              bool            `json:"bot"`
	Minor            bool            `json:"minor,omitempty"`
	Patrolled        *bool           `json:"patrolled,omitempty"`
	Length           OldNew          `json:"length"`
	Revision         OldNew          `json:"revision"`
	ServerURL        string          `json:"server_url"`
	ServerName       string          `json:"server_name"`
	ServerScriptPath string          `json:"server_script_path"`
	Wiki             string          `json:"wiki"`
	NotifyURL        string          `json:"notify_url,omitempty"`
	LogID            *int64          `json:"log_id,omitempty"`
	LogType          string          `json:"log_type,omitempty"`
	LogAction        string          `json:"log_action,omitempty"`
	LogParams        json.RawMessage `json:"log_params,omitempty"` // object, array or string
	LogActionComment string          `json:"log_action_comment,omitempty"`
}

// Decode parses one recentchange event. It rejects invalid UTF-8 (the JSON
// decoder would silently replace it) and events without meta.id. The returned
// error wraps one of the sentinels above.
func Decode(data []byte) (*RecentChange, error) {
	var ev RecentChange
	if err := DecodeInto(data, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// DecodeInto is Decode into a caller-owned value, for hot loops that reuse one.
func DecodeInto(data []byte, ev *RecentChange) error {
	*ev = RecentChange{}
	if !utf8.Valid(data) {
		return ErrInvalidUTF8
	}
	if err := json.Unmarshal(data, ev); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	if ev.Meta.ID == "" {
		return ErrMissingID
	}
	return nil
}

// IsCanary reports whether the event is a synthetic Event Platform canary.
func (ev *RecentChange) IsCanary() bool { return ev.Meta.Domain == "canary" }

// Time returns meta.dt parsed. All three formats seen in the wild
// ("2018-03-07T16:16:17+00:00", "2024-02-06T16:58:10Z",
// "2025-08-29T06:45:17.001Z") are RFC 3339. When meta.dt is missing or
// unparsable, the rc timestamp (seconds) is used; zero if neither exists.
func (ev *RecentChange) Time() time.Time {
	if t, err := time.Parse(time.RFC3339Nano, ev.Meta.DT); err == nil {
		return t
	}
	if ev.Timestamp > 0 {
		return time.Unix(ev.Timestamp, 0).UTC()
	}
	return time.Time{}
}

// LogParamsMap returns log_params when it is a JSON object, else nil.
func (ev *RecentChange) LogParamsMap() map[string]any {
	p := bytes.TrimSpace(ev.LogParams)
	if len(p) == 0 || p[0] != '{' {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(p, &m) != nil {
		return nil
	}
	return m
}

// UserType classifies the performer as AbuseFilter does: "ip" for an IP
// address, "temp" for a temporary account (~2024-12345), "named" otherwise,
// and "" when the user is redacted.
func (ev *RecentChange) UserType() string { return UserType(ev.User) }

// DiffURL is the link a patroller clicks: the diff for edits, the page for
// creations, the notify_url otherwise.
func (ev *RecentChange) DiffURL() string {
	base := ev.ServerURL + ev.ServerScriptPath + "/index.php"
	switch {
	case ev.Type == "edit" && ev.Revision.New != nil && ev.Revision.Old != nil:
		return base + "?diff=" + strconv.FormatInt(*ev.Revision.New, 10) + "&oldid=" + strconv.FormatInt(*ev.Revision.Old, 10)
	case ev.Type == "new" && ev.Revision.New != nil:
		return base + "?oldid=" + strconv.FormatInt(*ev.Revision.New, 10)
	case ev.NotifyURL != "":
		return ev.NotifyURL
	}
	return ev.TitleURL
}

// SizeDelta is new length minus old length (a missing side counts as 0).
func (ev *RecentChange) SizeDelta() int64 {
	var o, n int64
	if ev.Length.Old != nil {
		o = *ev.Length.Old
	}
	if ev.Length.New != nil {
		n = *ev.Length.New
	}
	return n - o
}
