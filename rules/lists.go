package rules

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Lists are named sets of strings rules look up with in_list and
// list_contains: watched pages, bad words, trusted users, as the
// Countervandalism Network keeps them. Each entry may expire.
//
// They come from the `lists:` section of a rule file or from list files
// (NAME.list or NAME.txt: one entry per line, `# comments`, an optional
// `;expires=2026-12-31` or RFC 3339 time after the entry).
type Lists struct {
	byName map[string]*List
}

// List is one named list.
type List struct {
	Name    string
	entries map[string]time.Time // value → expiry (zero: never)
	lower   map[string]time.Time // lower-cased value → expiry, for list_contains
	words   *regexp.Regexp       // (?i)\b(?:e1|e2|…)\b over every entry
}

// Len is the number of entries (expired ones included).
func (l *List) Len() int { return len(l.entries) }

// Contains reports whether s is an entry not expired at now (exact match).
func (l *List) Contains(s string, now time.Time) bool {
	exp, ok := l.entries[s]
	return ok && (exp.IsZero() || now.Before(exp))
}

// Match reports whether text contains an unexpired entry as a whole word,
// case-insensitively.
func (l *List) Match(text string, now time.Time) bool {
	if l.words == nil || text == "" {
		return false
	}
	for _, m := range l.words.FindAllString(text, 64) {
		if exp, ok := l.lower[strings.ToLower(m)]; ok && (exp.IsZero() || now.Before(exp)) {
			return true
		}
	}
	return false
}

// Get returns the list called name, or nil.
func (ls *Lists) Get(name string) *List {
	if ls == nil {
		return nil
	}
	return ls.byName[name]
}

// Names lists the list names, sorted.
func (ls *Lists) Names() []string {
	if ls == nil {
		return nil
	}
	out := make([]string, 0, len(ls.byName))
	for n := range ls.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (ls *Lists) add(name string, entries []listEntrySpec) {
	if ls.byName == nil {
		ls.byName = map[string]*List{}
	}
	l := ls.byName[name]
	if l == nil {
		l = &List{Name: name, entries: map[string]time.Time{}, lower: map[string]time.Time{}}
		ls.byName[name] = l
	}
	for _, e := range entries {
		l.entries[e.Value] = e.Expires
		l.lower[strings.ToLower(e.Value)] = e.Expires
	}
}

// finish compiles the word matchers once every source is in.
func (ls *Lists) finish() error {
	for _, l := range ls.byName {
		if len(l.lower) == 0 {
			continue
		}
		alts := make([]string, 0, len(l.lower))
		for v := range l.lower {
			alts = append(alts, regexp.QuoteMeta(v))
		}
		sort.Slice(alts, func(i, j int) bool {
			return len(alts[i]) > len(alts[j]) || len(alts[i]) == len(alts[j]) && alts[i] < alts[j]
		})
		re, err := regexp.Compile(`(?i)\b(?:` + strings.Join(alts, "|") + `)\b`)
		if err != nil {
			return fmt.Errorf("list %s: %w", l.Name, err)
		}
		l.words = re
	}
	return nil
}

// listEntrySpec is one entry in a rule file's lists section: a string, or
// {value: …, expires: …}.
type listEntrySpec struct {
	Value   string
	Expires time.Time
}

func (e *listEntrySpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		e.Value = n.Value
		return nil
	}
	var full struct {
		Value   string `yaml:"value"`
		Expires string `yaml:"expires"`
	}
	if err := n.Decode(&full); err != nil {
		return err
	}
	if full.Value == "" {
		return fmt.Errorf("line %d: list entry without value", n.Line)
	}
	e.Value = full.Value
	if full.Expires != "" {
		t, err := parseExpiry(full.Expires)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		e.Expires = t
	}
	return nil
}

func parseExpiry(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("expiry %q: want 2006-01-02 or an RFC 3339 time", s)
}

// parseListFile reads a list file: one entry per line; blank lines and
// lines starting with '#' are skipped; " #" starts a trailing comment; an
// entry may end with ";expires=<date>".
func parseListFile(file string, data []byte) ([]listEntrySpec, []*CompileError) {
	var out []listEntrySpec
	var problems []*CompileError
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		var e listEntrySpec
		if v, exp, ok := strings.Cut(line, ";expires="); ok {
			t, err := parseExpiry(exp)
			if err != nil {
				problems = append(problems, &CompileError{File: file, Line: n, Col: len(v) + 2, Msg: err.Error(), Err: ErrInvalidRule})
				continue
			}
			line, e.Expires = strings.TrimSpace(v), t
		}
		e.Value = line
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, &CompileError{File: file, Msg: "reading list: " + err.Error()})
	}
	return out, problems
}
