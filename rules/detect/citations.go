package detect

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Citations reports the outdated and weak citations in a page's wikitext:
//
//   - StaleAccessDates: {{cite …}} / {{citation …}} templates whose
//     access-date (or accessdate) is older than maxAge before now and that
//     have no archive-url;
//   - DeadNoArchive: citations marked url-status=dead (or the older
//     deadurl=yes) without archive-url, and {{dead link}} tags not attached to
//     a citation that has an archive-url (or followed by {{webarchive}});
//   - BareURLs: <ref>http…</ref> references that hold only a URL, and
//     [http://…] external links with no title.
//
// Access dates are read in the formats editors write: 2019-05-01, 1 May 2019,
// May 1, 2019, May 2019, 2019-05 (month names full or abbreviated). A date
// given only to the month counts from the month's last day, so that rounding
// never makes a citation stale early. Unparsable dates are not counted.
func Citations(text string, now time.Time, maxAge time.Duration) CitationReport {
	var rep CitationReport
	tpls := templates(text)
	cutoff := now.Add(-maxAge)
	for i, t := range tpls {
		switch {
		case isCiteTemplate(t.name):
			hasArchive := t.param("archive-url", "archiveurl") != "" || followedBy(text, tpls, i, "webarchive")
			if hasArchive {
				continue
			}
			status := strings.ToLower(t.param("url-status", "deadurl", "dead-url"))
			dead := status == "dead" || status == "yes" || status == "true" || status == "y"
			if dead {
				rep.DeadNoArchive++
			} else if followedBy(text, tpls, i, deadLinkNames...) {
				rep.DeadNoArchive++
			}
			if d, ok := ParseDate(t.param("access-date", "accessdate")); ok && d.Before(cutoff) {
				rep.StaleAccessDates++
			}
		case isDeadLinkTemplate(t.name):
			// Counted with its citation above when it follows one.
			if i > 0 && isCiteTemplate(tpls[i-1].name) && adjacent(text, tpls[i-1].end, t.start) {
				continue
			}
			if followedBy(text, tpls, i, "webarchive") {
				continue
			}
			rep.DeadNoArchive++
		}
	}
	rep.BareURLs = bareURLs(text)
	return rep
}

// template is one {{name|params}} occurrence (top-level or nested).
type template struct {
	name       string // lower case, underscores as spaces, trimmed
	params     map[string]string
	start, end int // byte offsets of "{{" and just after "}}"
}

func (t template) param(names ...string) string {
	for _, n := range names {
		if v, ok := t.params[n]; ok && v != "" {
			return v
		}
	}
	return ""
}

// maxTemplates bounds the work on pathological pages.
const maxTemplates = 20000

// templates parses every template in text, in order of their start, with
// named parameters split at top-level pipes (pipes inside nested templates
// and [[links|…]] do not split).
func templates(text string) []template {
	var out []template
	var stack []int
	for i := 0; i+1 < len(text) && len(out) < maxTemplates; i++ {
		switch {
		case text[i] == '{' && text[i+1] == '{':
			stack = append(stack, i)
			i++
		case text[i] == '}' && text[i+1] == '}' && len(stack) > 0:
			start := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			out = append(out, parseTemplate(text[start+2:i], start, i+2))
			i++
		}
	}
	// Sort by start (inner templates close first).
	sortTemplates(out)
	return out
}

func sortTemplates(t []template) {
	sort.SliceStable(t, func(i, j int) bool { return t[i].start < t[j].start })
}

func parseTemplate(body string, start, end int) template {
	parts := splitTopLevel(body)
	t := template{start: start, end: end, params: map[string]string{}}
	if len(parts) == 0 {
		return t
	}
	t.name = strings.ToLower(strings.TrimSpace(strings.ReplaceAll(parts[0], "_", " ")))
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		t.params[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	return t
}

// splitTopLevel splits a template body at pipes that are not inside nested
// {{…}} or [[…]].
func splitTopLevel(body string) []string {
	var parts []string
	depth, last := 0, 0
	for i := 0; i < len(body); i++ {
		switch {
		case i+1 < len(body) && (body[i] == '{' && body[i+1] == '{' || body[i] == '[' && body[i+1] == '['):
			depth++
			i++
		case i+1 < len(body) && (body[i] == '}' && body[i+1] == '}' || body[i] == ']' && body[i+1] == ']'):
			if depth > 0 {
				depth--
			}
			i++
		case body[i] == '|' && depth == 0:
			parts = append(parts, body[last:i])
			last = i + 1
		}
	}
	return append(parts, body[last:])
}

func isCiteTemplate(name string) bool {
	return strings.HasPrefix(name, "cite ") || name == "citation" || name == "cite"
}

// deadLinkNames are {{Dead link}} and the names that lead to it or wrap it
// on the big wikis' English-named templates: its redirects (Deadlink,
// Dead-link, Dead url, 404, Dl, Broken link, Link broken) and {{Permanent dead
// link}}, which InternetArchiveBot writes when no archive exists (it is
// {{Dead link}} with fix-attempted=yes). Lower case, as templates() names them.
var deadLinkNames = []string{"dead link", "deadlink", "dead-link", "dead url", "deadurl", "404", "dl",
	"broken link", "brokenlink", "link broken", "permanent dead link", "permanently dead link", "permanent deadlink"}

func isDeadLinkTemplate(name string) bool {
	for _, n := range deadLinkNames {
		if name == n {
			return true
		}
	}
	return false
}

// followedBy reports whether template i is directly followed (only
// whitespace or punctuation between) by a template with one of names.
func followedBy(text string, tpls []template, i int, names ...string) bool {
	for j := i + 1; j < len(tpls); j++ {
		if tpls[j].start < tpls[i].end {
			continue // nested inside template i
		}
		if !adjacent(text, tpls[i].end, tpls[j].start) {
			return false
		}
		for _, n := range names {
			if tpls[j].name == n {
				return true
			}
		}
		return false
	}
	return false
}

func adjacent(text string, from, to int) bool {
	if from > to || to > len(text) {
		return false
	}
	return strings.TrimSpace(strings.Trim(text[from:to], " \t\n.,;")) == ""
}

var (
	bareRefRE    = regexp.MustCompile(`(?i)^\[?\s*(?:https?:)?//[^\s\]]+\s*\]?$`)
	untitledLink = regexp.MustCompile(`(?i)\[(?:https?:)?//[^\s\]]+\s*\]`)
)

// bareURLs counts references holding only a URL, then untitled [http…]
// links in the text outside references. It scans for <ref …>…</ref> by hand:
// a lazy regexp over a whole page is the slow part otherwise.
func bareURLs(text string) int {
	lower := asciiLower(text) // same byte offsets as text
	n := 0
	var rest strings.Builder
	pos := 0
	for {
		i := strings.Index(lower[pos:], "<ref")
		if i < 0 {
			break
		}
		start := pos + i
		after := start + len("<ref")
		if after < len(lower) && lower[after] != '>' && lower[after] != ' ' && lower[after] != '\t' && lower[after] != '\n' {
			rest.WriteString(text[pos:after]) // <references>, <refname…>
			pos = after
			continue
		}
		gt := strings.IndexByte(lower[after:], '>')
		if gt < 0 {
			break
		}
		open := after + gt + 1
		if lower[open-2] == '/' { // <ref name=x />
			rest.WriteString(text[pos:open])
			pos = open
			continue
		}
		end := strings.Index(lower[open:], "</ref")
		if end < 0 {
			break
		}
		if bareRefRE.MatchString(strings.TrimSpace(text[open : open+end])) {
			n++
		}
		rest.WriteString(text[pos:start])
		close := open + end
		if gt2 := strings.IndexByte(lower[close:], '>'); gt2 >= 0 {
			pos = close + gt2 + 1
		} else {
			pos = len(text)
		}
	}
	rest.WriteString(text[pos:])
	r := rest.String()
	if !strings.Contains(r, "//") {
		return n
	}
	return n + len(untitledLink.FindAllStringIndex(r, -1))
}

// asciiLower lower-cases ASCII letters only, so that byte offsets in the
// result are offsets in s (strings.ToLower may change lengths).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

var months = map[string]time.Month{
	"january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
	"september": 9, "october": 10, "november": 11, "december": 12,
	"jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9,
	"oct": 10, "nov": 11, "dec": 12,
}

var (
	isoDateRE   = regexp.MustCompile(`^(\d{4})-(\d{1,2})(?:-(\d{1,2}))?$`)
	dmyRE       = regexp.MustCompile(`^(\d{1,2})\s+([A-Za-z]+)\.?,?\s+(\d{4})$`)
	mdyRE       = regexp.MustCompile(`^([A-Za-z]+)\.?\s+(\d{1,2}),?\s+(\d{4})$`)
	monthYearRE = regexp.MustCompile(`^([A-Za-z]+)\.?,?\s+(\d{4})$`)
)

// ParseDate reads a date as editors write it in citation templates:
// 2019-05-01, 2019-05, 1 May 2019, May 1, 2019, May 2019 (full or
// abbreviated month names, any case). A month-only date is the month's last
// day. It reports false for anything else, and for impossible dates.
func ParseDate(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if len(s) > 40 {
		return time.Time{}, false
	}
	var y, d int
	var mon time.Month
	switch {
	case isoDateRE.MatchString(s):
		m := isoDateRE.FindStringSubmatch(s)
		y, _ = strconv.Atoi(m[1])
		mi, _ := strconv.Atoi(m[2])
		mon = time.Month(mi)
		if m[3] != "" {
			d, _ = strconv.Atoi(m[3])
		}
	case dmyRE.MatchString(s):
		m := dmyRE.FindStringSubmatch(s)
		d, _ = strconv.Atoi(m[1])
		mon = months[strings.ToLower(m[2])]
		y, _ = strconv.Atoi(m[3])
	case mdyRE.MatchString(s):
		m := mdyRE.FindStringSubmatch(s)
		mon = months[strings.ToLower(m[1])]
		d, _ = strconv.Atoi(m[2])
		y, _ = strconv.Atoi(m[3])
	case monthYearRE.MatchString(s):
		m := monthYearRE.FindStringSubmatch(s)
		mon = months[strings.ToLower(m[1])]
		y, _ = strconv.Atoi(m[2])
	default:
		return time.Time{}, false
	}
	if mon < 1 || mon > 12 || y < 1000 {
		return time.Time{}, false
	}
	if d == 0 {
		// Last day of the month.
		return time.Date(y, mon+1, 0, 0, 0, 0, 0, time.UTC), true
	}
	t := time.Date(y, mon, d, 0, 0, 0, 0, time.UTC)
	if t.Day() != d || t.Month() != mon {
		return time.Time{}, false // 31 February
	}
	return t, true
}
