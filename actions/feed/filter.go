package feed

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/rcwatch/rcwatch/event"
)

// ErrInvalidFilter is returned by ParseFilter for a query it cannot use.
var ErrInvalidFilter = errors.New("invalid filter")

// User classes a filter selects (see ClassOf).
const (
	ClassIP    = "ip"
	ClassTemp  = "temp"
	ClassNew   = "new"
	ClassNamed = "named"
)

// TagNewUser on an alert marks its user as a new account whatever the
// enrichment says (a rule's own judgement).
const TagNewUser = "new-user"

// Limits of a filter query, so a URL cannot make the server work hard.
const (
	maxFilterValues = 32
	maxFilterValue  = 200
)

// Filter selects alerts. Empty fields select everything; several values of
// one field are alternatives (OR), fields combine with AND.
type Filter struct {
	Wikis       []string `json:"wiki,omitempty"`
	Namespaces  []int    `json:"ns,omitempty"`
	Rules       []string `json:"rule,omitempty"`
	MinSeverity string   `json:"severity,omitempty"`
	MinScore    float64  `json:"score,omitempty"`
	Users       []string `json:"user,omitempty"`
}

// ClassOf is the user class of an alert: ip, temp, new or named; "" for a
// redacted user. A named account is new when the rule tagged the alert
// new-user, or when the enrichment the alert carries says it is not
// autoconfirmed yet (event.Ref.NewAccount); unknown counts as not new.
func ClassOf(a *event.Alert) string {
	t := a.Event.UserType
	if t == "" {
		t = event.UserType(a.Event.User)
	}
	if t == ClassNamed && (slices.Contains(a.Tags, TagNewUser) || a.Event.NewAccount(a.DetectedAt)) {
		return ClassNew
	}
	return t
}

// ParseFilter reads a filter from URL query parameters: wiki, ns, rule and
// user may repeat or hold comma-separated lists; severity is the minimum
// severity name, score the minimum score.
func ParseFilter(q url.Values) (Filter, error) {
	var f Filter
	var errs []error
	list := func(key string) []string {
		var out []string
		for _, v := range q[key] {
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" && !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
		if len(out) > maxFilterValues {
			errs = append(errs, fmt.Errorf("%w: more than %d values of %s", ErrInvalidFilter, maxFilterValues, key))
			return nil
		}
		for _, s := range out {
			if len(s) > maxFilterValue {
				errs = append(errs, fmt.Errorf("%w: a %s value is longer than %d bytes", ErrInvalidFilter, key, maxFilterValue))
				return nil
			}
		}
		return out
	}
	f.Wikis = list("wiki")
	f.Rules = list("rule")
	for _, s := range list("ns") {
		n, err := strconv.Atoi(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: ns %q is not a number", ErrInvalidFilter, s))
			continue
		}
		f.Namespaces = append(f.Namespaces, n)
	}
	for _, s := range list("user") {
		switch s {
		case ClassIP, ClassTemp, ClassNew, ClassNamed:
			f.Users = append(f.Users, s)
		default:
			errs = append(errs, fmt.Errorf("%w: user class %q (want ip, temp, new or named)", ErrInvalidFilter, s))
		}
	}
	if s := q.Get("severity"); s != "" {
		if event.SeverityRank(s) == 0 {
			errs = append(errs, fmt.Errorf("%w: severity %q (want info, low, medium, high or critical)", ErrInvalidFilter, s))
		}
		f.MinSeverity = s
	}
	if s := q.Get("score"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v != v {
			errs = append(errs, fmt.Errorf("%w: score %q is not a number", ErrInvalidFilter, s))
		}
		f.MinScore = v
	}
	return f, errors.Join(errs...)
}

// Match reports whether the alert passes the filter.
func (f *Filter) Match(a *event.Alert) bool {
	if len(f.Wikis) > 0 && !slices.Contains(f.Wikis, a.Event.Wiki) {
		return false
	}
	if len(f.Rules) > 0 && !slices.Contains(f.Rules, a.Rule.ID) {
		return false
	}
	if len(f.Namespaces) > 0 && !slices.Contains(f.Namespaces, a.Event.Namespace) {
		return false
	}
	if f.MinSeverity != "" && event.SeverityRank(a.Severity) < event.SeverityRank(f.MinSeverity) {
		return false
	}
	if f.MinScore != 0 && a.Score < f.MinScore {
		return false
	}
	if len(f.Users) > 0 {
		c := ClassOf(a)
		// A new account is also a named one: "named" selects both.
		if !slices.Contains(f.Users, c) && (c != ClassNew || !slices.Contains(f.Users, ClassNamed)) {
			return false
		}
	}
	return true
}
