package detect

import (
	"regexp"
	"strings"
)

// urlRE matches external links as MediaWiki recognises them: http, https,
// ftp and protocol-relative URLs up to whitespace or a wikitext delimiter.
var urlRE = regexp.MustCompile(`(?i)(?:\b(?:https?|ftp)://|(?:^|[\[\s])//)[^\s\[\]<>"{}|]+`)

// Links returns the URLs found in lines, in order, with trailing
// punctuation that ends a sentence removed. A protocol-relative URL
// (//example.org/x) is returned as written, without the leading bracket.
func Links(lines []string) []string {
	var out []string
	for _, l := range lines {
		if !strings.Contains(l, "//") {
			continue // the common case, without running the regexp
		}
		for _, m := range urlRE.FindAllString(l, -1) {
			m = strings.TrimLeft(m, "[ \t")
			m = strings.TrimRight(m, ".,;:!?)'")
			if len(m) > len("http://") || strings.HasPrefix(m, "//") && len(m) > 3 {
				out = append(out, m)
			}
		}
	}
	return out
}

// AddedLinks returns the URLs of added that are not in removed (AbuseFilter's
// added_links).
func AddedLinks(added, removed []string) []string {
	have := map[string]int{}
	for _, u := range Links(removed) {
		have[u]++
	}
	var out []string
	for _, u := range Links(added) {
		if have[u] > 0 {
			have[u]--
			continue
		}
		out = append(out, u)
	}
	return out
}

// refOpenRE matches an opening or self-closing <ref> tag (not <references>).
var refOpenRE = regexp.MustCompile(`(?i)<ref(?:\s[^>]*)?/?>`)

// RefsRemoved is the net number of <ref> tags (citations, including named
// re-uses <ref name=x />) that the removed lines hold and the added lines do
// not: removed minus added, never below 0.
func RefsRemoved(removed, added []string) int {
	n := countRefs(removed) - countRefs(added)
	return max(0, n)
}

func countRefs(lines []string) int {
	n := 0
	for _, l := range lines {
		n += len(refOpenRE.FindAllStringIndex(l, -1))
	}
	return n
}
